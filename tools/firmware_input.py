"""Firmware files and library folders as the command line takes them.

``--firmware FILE`` and ``--app FILE`` are device code: Squirrel (``.nut``, what an
imp runs) or Python (``.py``, marked as such so the emulated imp picks its Python
engine). Either is checked before anything starts, so a typo is one line naming
the file and line, not a line of fixtures failing to flash after their timeouts:
Python is compiled; Squirrel has its ``#require`` lines resolved and is compiled by
the real VM. ``--lib DIR`` (repeatable) adds library folders in front of
``IMPFACTORY_LIB_PATH``; they go into that variable, so devices, the in-process
cloud and worker processes all resolve ``#require`` the same way.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from impfactory.devicecode import LIB_PATH_ENV, library_dirs, mark_python
from impfactory.errors import ImpFactoryError


class FirmwareInputError(ImpFactoryError, ValueError):
    """A firmware file or library folder given on the command line is unusable."""


def add_lib_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lib", action="append", type=Path, default=[], metavar="DIR",
                        help="a folder of Squirrel libraries for #require (repeatable; "
                             "searched before IMPFACTORY_LIB_PATH and the built-in ones)")


def add_firmware_options(parser: argparse.ArgumentParser) -> None:
    """``--firmware``, ``--agent``, ``--app`` and ``--lib``, as every command that runs a
    factory (``line run``, ``device life``) takes them."""
    parser.add_argument("--firmware", type=Path, metavar="FILE",
                        help="your factory firmware (fixture + DUT) instead of the example: "
                             "Squirrel (.nut), or Python (.py)")
    parser.add_argument("--agent", type=Path, metavar="FILE",
                        help="the agent code (.nut) deployed with --firmware to the fixture "
                             "and DUT groups (default: the example agent with the example "
                             "firmware, none with yours)")
    parser.add_argument("--app", type=Path, metavar="FILE",
                        help="your application firmware instead of the example (.nut or .py)")
    add_lib_option(parser)


def apply_lib_dirs(dirs: list[Path]) -> None:
    """Put ``--lib`` folders first on ``IMPFACTORY_LIB_PATH`` for this process and its children."""
    for d in dirs:
        if not d.is_dir():
            raise FirmwareInputError(f"--lib {d}: not a folder")
    if not dirs:
        return
    current = os.environ.get(LIB_PATH_ENV, "")
    parts = [str(d.resolve()) for d in dirs] + [p for p in current.split(os.pathsep) if p]
    os.environ[LIB_PATH_ENV] = os.pathsep.join(parts)


def read_firmware(path: Path | None, what: str) -> str | None:
    """The device code in ``path``, checked; ``None`` when no file was given."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FirmwareInputError(f"{what} {path}: {err}") from err
    if path.suffix == ".py":
        return _check_python(text, path, what)
    _check_squirrel(text, path, what)
    return text


def read_agent(path: Path | None, what: str) -> str | None:
    """The agent code in ``path`` (Squirrel only: agents run nothing else), checked as
    ``read_firmware`` checks device code; ``None`` when no file was given."""
    if path is None:
        return None
    if path.suffix == ".py":
        raise FirmwareInputError(f"{what} {path}: agent code is Squirrel (.nut)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FirmwareInputError(f"{what} {path}: {err}") from err
    _check_squirrel(text, path, what, environment="agent")
    return text


def _check_python(text: str, path: Path, what: str) -> str:
    try:
        compile(text, str(path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as err:
        where = f"line {err.lineno}: " if isinstance(err, SyntaxError) and err.lineno else ""
        message = err.msg if isinstance(err, SyntaxError) else str(err)
        raise FirmwareInputError(f"{what} {path}: {where}{message}") from err
    return mark_python(text)


def _check_squirrel(text: str, path: Path, what: str, environment: str = "device") -> None:
    from impfactory.squirrel import LibraryError, SquirrelCompileError, Vm
    from impfactory.squirrel import require as sq_require

    try:
        resolved = sq_require.resolve(text, path.name, library_dirs())
    except LibraryError as err:
        raise FirmwareInputError(f"{what} {path}: {err}") from err
    vm = Vm(environment=environment)
    try:
        vm.compile(resolved.source, path.name, resolved.line_map)
    except SquirrelCompileError as err:
        raise FirmwareInputError(f"{what} {err}") from err
    finally:
        vm.close()
