"""What goes wrong before a test runs: bad configuration, missing files, no tests.

Each is an ``ImpFactoryError`` (the command line prints one line, exit status 2)
and the built-in it resembles. A test that fails is not an error: it is a result.
"""

from __future__ import annotations

from impfactory.errors import ImpFactoryError


class ImpTestError(ImpFactoryError):
    """Root of ``impfactory test``'s errors."""


class TestConfigError(ImpTestError, ValueError):
    """``.impt.test`` (or an option standing for one of its settings) is unreadable
    or holds a value of the wrong kind."""

    __test__ = False  # not a pytest class


class TestFilesError(ImpTestError, FileNotFoundError):
    """A file the configuration names is missing, or no test file matches."""

    __test__ = False
