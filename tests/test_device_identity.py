"""An emulated imp's broker identity: registered once, kept in flash, kept by a blessed unit.

A DUT registers its own broker account at its first connection (through an
enrolment slot), is blessed, and is then restarted as a new process would
restart it (a new ``Device`` on the same settings file): it logs in with the
account it kept, with no second registration, and runs its application. Clearing
its configuration clears WiFi and enrolment, not the identity. A broker that
lost the account makes the device register again, once. Over both brokers.
"""

from __future__ import annotations

from pathlib import Path

from test_cloud_flow import World, run

from impfactory.firmware import impapi
from impfactory.firmware.device import Device
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID, Fleet
from impfactory.firmware.settings import JsonFileStore, Settings


def test_a_blessed_device_keeps_its_broker_identity(any_broker_url: str, tmp_path: Path) -> None:
    store = JsonFileStore(tmp_path / "dut.json")

    async def test(w: World) -> None:
        fx = await w.fixture()
        token = await fx.factory_token()
        store.save(Settings(ssid=FACTORY_SSID, password=FACTORY_PASSWORD,
                            plan_id=token.plan_id, enrol_token=token.token))
        fleet = Fleet(w.url)
        dut: Device = fleet.add(serial=0x4242, store=store)
        dut.power_on()
        await dut.wait_for(DeviceEvent.BLESSED, since=0)
        await dut.wait_for(DeviceEvent.CODE_STARTED)  # the application, after blessing
        assert "application running" in dut.logs
        kinds = [r.kind for r in dut.events]
        assert kinds.count(DeviceEvent.REGISTERED) == 1
        assert kinds.index(DeviceEvent.REGISTERED) < kinds.index(DeviceEvent.ONLINE)
        kept = store.load()
        assert kept.registered and w.svc.registrations(dut.device_id) == 1
        await fleet.close()

        # the unit restarts (a new process): same account, no registration, same code
        again = Fleet(w.url)
        back: Device = again.add(serial=0x4242, store=store)
        back.power_on()
        await back.wait_for(DeviceEvent.CODE_STARTED, since=0)
        assert DeviceEvent.REGISTERED not in [r.kind for r in back.events]
        assert "application running" in back.logs
        record = w.svc.get_device(back.device_id)
        assert record.blessed and record.group_id == w.f.production_group.id
        assert w.svc.registrations(back.device_id) == 1

        # imp.clearconfiguration(): WiFi and enrolment go, the module's identity stays
        back.clear_configuration(impapi.CONFIG_ALL)
        cleared = store.load()
        assert (cleared.ssid, cleared.enrol_token) == ("", "")
        assert (cleared.broker_password, cleared.link_key) == (kept.broker_password,
                                                               kept.link_key)
        await again.close()

        # a broker that lost the account: the device registers again, once, and goes on
        assert w.cloud.link.admin is not None
        await w.cloud.link.admin.delete_device(back.device_id)
        store.save(kept)
        third = Fleet(w.url)
        last: Device = third.add(serial=0x4242, store=store)
        last.power_on()
        await last.wait_for(DeviceEvent.CODE_STARTED, since=0)
        assert [r.kind for r in last.events].count(DeviceEvent.REGISTERED) == 1
        assert w.svc.registrations(last.device_id) == 2
        assert store.load().broker_password != kept.broker_password
        await third.close()
        await fx.close()

    run(test, any_broker_url, tmp_path / "cloud.db")
