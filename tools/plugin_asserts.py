"""Assertions a factory test makes: LED sequences by state name, measurements by limit.

``assert_led_sequence(source, ["blinkup_ok", "online", "blessed"])`` passes when
the status LED of ``source`` showed those states in that order (others may come
between; ``exact=True`` wants exactly them). ``assert_measurement(source,
"temperature", low=10, high=45)`` passes when the DUT measured ``temperature``
within those limits (with no limits given: within the limits its own firmware
declared). Both accept whatever a test has in hand:

==========================================  ===========================================
source                                      LED states / measurements from
==========================================  ===========================================
a ``Dut`` of the ``imp_product`` fixture    its LED / its ``testresult`` message
an emulated ``Device``                      ``device.led`` / its last ``testresult``
a ``DutRecord`` (``factory_line`` result)   ``led_timeline`` / ``measurements``
a dict: a record of ``duts.json``, the      ``led_timeline`` or ``led`` / ``measurements``
output of ``device life --json``, or a
``testresult`` the DUT firmware sent
a list of state names (``Bench.watch``)     the list itself
==========================================  ===========================================

A bench's colour sensor cannot tell some looks apart and names them ``a/b``
(``updating/blessed``); such a name matches either state. A state name that does
not exist is an error (``ValueError``), so a typo never passes or fails silently.
The ``testresult`` convention is the example firmware's: ``agent.send("testresult",
{"measurements": [{"name", "value", "low", "high", "unit"}, ...], ...})``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from impfactory.protocol.statusled import LedState

__all__ = ["LED_STATES", "Reading", "assert_led_sequence", "assert_measurement", "led_states",
           "measurements"]

#: Every status-LED state name (docs/device.md), in the order of the LED table.
LED_STATES: tuple[str, ...] = tuple(s.value for s in LedState)


@dataclass(frozen=True)
class Reading:
    """One measurement as the DUT declared it: its value (``None``: the hardware did not
    answer) and its limits (either may be open)."""

    name: str
    value: float | None
    low: float | None = None
    high: float | None = None
    unit: str = ""

    @property
    def passed(self) -> bool:
        """Within its own declared limits."""
        return self.value is not None and _within(self.value, self.low, self.high)


def led_states(source: Any) -> list[str]:
    """The states ``source``'s status LED showed, in order, a repeat shown once."""
    if isinstance(source, str):
        raise TypeError("give a sequence of state names, not one string")
    raw: list[Any]
    if hasattr(source, "led_states"):  # the plugin's Dut
        raw = list(source.led_states)
    elif hasattr(source, "led") and hasattr(source.led, "states"):  # an emulated Device
        raw = [s.value for s in source.led.states()]
    elif hasattr(source, "led_timeline"):  # a DutRecord
        raw = [e.state for e in source.led_timeline]
    elif isinstance(source, Mapping):
        timeline = source.get("led_timeline", source.get("led"))
        if timeline is None:
            raise TypeError("this dict has no led_timeline (duts.json) or led (device life)")
        raw = [e["state"] if isinstance(e, Mapping) else e for e in timeline]
    elif isinstance(source, Sequence):
        raw = list(source)
    else:
        raise TypeError(f"no status LED in a {type(source).__name__}")
    shown: list[str] = []
    for state in raw:
        name = state.value if isinstance(state, LedState) else str(state)
        if name and (not shown or shown[-1] != name):
            shown.append(name)
    return shown


def _check_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in LED_STATES]
    if unknown:
        raise ValueError(f"unknown LED state(s) {', '.join(map(repr, unknown))}; the states "
                         f"are {', '.join(LED_STATES)}")


def _same(shown: str, wanted: str) -> bool:
    return wanted in shown.split("/")  # a bench's "updating/blessed" is either


