"""pytest fixtures: a real MQTT broker on a free loopback port, started once per session.

* ``broker_url``: the session's broker: ``--impfactory-broker`` (or
  ``IMPFACTORY_BROKER``) names it: ``auto`` by default (Mosquitto when installed,
  else the embedded amqtt broker), ``mosquitto``, ``embedded``, or ``mqtt://H:P``
  for a broker someone else runs (nothing is started then).
* ``any_broker_url``: parametrised over every broker this machine can run
  (``mosquitto`` when installed, and ``embedded``), so a test using it runs once
  on each: contract tests written once, run over every back end. Pointed at an
  outside broker, it runs once, on that one.

Both are session-scoped and stopped at the end of the session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from impfactory.cloud.broker import BrokerServer
from impfactory.tools.plugin_options import BROKER_KINDS, broker_kinds, broker_spec

__all__ = ["BROKER_KINDS", "any_broker_url", "broker_url"]


@pytest.fixture(scope="session")
def broker_url(pytestconfig: pytest.Config) -> Iterator[str]:
    """URL of the session's broker (``--impfactory-broker``: auto|mosquitto|embedded|mqtt://)."""
    with BrokerServer(broker_spec(pytestconfig)) as url:
        yield url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "any_broker_url" in metafunc.fixturenames:
        kinds = broker_kinds(metafunc.config)
        ids = ["outside" if k.startswith("mqtt://") else k for k in kinds]
        metafunc.parametrize("any_broker_url", kinds, ids=ids, indirect=True, scope="session")


@pytest.fixture(scope="session")
def any_broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of each broker kind in turn (the test runs once per kind)."""
    with BrokerServer(request.param) as url:
        yield url
