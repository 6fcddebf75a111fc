"""pytest fixtures: a real MQTT broker on a free loopback port, started once per session.

* ``broker_url``: the broker ``IMPFACTORY_BROKER`` names (``auto`` by default:
  Mosquitto when installed, else the embedded amqtt broker; or ``mqtt://H:P``).
* ``any_broker_url``: parametrised over every broker this machine can run
  (``mosquitto`` when installed, and ``embedded``), so a test using it runs once
  on each: contract tests written once, run over every back end.

Both are session-scoped and stopped at the end of the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from impfactory.cloud.broker import BrokerServer, find_mosquitto

BROKER_KINDS = [*(["mosquitto"] if find_mosquitto() else []), "embedded"]


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """URL of the session's broker (``IMPFACTORY_BROKER``: auto|mosquitto|embedded|mqtt://)."""
    with BrokerServer(os.environ.get("IMPFACTORY_BROKER", "auto")) as url:
        yield url


@pytest.fixture(scope="session", params=BROKER_KINDS)
def any_broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of each broker kind in turn (the test runs once per kind)."""
    with BrokerServer(request.param) as url:
        yield url
