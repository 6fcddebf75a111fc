"""The ``impfactory`` command line.

Subcommands live in modules named ``cmd_<name>.py`` beside this one; each exposes
``register(subparsers)`` which adds its parser and sets ``func`` (returning the exit
status). Discovering them here keeps every subcommand in its own small module.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from impfactory import __version__
from impfactory.devicecode import LIB_PATH_ENV
from impfactory.errors import ImpFactoryError
from impfactory.tools.profiling import profiled

#: OS errors about something the user named (a file, a directory, a port, an
#: address): bad input, exit status 2 like every other bad input. Any other OS
#: error (a timeout, a reset connection, a full disk) failed the run: 1.
BAD_INPUT_ERRNOS = frozenset({
    errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST,
    errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP, errno.ENXIO, errno.ENODEV,
    errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.ECONNREFUSED,
})


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the parser with every ``cmd_*`` module's subcommands registered, or with
    only ``cmd_<only>``'s (the command line names that command: ``main``)."""
    parser = argparse.ArgumentParser(
        prog="impfactory",
        description="Emulate and test the Electric Imp Connected Factory Process.",
    )
    parser.add_argument("--version", action="version", version=f"impfactory {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    package = importlib.import_module("impfactory.tools")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_") and only in (None, info.name[4:]):
            module = importlib.import_module(f"impfactory.tools.{info.name}")
            module.register(sub)
    return parser


def _named_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` begins with when a ``cmd_*`` module of that name exists, so
    only that module is imported: each imports what its command runs, and every
    ``line worker`` process (``line run --workers K`` starts K) paid for all of them at
    its start (``line worker --help``: 0.85 s of CPU with all, 0.37 s with its own, on
    the 2-core machine). None: build the whole parser (``--help``, a typo, an option
    first)."""
    if not argv or not argv[0].isidentifier():
        return None
    package = importlib.import_module("impfactory.tools")
    names = {info.name for info in pkgutil.iter_modules(package.__path__)}
    return argv[0] if f"cmd_{argv[0]}" in names else None


def os_error_status(err: OSError) -> int:
    """2 when ``err`` is about something the user named, else 1 (see ``BAD_INPUT_ERRNOS``)."""
    return 2 if err.errno in BAD_INPUT_ERRNOS else 1


def _stdout_gone() -> None:
    """Whoever read stdout has gone (``impfactory ... | head``): that is not an error.

    stdout is pointed at /dev/null, so the interpreter's last flush at exit finds
    nowhere broken to write and prints nothing either.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass  # stdout is no real file (a test's capture): nothing will flush into a pipe


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status.

    0: success. 1: the run failed (a DUT not blessed, a controller that went
    silent, a yield below ``--min-yield``). 2: bad input (an unusable option, a
    missing file, an unwritable output, a busy port), always one line naming it.
    A closed pipe on stdout ends the command quietly with 0.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_named_command(argv))
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    with lib_path_restored(), profiled(" ".join(argv[:2])):
        return _run(func, args)


@contextlib.contextmanager
def lib_path_restored() -> Iterator[None]:
    """``--lib`` puts folders on ``IMPFACTORY_LIB_PATH`` for the command (and its
    children); the variable is as it was once the command is over, so one command
    run in-process (a test) leaves nothing to the next."""
    before = os.environ.get(LIB_PATH_ENV)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(LIB_PATH_ENV, None)
        else:
            os.environ[LIB_PATH_ENV] = before


def _run(func: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> int:
    try:
        status = int(func(args) or 0)
        sys.stdout.flush()  # here, so a reader gone by now is the closed pipe below
        return status
    except ImpFactoryError as err:
        print(f"impfactory: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("impfactory: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _stdout_gone()
        return 0
    except OSError as err:
        print(f"impfactory: error: {err}", file=sys.stderr)
        return os_error_status(err)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
