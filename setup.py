"""The compiled parts, plain C and Python's own headers: the BlinkUp receiver's inner
loops, mostly bi-level (protocol/_bilevel.c), and the Squirrel VMs' debug hook
(impfactory/squirrel/_hook.c). Both ``optional``: where no C compiler is found, the
install goes on and protocol/decoder.py and impfactory/squirrel/watchdog.py do the same
in Python (each pair tested equal)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "impfactory.protocol._bilevel",
            ["protocol/_bilevel.c"],
            # the same doubles as Python's arithmetic: no fused multiply-adds
            extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        ),
        Extension(
            "impfactory.squirrel._hook",
            ["impfactory/squirrel/_hook.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
