"""Registration through an enrolment slot survives a crowd on one slot.

Mosquitto binds an enrolment account's client ID to the slot's name, so two devices
registering on one slot at once take each other's session (protocol/linksec.py).
That is a collision, not a failure: the loser pauses (jittered, longer each time)
and tries another slot, without spending one of its ``ATTEMPTS``. Before, a
collision was a failed try, and ``perf cloud --concurrency 100`` lost devices whose
six tries all collided while the busy cloud took seconds to answer.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_cloud_flow import World, run

from impfactory.cloud.broker import BrokerServer, find_mosquitto
from impfactory.firmware import registration
from impfactory.firmware.errors import CloudClientError
from impfactory.firmware.identity import DeviceIdentity
from impfactory.maker import maker_secret
from impfactory.protocol import linksec

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
CROWD = 12


@pytest.mark.skipif(not find_mosquitto() and not IN_CI,
                    reason="only Mosquitto binds a slot's client ID (not installed)")
def test_a_crowd_on_one_slot_registers_every_device(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    # every registration picks slot enrol-000: each takes the others' sessions
    one_slot = SimpleNamespace(randbelow=lambda n: 0, token_hex=secrets.token_hex,
                               token_urlsafe=secrets.token_urlsafe)
    monkeypatch.setattr(registration, "secrets", one_slot)
    ids = [DeviceIdentity.from_serial(0x5100 + k).device_id for k in range(CROWD)]

    async def test(w: World) -> None:
        host, port = w.url.rsplit("@", 1)[-1].removeprefix("mqtt://").split(":")
        credentials = await asyncio.gather(*(
            registration.register(host, int(port), d, linksec.module_key(maker_secret(), d),
                                  attempts=1)
            for d in ids))
        assert all(w.svc.registrations(d) >= 1 for d in ids)
        # they collided (tries beyond the first), and not one gave up for it
        assert sum(c.attempts for c in credentials) > CROWD, credentials

    with BrokerServer("mosquitto") as url:
        run(test, url, tmp_path / "cloud.db")


def test_a_broker_that_is_not_there_still_fails_after_its_attempts() -> None:
    """Collisions are not failures, but a refused connection is: three tries, then a
    typed error naming them."""
    device = DeviceIdentity.from_serial(0x5200).device_id
    key = linksec.module_key(maker_secret(), device)
    with pytest.raises(CloudClientError, match=r"after 3 attempts and 0 collisions"):
        asyncio.run(registration.register("127.0.0.1", 1, device, key, attempts=3, timeout=1.0))
