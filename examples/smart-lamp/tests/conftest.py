"""The SmartLamp's fixtures, built on impfactory's public pytest plugin.

``make_lamp(**options)`` makes the SmartLamp product in a fresh emulated cloud
(``imp_product``): its Test Zone with the factory firmware in the fixture and DUT
groups, the application in the production group, their agents, and ``lib/`` for
``#require``. ``lamp`` is one made with the defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from impfactory.tools.pytest_plugin import Product

PROJECT = Path(__file__).resolve().parents[1]
FIRMWARE = PROJECT / "firmware"
LIB = PROJECT / "lib"
FACTORY = FIRMWARE / "factory.device.nut"
APP = FIRMWARE / "app.device.nut"


@pytest.fixture
def make_lamp(imp_product: Callable[..., Product]) -> Callable[..., Product]:
    def make(**options: Any) -> Product:
        return imp_product(FACTORY, APP, factory_agent=FIRMWARE / "factory.agent.nut",
                           app_agent=FIRMWARE / "app.agent.nut", lib=[LIB], name="SmartLamp",
                           **options)

    return make


@pytest.fixture
def lamp(make_lamp: Callable[..., Product]) -> Product:
    return make_lamp()
