"""pytest fixtures for emulated imps; the Test Zone helpers they build on.

* ``imp_fleet_factory``: ``make(url, scale=100.0) -> Fleet``; every fleet made is
  powered off at teardown (the test's own loop must still be running, so prefer
  ``async with`` in the test itself; this fixture is the safety net).
* ``factory_firmware`` / ``application_firmware``: the example firmware sources.
* ``build_test_zone``, ``start_fixture``, ``dut_settings``, ``TestZone``: re-exported
  from ``tools/emulated_zone.py``, where they live so that the command line never
  needs pytest.

Used by this project's end-to-end tests and by users who test their own factory
firmware the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from impfactory.clock import ScaledClock
from impfactory.firmware import examples
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID, Fleet
from impfactory.tools.emulated_zone import (
    OWNER,
    TestZone,
    build_test_zone,
    dut_settings,
    start_fixture,
)

__all__ = ["OWNER", "TestZone", "build_test_zone", "dut_settings", "start_fixture"]


@pytest.fixture
def factory_firmware() -> str:
    """The example factory firmware, set for the emulated factory WiFi."""
    return examples.factory_source(FACTORY_SSID, FACTORY_PASSWORD)


@pytest.fixture
def application_firmware() -> str:
    """The example application firmware (what a blessed example DUT runs)."""
    return examples.application_source()


@pytest.fixture
def imp_fleet_factory() -> Iterator[Callable[..., Fleet]]:
    """Make fleets; any device left powered at teardown is reported as a leak."""
    made: list[Fleet] = []

    def make(url: str, scale: float = 100.0, **kw: Any) -> Fleet:
        fleet = Fleet(url, ScaledClock(scale), **kw)
        made.append(fleet)
        return fleet

    yield make
    leaked = [d.device_id for f in made for d in f.devices if d.powered]
    assert not leaked, f"devices left powered on: {leaked}"
