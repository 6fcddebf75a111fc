"""One constraint vocabulary for every message the project accepts from outside.

The cloud-link and line-work messages (this package) and the REST API's request
bodies (``cloud/api_models.py``, which maps ``Limits`` onto ``msgspec.Meta``)
state their limits in the same terms, JSON Schema's, as msgspec names them::

    pattern      a regular expression the value must contain (JSON Schema ``pattern``:
                 searched, not matched; anchor it with ``^`` and ``$``)
    min_length   fewest characters of a string, items of an array, entries of an object
    max_length   most of the same            (``minLength``/``maxLength``,
                                              ``minItems``/``maxItems``, ``…Properties``)
    ge, le       inclusive bounds of a number (``minimum``, ``maximum``)
    items        the ``Limits`` of each item of an array

A pattern is written in the part of the syntax Python's ``re`` and ECMA 262 (JSON
Schema's dialect) read alike. The one place they differ is a final ``$``: ECMA's
matches only at the very end, Python's before a trailing newline too, so
``python_pattern`` compiles a final ``$`` as ``\\Z``: ``"0123456789abcdef\\n"`` is not
a device ID in either. No I/O, no imports of ours, nothing but the terms and how
to test a value against them.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field
from typing import Any, Final

LIMITS: Final = "limits"
"""The key of a dataclass field's ``metadata`` that holds its ``Limits``."""


def python_pattern(pattern: str) -> str:
    """``pattern`` (JSON Schema's dialect) as Python's ``re.search`` reads it alike."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + r"\Z"
    return pattern


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one value, in JSON Schema's terms (see the module docstring)."""

    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    ge: float | None = None
    le: float | None = None
    items: Limits | None = None
    regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    """``pattern`` compiled once, with ``python_pattern``'s reading of a final ``$``."""

    def __post_init__(self) -> None:
        if self.pattern is not None:
            object.__setattr__(self, "regex", re.compile(python_pattern(self.pattern)))

    def in_range(self, number: float) -> bool:
        """Whether ``number`` is within ``ge``..``le``."""
        return ((self.ge is None or number >= self.ge)
                and (self.le is None or number <= self.le))

    def length_ok(self, size: int) -> bool:
        """Whether a length (characters, items, entries) is within the bounds."""
        return ((self.min_length is None or size >= self.min_length)
                and (self.max_length is None or size <= self.max_length))

    def matches(self, text: str) -> bool:
        """Whether ``text`` contains ``pattern`` (true when there is none)."""
        return self.regex is None or self.regex.search(text) is not None


NO_LIMITS: Final = Limits()


def limited(*, default: Any = MISSING, default_factory: Any = MISSING, **limits: Any) -> Any:
    """A dataclass field whose ``metadata[LIMITS]`` is ``Limits(**limits)``."""
    meta = {LIMITS: Limits(**limits)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    if default is not MISSING:
        return field(default=default, metadata=meta)
    return field(metadata=meta)


def limits_of(metadata: Any) -> Limits:
    """The ``Limits`` a dataclass field's metadata carries (``NO_LIMITS`` when none)."""
    found = metadata.get(LIMITS)
    return found if isinstance(found, Limits) else NO_LIMITS
