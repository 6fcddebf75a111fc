"""The root of every error impfactory raises on purpose.

Each layer has its own small tree below this one (``BlinkUpError``,
``CloudLinkError``, ``BenchError`` ...), each also inheriting the built-in it
resembles. The command line catches ``ImpFactoryError`` and prints one line with
a non-zero exit, so a user never sees a traceback for bad input.
"""


class ImpFactoryError(Exception):
    """Something went wrong that a user can act on; ``str()`` says what."""

    exit_code: int = 2
