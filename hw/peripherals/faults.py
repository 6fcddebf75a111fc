"""Faults by flag: each model declares the faults it can suffer; the line sets them by name.

A fault lives in the model, never in device code: a missing sensor NACKs its
address, a stuck button ignores the finger, an LCD that never ACKs swallows every
packet. Device code meets them through the same bus calls it always makes, which is
the point: the factory test has to find them.

A model lists its faults in ``FAULTS`` (name -> ``FaultSpec``: what it does and how
a value given as text is read). From outside, a fault is set on the model
(``sensor.set_fault("out_of_range", 85.0)``) or on its board by one string
(``board.set_fault("sensor.out_of_range=85")``), the form a command line or a line
plan carries. An unknown fault, or a value that does not parse, is a
``PeripheralConfigError`` naming the model and the faults it does know.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import PeripheralConfigError


@dataclass(frozen=True)
class FaultSpec:
    """One fault a model can suffer: what it does, how its value parses, its default."""

    description: str
    parse: Callable[[str], Any] = str
    default: Any = True


class Faultable:
    """Mix-in for models: named fault flags, set and cleared from outside."""

    FAULTS: ClassVar[Mapping[str, FaultSpec]] = {}

    def __init__(self) -> None:
        self.faults: dict[str, Any] = {}

    def set_fault(self, name: str, value: Any = None) -> None:
        """Inject fault ``name``; ``value`` (or its text, parsed) refines it."""
        spec = self.FAULTS.get(name)
        if spec is None:
            known = ", ".join(sorted(self.FAULTS)) or "none"
            raise PeripheralConfigError(
                f"{type(self).__name__}: unknown fault {name!r}; known faults: {known}")
        if value is None:
            value = spec.default
        elif isinstance(value, str):
            try:
                value = spec.parse(value)
            except (TypeError, ValueError) as err:
                raise PeripheralConfigError(
                    f"{type(self).__name__}: fault {name}: bad value {value!r}") from err
        self.faults[name] = value
        self._faults_changed()

    def clear_fault(self, name: str | None = None) -> None:
        """Remove fault ``name`` (every fault when ``None``)."""
        if name is None:
            self.faults.clear()
        else:
            self.faults.pop(name, None)
        self._faults_changed()

    def fault(self, name: str) -> Any:
        """The value of fault ``name`` when set, else ``None``."""
        return self.faults.get(name)

    def _faults_changed(self) -> None:
        """Hook: a model whose outputs depend on a fault updates them here."""


def parse_fault(text: str) -> tuple[str, str, str | None]:
    """``"model.fault[=value]"`` -> ``(model, fault, value or None)``."""
    target, sep, value = text.partition("=")
    model, dot, fault = target.strip().partition(".")
    if not dot or not model or not fault:
        raise PeripheralConfigError(
            f"fault {text!r}: expected MODEL.FAULT or MODEL.FAULT=VALUE (e.g. sensor.missing)")
    return model, fault.strip(), value.strip() if sep else None


def choice(*allowed: str) -> Callable[[str], str]:
    """A fault value parser accepting one of ``allowed`` words."""

    def parse(text: str) -> str:
        word = text.strip().lower()
        if word not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return word

    return parse
