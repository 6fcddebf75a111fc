"""``#require "Name.lib.nut:x.y.z"``: Electric Imp libraries spliced in from folders.

impCloud replaces each ``#require`` line with the library's code before the
device or agent sees it; ``resolve`` does the same from library folders:

* The library is a file of exactly that name (``FactoryTools.lib.nut``,
  ``HTS221.device.lib.nut`` …) anywhere under a folder. Folders are searched in
  order and the **first folder that has it wins**: the ``lib_dirs`` the caller
  passes, which ``devicecode.library_dirs`` makes for everyone: the command line's
  ``--lib`` folders in the order given, then the folders of the
  ``IMPFACTORY_LIB_PATH`` environment variable, then the libraries impfactory
  ships. A folder named twice counts once, at its first place. Within one folder
  the shallowest path wins, then the first in sorted order.
* Its declared version, ``static VERSION = "x.y.z"`` in its source, must have the
  major version asked for: another major version is a ``LibraryError`` naming
  both; another minor or patch version is accepted (the folder holds one version,
  and semantic versioning says it is compatible). A library that declares no
  version is accepted as it is.
* A library missing from every folder is a ``LibraryError`` naming it and the
  folders searched. A library required twice is included once; libraries may
  themselves ``#require`` others.

The result keeps a ``LineMap`` so an error inside a library reports
``FactoryTools.lib.nut:123`` and one in the user's file its own line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from impfactory.squirrel.errors import LibraryError
from impfactory.squirrel.source import LineMap

_REQUIRE = re.compile(r'^[ \t]*#require[ \t]+"([^"]*)"[ \t]*(?://.*)?\r?$')
_VERSION = re.compile(r'\bstatic\s+VERSION\s*=\s*"(\d+)\.(\d+)\.(\d+)"')
_SPEC = re.compile(r"^([A-Za-z0-9_.\-]+\.nut):(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Library:
    """One library spliced in: what was asked for and what was found."""

    name: str
    requested: str
    declared: str | None
    path: Path


@dataclass(frozen=True)
class Resolved:
    """Source with every ``#require`` replaced, and where each of its lines came from."""

    source: str
    line_map: LineMap
    libraries: tuple[Library, ...]


def search_dirs(lib_dirs: Iterable[str | Path] = ()) -> list[Path]:
    """The folders searched, in order, each once. Which folders, and the place of
    ``IMPFACTORY_LIB_PATH`` among them, is ``devicecode.library_dirs``'s one answer."""
    out: list[Path] = []
    seen: set[str] = set()
    for d in lib_dirs:
        path = Path(d)
        key = str(path.resolve()) if path.exists() else str(path)
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


def find_library(name: str, dirs: Sequence[Path]) -> Path | None:
    """The file called ``name`` under the first folder of ``dirs`` that has one."""
    for folder in dirs:
        if not folder.is_dir():
            continue
        matches = [p for p in folder.rglob(name) if p.is_file() and p.name == name]
        if matches:
            return min(matches, key=lambda p: (len(p.relative_to(folder).parts), str(p)))
    return None


def declared_version(source: str) -> str | None:
    """The library's ``static VERSION = "x.y.z"``, if it declares one."""
    m = _VERSION.search(source)
    return ".".join(m.groups()) if m else None


def resolve(source: str, filename: str, lib_dirs: Iterable[str | Path] = ()) -> Resolved:
    """``source`` (called ``filename`` in errors) with its ``#require`` lines replaced
    by the libraries found in ``lib_dirs`` (first match wins).

    A line of DUTs resolves the same firmware over and over: an answer is kept and
    given again while the folders are the same and none of the library files it
    used has changed (their size and modification time are checked each time)."""
    dirs = search_dirs(lib_dirs)
    key = (source, filename, tuple(str(d) for d in dirs))
    cached = _CACHE.get(key)
    if cached is not None and all(_stamp(lib.path) == stamp for lib, stamp in cached[1]):
        return cached[0]
    resolved = _resolve(source, filename, dirs)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (resolved, [(lib, _stamp(lib.path)) for lib in resolved.libraries])
    return resolved


_CACHE_SIZE = 64
_CACHE: dict[tuple[str, str, tuple[str, ...]],
             tuple[Resolved, list[tuple[Library, tuple[int, int] | None]]]] = {}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _resolve(source: str, filename: str, dirs: Sequence[Path]) -> Resolved:
    lines: list[str] = []
    entries: list[tuple[str, int]] = []
    libraries: list[Library] = []
    _splice(source, filename, dirs, lines, entries, libraries, included=set(), active=[])
    return Resolved("\n".join(lines), LineMap(entries), tuple(libraries))


@dataclass(frozen=True)
class Part:
    """One piece of a unit joined from several: its text, the file it is from, and
    the line of that file its first line is."""

    source: str
    filename: str
    first_line: int = 1


def resolve_parts(parts: Sequence[Part], lib_dirs: Iterable[str | Path] = ()) -> Resolved:
    """Several pieces joined one after the other into one unit (as a test build joins
    a framework, a library and its tests), each with its ``#require`` lines
    replaced; a library is included once however many parts require it, and every
    line keeps its own file and line."""
    dirs = search_dirs(lib_dirs)
    lines: list[str] = []
    entries: list[tuple[str, int]] = []
    libraries: list[Library] = []
    included: set[str] = set()
    for part in parts:
        _splice(part.source, part.filename, dirs, lines, entries, libraries, included,
                active=[], first=part.first_line)
    return Resolved("\n".join(lines), LineMap(entries), tuple(libraries))


def require_lines(source: str) -> list[int]:
    """The numbers (from 1) of the lines of ``source`` that are ``#require`` lines."""
    return [n for n, line in enumerate(source.split("\n"), start=1) if _REQUIRE.match(line)]


def _splice(source: str, filename: str, dirs: Sequence[Path], lines: list[str],
            entries: list[tuple[str, int]], libraries: list[Library], included: set[str],
            active: list[str], first: int = 1) -> None:
    for number, line in enumerate(source.split("\n"), start=first):
        m = _REQUIRE.match(line)
        if m is None:
            lines.append(line)
            entries.append((filename, number))
            continue
        library = _load(m.group(1), filename, number, dirs, active)
        if library.name in included:
            lines.append("")  # keep the line count: the library is already in
            entries.append((filename, number))
            continue
        included.add(library.name)
        libraries.append(library)
        text = library.path.read_text(encoding="utf-8", errors="surrogateescape")
        active.append(library.name)
        _splice(text, library.name, dirs, lines, entries, libraries, included, active)
        active.pop()


def _load(spec: str, filename: str, number: int, dirs: Sequence[Path],
          active: list[str]) -> Library:
    where = f"{filename}:{number}"
    m = _SPEC.match(spec.strip())
    if m is None:
        raise LibraryError(f'{where}: #require "{spec}" must name a library and its version, '
                           'like "FactoryTools.lib.nut:2.2.0"')
    name = m.group(1)
    requested = ".".join(m.groups()[1:])
    if name in active:
        raise LibraryError(f"{where}: {name} requires itself")
    path = find_library(name, dirs)
    if path is None:
        searched = ", ".join(str(d) for d in dirs) or "no library folders (use --lib DIR)"
        raise LibraryError(f"{where}: library {name} ({requested}) not found; searched: "
                           f"{searched}")
    declared = declared_version(path.read_text(encoding="utf-8", errors="surrogateescape"))
    if declared is not None and declared.split(".")[0] != m.group(2):
        raise LibraryError(f"{where}: #require asks for {name} {requested} but {path} is "
                           f"version {declared}, another major version")
    return Library(name, requested, declared, path)
