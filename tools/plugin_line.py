"""pytest fixture ``factory_line``: run your own factory firmware on an emulated line.

::

    def test_my_firmware_blesses(factory_line):
        result = factory_line(duts=4, firmware=Path("factory.device.nut.py").read_text())
        assert result.summary.blessed == 4

The line runs on the session's broker (``broker_url`` from ``plugin_broker``) and
a fresh cloud per call; options are ``LineConfig``'s (``fixtures``, ``duts``,
``seed``, ``faults``, ``outdated_impos`` ...) plus ``firmware`` and ``app`` (device
code text; the examples by default). It returns the ``LineResult``: every DUT's
record and the summary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from impfactory.fixture.line import LineConfig, LineResult, run_line
from impfactory.tools.line_setup import factory_cloud


@pytest.fixture
def factory_line(broker_url: str) -> Callable[..., LineResult]:
    """A function that runs one line and returns its ``LineResult``."""

    def run(firmware: str | None = None, app: str | None = None, **config: Any) -> LineResult:
        async def go() -> LineResult:
            async with factory_cloud(broker_url, factory_code=firmware, app_code=app,
                                     impos_size=64 * 1024) as cloud:
                return await run_line(LineConfig(**config), cloud)

        return asyncio.run(go())

    return run
