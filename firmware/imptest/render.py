"""Squirrel values as ``impt`` shows them: strings as they are after ``Success: ``,
everything else (and every ``this.info()`` message) as JSON.

impt prints a test's result with ``Success: <message>`` when the message is a
string and ``JSON.stringify`` of it otherwise, and ``this.info(m)`` always as
``JSON.stringify(m)`` (so a string shows in quotes). Values arrive here already
converted from Squirrel (``impfactory.squirrel.convert``); what JSON cannot hold
(an instance, a function) shows as ``(instance)``, ``(function)`` ..., never as a
memory address, so output is the same every run.
"""

from __future__ import annotations

import json
import math
from typing import Any

from impfactory.squirrel import SqObject


def jsonable(value: Any) -> Any:
    """``value`` as data ``json.dumps`` takes."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, SqObject):
        return f"({value.type_name})"
    return f"({type(value).__name__})"


def as_json(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False)


def as_message(value: Any) -> str | None:
    """A result or failure as impt shows it (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return as_json(value)
