"""pytest fixtures: an impCloud on the session's broker, with its own database per test.

* ``cloud_factory``: for asyncio tests; ``async with cloud_factory() as cloud:`` runs a
  ``Cloud`` on the test's own loop (``cloud.service`` may be called directly) with a
  fresh database in ``tmp_path``; keyword arguments go to ``Cloud``.
* ``impcloud``: for synchronous tests; a ``CloudThread`` already running, with an owner
  ``OWNER`` registered; ``impcloud.call(fn, ...)`` runs service calls on its thread.
* ``factory_setup``: ``impcloud`` with a Test Zone built by ``make_factory`` (product,
  production/DUT/fixture groups with targets, one deployment each).
* ``fake_device``: ``async with fake_device() as dev:`` a scripted ``FakeDevice`` on the
  session's broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from impfactory.cloud.fakedevice import FakeDevice
from impfactory.cloud.scenario import FactorySetup, make_factory
from impfactory.cloud.server import Cloud, CloudThread

OWNER = "owner"


@pytest.fixture
def cloud_factory(broker_url: str, tmp_path: Path
                  ) -> Callable[..., AbstractAsyncContextManager[Cloud]]:
    """``async with cloud_factory(**kw) as cloud``: a cloud on this test's loop."""

    @asynccontextmanager
    async def make(**kwargs: Any) -> AsyncIterator[Cloud]:
        async with Cloud(tmp_path / "cloud.db", broker_url, **kwargs) as cloud:
            cloud.service.ensure_owner(OWNER)
            yield cloud

    return make


@pytest.fixture
def impcloud(broker_url: str, tmp_path: Path) -> Iterator[CloudThread]:
    """A running cloud on its own thread, owner ``OWNER`` registered."""
    with CloudThread(tmp_path / "cloud.db", broker_url) as cloud:
        cloud.call(cloud.service.ensure_owner, OWNER)
        yield cloud


@pytest.fixture
def factory_setup(impcloud: CloudThread) -> FactorySetup:
    """A Test Zone (product, groups with targets, deployments) in ``impcloud``."""
    return impcloud.call(make_factory, impcloud.service, OWNER)


@pytest.fixture
def fake_device(broker_url: str) -> Callable[..., FakeDevice]:
    """``FakeDevice`` maker bound to the session's broker (use it with ``async with``)."""

    def make(**kwargs: Any) -> FakeDevice:
        return FakeDevice(broker_url, **kwargs)

    return make
