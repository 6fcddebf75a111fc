"""The one compiled part: the BlinkUp receiver's inner loops, mostly bi-level
(protocol/_bilevel.c, plain C and Python's own headers). ``optional``: where no C
compiler is found, the install goes on and protocol/decoder.py runs the same loops in
Python (the two are tested equal)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "impfactory.protocol._bilevel",
            ["protocol/_bilevel.c"],
            # the same doubles as Python's arithmetic: no fused multiply-adds
            extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        )
    ]
)