def assert_led_sequence(source: Any, expected: Sequence[str], *,
                        exact: bool = False) -> list[str]:
    """Assert the LED showed ``expected`` in order (``exact``: and nothing else).

    Returns the states it showed, for further checks.
    """
    if isinstance(expected, str):
        raise TypeError("expected is a list of state names, not one string")
    _check_names(expected)
    shown = led_states(source)
    told = " > ".join(shown) or "(nothing)"
    if exact:
        if len(shown) != len(expected) or not all(map(_same, shown, expected)):
            raise AssertionError(f"the LED showed {told}; expected exactly "
                                 f"{' > '.join(expected)}")
        return shown
    at = 0
    for i, wanted in enumerate(expected):
        while at < len(shown) and not _same(shown[at], wanted):
            at += 1
        if at == len(shown):
            after = f" after {expected[i - 1]!r}" if i else ""
            raise AssertionError(f"the LED never showed {wanted!r}{after}: it showed {told}")
        at += 1
    return shown


def measurements(source: Any) -> dict[str, Reading]:
    """The measurements ``source`` declared, by name (the last of a name wins)."""
    items: Sequence[Any]
    if hasattr(source, "testresult") and not isinstance(source, Mapping):  # the plugin's Dut
        items = _testresult_items(source.testresult, source)
    elif hasattr(source, "events") and hasattr(source, "led"):  # an emulated Device
        items = _testresult_items(_last_testresult(source), source)
    elif hasattr(source, "measurements") and not isinstance(source, Mapping):  # DutRecord
        items = list(source.measurements)
    elif isinstance(source, Mapping):
        if "measurements" not in source:
            raise TypeError("this dict has no measurements (a duts.json record or a "
                            "testresult has them)")
        items = list(source["measurements"])
    else:
        raise TypeError(f"no measurements in a {type(source).__name__}")
    out: dict[str, Reading] = {}
    for item in items:
        reading = _reading(item)
        out[reading.name] = reading
    return out


def _testresult_items(result: Any, source: Any) -> list[Any]:
    if result is None:
        who = getattr(source, "device_id", "the device")
        raise AssertionError(f"{who} sent no testresult to its agent (yet)")
    return list(result.get("measurements", []))


def _last_testresult(device: Any) -> Any:
    for record in reversed(device.events):
        detail = record.detail
        if (isinstance(detail, tuple) and len(detail) == 2 and detail[0] == "testresult"
                and isinstance(detail[1], Mapping)):
            return detail[1]
    return None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    return float(value)


def _reading(item: Any) -> Reading:
    get = item.get if isinstance(item, Mapping) else lambda key, default=None: getattr(
        item, key, default)
    return Reading(str(get("name")), _number(get("value")), _number(get("low")),
                   _number(get("high")), str(get("unit", get("units", "")) or ""))


def _within(value: float, low: float | None, high: float | None) -> bool:
    return (math.isfinite(value) and (low is None or value >= low)
            and (high is None or value <= high))


def assert_measurement(source: Any, name: str, *, low: float | None = None,
                       high: float | None = None, passed: bool | None = None) -> float | None:
    """Assert the DUT measured ``name``: within ``low``..``high`` when given, else within
    its own declared limits; ``passed=False`` asserts instead that it failed them.

    Returns the value (``None`` when the hardware did not answer and ``passed=False``).
    """
    found = measurements(source)
    if name not in found:
        raise AssertionError(f"no measurement {name!r}; measured: {', '.join(found) or 'none'}")
    m = found[name]
    unit = f" {m.unit}" if m.unit else ""
    low_text = "-inf" if m.low is None else m.low
    high_text = "inf" if m.high is None else m.high
    declared = f"{low_text}..{high_text}{unit}"
    if passed is not None:
        if m.passed != passed:
            raise AssertionError(f"{name} = {m.value}{unit} {'failed' if passed else 'passed'} "
                                 f"its limits {declared}")
    elif low is None and high is None and not m.passed:
        raise AssertionError(f"{name} = {m.value}{unit}, outside its limits {declared}")
    if low is not None or high is not None:
        if m.value is None:
            raise AssertionError(f"{name}: no value (the hardware did not answer)")
        if not _within(m.value, low, high):
            raise AssertionError(f"{name} = {m.value}{unit}, outside {low}..{high}")
    return m.value
