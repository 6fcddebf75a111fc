"""Line maps, and the loop instrumentation that lets the watchdog see every loop.

The watchdog (``watchdog``) runs on the VM's debug hook, whose line events come
from ``OP_LINE`` instructions. The compiler emits one only where a *statement
starts on a new source line*, so ``while(true){}`` or ``local i=0; while(i<9) i++;``
written on one line loops without a single event and could never be stopped.
``instrument`` therefore breaks the line right after every loop header::

    while (x) {}                    while (x)
    for (;;) i++;          ->        {}             (each body now starts a line:
    do { } while (y);               for (;;)         one event per iteration)
                                     i++;
                                    do {null;
                                     { }
                                    }while (y);

``do`` needs more: the compiler drops an ``OP_LINE`` that directly follows
another, and a ``do`` loop jumps back to just after its own statement's
``OP_LINE`` — so a body's first line event would be merged away and skipped.
The body is wrapped in a block that starts with ``null;`` (one no-op
instruction, on the ``do``'s line) so the body's line event survives and is the
loop's target; finding the ``while`` that ends a ``do`` parses just enough of
the statement grammar.

It scans tokens so that strings (``"..."``, verbatim ``@"..."``), character
literals and comments (``//``, ``#``, ``/* */``) are left alone, and it records
where every output line came from (``origin``: input line and column shift), so
runtime errors and the watchdog still name the user's lines. Only code that
compiles as written is instrumented (``Vm.compile``), so compile errors are
always Squirrel's own. Recursion needs nothing: every call is an event.

A ``LineMap`` says, for each line of the text handed to the compiler, which file
and line it came from; ``#require`` (``require``) builds one when it splices
libraries in, and ``Instrumented.lookup`` goes through the instrumentation's
``origin`` first.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class LineMap:
    """Compiled line ``n`` (from 1) -> ``(file, line)`` in the text the user wrote.

    Kept as runs of consecutive lines (a ``#require``d library is one run), so a
    map costs a few entries however long the source is.
    """

    __slots__ = ("_files", "_firsts", "_length", "_starts")

    def __init__(self, entries: Sequence[tuple[str, int]]) -> None:
        starts: list[int] = []
        files: list[str] = []
        firsts: list[int] = []
        previous: tuple[str, int] | None = None
        for n, (file, line) in enumerate(entries, start=1):
            if previous is None or previous[0] != file or previous[1] + 1 != line:
                starts.append(n)
                files.append(file)
                firsts.append(line)
            previous = (file, line)
        self._starts = tuple(starts)
        self._files = tuple(files)
        self._firsts = tuple(firsts)
        self._length = len(entries)

    @classmethod
    def identity(cls, file: str, text: str) -> LineMap:
        return cls([(file, n) for n in range(1, count_lines(text) + 1)])

    def __len__(self) -> int:
        return self._length

    def _key(self) -> tuple[Any, ...]:
        return (self._starts, self._files, self._firsts, self._length)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LineMap) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"LineMap({self._length} lines in {len(self._starts)} runs)"

    def lookup(self, line: int) -> tuple[str, int]:
        """Where compiled ``line`` came from (past the end: the last run, counting
        on; before the start: the first line)."""
        if not self._starts:
            return ("", line)
        line = max(line, 1)
        i = bisect.bisect_right(self._starts, line) - 1
        return (self._files[i], self._firsts[i] + line - self._starts[i])


def count_lines(text: str) -> int:
    """Lines as the Squirrel lexer counts them (each ``\\n`` starts one; a final
    line without a break still counts)."""
    return text.count("\n") + 1


@dataclass(frozen=True)
class Instrumented:
    """Source with loop bodies on their own lines, and where each line came from:
    ``origin[n-1] = (input line, columns to add)`` for output line ``n``."""

    source: str
    origin: tuple[tuple[int, int], ...]

    def lookup(self, line: int, base: LineMap | None, file: str) -> tuple[str, int]:
        """``(file, line)`` the user wrote, for compiled ``line`` (``base``: the map
        of the text that was instrumented, or ``None`` for ``file`` itself)."""
        in_line = self.origin[line - 1][0] if 1 <= line <= len(self.origin) else line
        return base.lookup(in_line) if base is not None else (file, in_line)


_TOKEN = re.compile(
    r"""
      (?P<comment> //[^\n]* | \#[^\n]* | /\*(?:.|\n)*?(?:\*/|\Z) )
    | (?P<string> @"(?:[^"]|"")*(?:"|\Z) | "(?:[^"\\\n]|\\.)*(?:"|$) | '(?:[^'\\\n]|\\.)*(?:'|$) )
    | (?P<word> [A-Za-z_][A-Za-z0-9_]* )
    | (?P<punct> [(){}\[\];] )
    """,
    re.VERBOSE | re.MULTILINE,
)

_HEADED_LOOPS = frozenset({"while", "for", "foreach"})
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = frozenset(_OPEN.values())

#: What goes after ``do`` and before its ``while``: the body becomes a block whose
#: first, never-merged instruction is the loop's target (see ``instrument``).
DO_OPEN = " {null;\n"
DO_CLOSE = "\n}"

Token = tuple[str, int, int]  # text, start, end


def _tokens(source: str) -> list[Token]:
    """Words and brackets outside strings and comments."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(source)
            if m.lastgroup in ("word", "punct")]


def _match(tokens: list[Token], i: int) -> int | None:
    """Index of the bracket closing the one at ``i``."""
    depth = 0
    for j in range(i, len(tokens)):
        text = tokens[j][0]
        if text in _OPEN:
            depth += 1
        elif text in _CLOSE:
            depth -= 1
            if depth == 0:
                return j
    return None


def _after_parens(tokens: list[Token], i: int) -> int | None:
    """Index just past the ``( … )`` starting at ``i``."""
    if i >= len(tokens) or tokens[i][0] != "(":
        return None
    j = _match(tokens, i)
    return None if j is None else j + 1


def _statement_end(tokens: list[Token], i: int | None, depth: int = 0) -> int | None:
    """Index just past the statement starting at token ``i``, parsed as far as needed
    to find the ``while`` that ends a ``do``; ``None`` if it cannot tell."""
    n = len(tokens)
    if i is None or i >= n or depth > 200:
        return None
    text = tokens[i][0]
    if text == "{":
        j = _match(tokens, i)
        return None if j is None else j + 1
    if text == "do":
        w = _do_while(tokens, i, depth)
        return None if w is None else _after_parens(tokens, w + 1)
    if text in _HEADED_LOOPS:
        return _statement_end(tokens, _after_parens(tokens, i + 1), depth + 1)
    if text == "if":  # IfStatement takes an optional ';' after each branch
        j = _semicolon(tokens, _statement_end(tokens, _after_parens(tokens, i + 1), depth + 1))
        if j is not None and j < n and tokens[j][0] == "else":
            return _semicolon(tokens, _statement_end(tokens, j + 1, depth + 1))
        return j
    if text == "switch":
        k = _after_parens(tokens, i + 1)
        if k is None or k >= n or tokens[k][0] != "{":
            return None
        j = _match(tokens, k)
        return None if j is None else j + 1
    if text == "try":
        j = _statement_end(tokens, i + 1, depth + 1)
        if j is None or j >= n or tokens[j][0] != "catch":
            return None
        return _statement_end(tokens, _after_parens(tokens, j + 1), depth + 1)
    level = 0  # a simple statement: up to (not including) ';', or a keyword no
    for j in range(i, n):  # expression contains
        text = tokens[j][0]
        if text in _OPEN:
            level += 1
        elif text in _CLOSE:
            if level == 0:
                return j
            level -= 1
        elif level == 0:
            if text == ";":
                return j
            if j > i and text in ("while", "else", "catch"):
                return j
    return None


def _semicolon(tokens: list[Token], j: int | None) -> int | None:
    """Past an optional ';' at ``j``."""
    if j is not None and j < len(tokens) and tokens[j][0] == ";" and tokens[j - 1][0] != "}":
        return j + 1
    return j


def _do_while(tokens: list[Token], i: int, depth: int = 0) -> int | None:
    """Index of the ``while`` that ends the ``do`` at token ``i``."""
    j = _statement_end(tokens, i + 1, depth + 1)
    if j is None or j >= len(tokens) or tokens[j][0] != "while":
        return None
    return j


def _insertions(source: str) -> list[tuple[int, str]]:
    """``(offset, text)`` to insert: a line break after each loop header, and the
    block around each ``do`` body (whose ``while`` ends the statement: nothing is
    added after it, so code the compiler refuses is still refused)."""
    tokens = _tokens(source)
    out: list[tuple[int, str]] = []
    ends_of_do: set[int] = set()  # a do's own while: no body follows, no break added
    for i, (text, _start, end) in enumerate(tokens):
        if text == "do":
            w = _do_while(tokens, i)
            if w is not None:
                ends_of_do.add(w)
                out.append((end, DO_OPEN))
                out.append((tokens[w][1], DO_CLOSE))
        elif text in _HEADED_LOOPS and i not in ends_of_do:
            k = _after_parens(tokens, i + 1)
            if k is not None:
                out.append((tokens[k - 1][2], "\n"))
    out.sort(key=lambda item: item[0])
    return out


def instrument(source: str) -> Instrumented:
    """``source`` with every loop body starting a line of its own (see the module
    doc), and where each output line came from."""
    line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
    pieces: list[str] = []
    origin: list[tuple[int, int]] = []
    last = 0
    line = 0  # 0-based input line of the text at ``last``
    delta = 0  # input column = output column + delta, on the current output line
    for offset, text in _insertions(source):
        segment = source[last:offset]
        for _ in range(segment.count("\n")):
            origin.append((line + 1, delta))
            line += 1
            delta = 0
        pieces.append(segment)
        pieces.append(text)
        breaks = text.count("\n")
        for _ in range(breaks):
            origin.append((line + 1, delta))
        column = offset - line_starts[line]
        if breaks:
            delta = column - (len(text) - text.rindex("\n") - 1)
        else:
            delta -= len(text)
        last = offset
    tail = source[last:]
    pieces.append(tail)
    for _ in range(tail.count("\n") + 1):
        origin.append((line + 1, delta))
        line += 1
        delta = 0
    return Instrumented("".join(pieces), tuple(origin))
