"""The ``impfactory`` command line.

Subcommands live in modules named ``cmd_<name>.py`` beside this one; each exposes
``register(subparsers)`` which adds its parser and sets ``func`` (returning the exit
status). Discovering them here keeps every subcommand in its own small module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from impfactory import __version__
from impfactory.errors import ImpFactoryError


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every ``cmd_*`` module's subcommands registered."""
    parser = argparse.ArgumentParser(
        prog="impfactory",
        description="Emulate and test the Electric Imp Connected Factory Process.",
    )
    parser.add_argument("--version", action="version", version=f"impfactory {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    package = importlib.import_module("impfactory.tools")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            module = importlib.import_module(f"impfactory.tools.{info.name}")
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except ImpFactoryError as err:
        print(f"impfactory: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("impfactory: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        print(f"impfactory: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
