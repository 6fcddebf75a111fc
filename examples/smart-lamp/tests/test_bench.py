"""The SmartLamp on a hardware-in-the-loop bench: real or emulated, chosen from outside.

    python -m pytest tests/test_bench.py                               # an emulated bench
    python -m pytest tests/test_bench.py --impfactory-bench /dev/ttyACM0   # a real one

A real lamp on the bench must be switched by the bench (its power capability).
"""

from __future__ import annotations

import pytest

from impfactory.tools.pytest_plugin import Bench, assert_led_sequence


@pytest.fixture
def fresh(bench: Bench) -> Bench:
    if not bench.has_power:
        pytest.skip("this bench does not switch the lamp's power")
    bench.power_cycle()
    return bench


def test_a_fresh_lamp_waits_for_blinkup(fresh: Bench) -> None:
    assert_led_sequence(fresh.watch(6.0), ["waiting_blinkup"])


def test_a_lamp_takes_the_factory_blinkup(fresh: Bench) -> None:
    states = fresh.blinkup("factory-wifi", "factory-password")
    assert_led_sequence(states, ["blinkup_ok"])
