"""pytest fixture ``factory_line``: run your own factory firmware on an emulated line.

::

    def test_my_firmware_blesses(factory_line):
        result = factory_line(duts=4, firmware=Path("factory.device.nut"), lib=["lib"])
        assert result.summary.blessed == 4

The line runs on the session's broker (``broker_url`` from ``plugin_broker``) and
a fresh cloud per call; options are ``LineConfig``'s (``fixtures``, ``duts``,
``seed``, ``faults``, ``outdated_impos`` ...) plus ``firmware`` and ``app``: device
code, as text or as a ``Path`` to a ``.nut`` (or ``.py``) file, checked before the
line starts (the examples by default), ``agent``: the factory firmware's agent code
(the example's with the example firmware), and ``lib``: folders for ``#require``. It
returns the ``LineResult``: every DUT's record and the summary. For your firmware
in a product you can also Go Live with, see ``imp_product(...).line()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from impfactory.fixture.line import LineConfig, LineResult, run_line
from impfactory.tools.cli import lib_path_restored
from impfactory.tools.firmware_input import apply_lib_dirs, read_agent, read_firmware
from impfactory.tools.line_setup import factory_cloud

__all__ = ["factory_line"]


def _code(code: str | Path | None, what: str) -> str | None:
    return read_firmware(code, what) if isinstance(code, Path) else code


@pytest.fixture
def factory_line(broker_url: str) -> Callable[..., LineResult]:
    """A function that runs one line and returns its ``LineResult``."""

    def run(firmware: str | Path | None = None, app: str | Path | None = None,
            agent: str | Path | None = None, lib: Sequence[str | Path] = (),
            **config: Any) -> LineResult:
        with lib_path_restored():  # lib is for this line only
            apply_lib_dirs([Path(d) for d in lib])
            factory, application = _code(firmware, "firmware"), _code(app, "app")
            agent_code = read_agent(agent, "agent") if isinstance(agent, Path) else agent

            async def go() -> LineResult:
                async with factory_cloud(broker_url, factory_code=factory, app_code=application,
                                         agent_code=agent_code, impos_size=64 * 1024) as cloud:
                    return await run_line(LineConfig(**config), cloud)

            return asyncio.run(go())

    return run
