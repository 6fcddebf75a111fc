"""What device and agent code is written in, and where its ``#require`` libraries come from.

Shared by the emulated imp (which runs the code) and the emulated cloud (which
checks ``#require`` at deploy time, as impCloud does), so both decide alike:

* Code is **Squirrel** unless its first line is ``PYTHON_MARKER``: impCentral only
  knows Squirrel; Python device code is ours, for tests and quick experiments, and
  the command line marks a ``.py`` file when it reads one.
* ``#require`` looks in the ``--lib`` folders (which the command line puts first on
  ``IMPFACTORY_LIB_PATH``), then the rest of ``IMPFACTORY_LIB_PATH``, then the
  Electric Imp libraries impfactory ships (``impfactory/libraries``); first match
  wins, so a company can pin or patch a library without touching the built-in ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from impfactory.libraries import LIBRARY_DIR

PYTHON_MARKER = "# impfactory: python"
"""First line of device code written in Python (a comment in both languages)."""
LIB_PATH_ENV = "IMPFACTORY_LIB_PATH"


def is_python_code(source: str) -> bool:
    """Device code is Squirrel unless its first line is ``PYTHON_MARKER``."""
    return source.startswith(PYTHON_MARKER)


def mark_python(source: str) -> str:
    """``source`` marked as Python device code (unchanged when already marked).

    The marker is one more line, so errors in a file marked here report its lines
    plus one.
    """
    return source if is_python_code(source) else f"{PYTHON_MARKER}\n{source}"


def library_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    """Where ``#require`` looks, first match wins: ``extra``, then
    ``IMPFACTORY_LIB_PATH``, then the libraries impfactory ships."""
    dirs = [Path(d) for d in extra]
    env = os.environ.get(LIB_PATH_ENV, "")
    dirs += [Path(d) for d in env.split(os.pathsep) if d]
    dirs.append(LIBRARY_DIR)
    return dirs
