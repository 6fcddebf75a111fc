"""A device decodes BlinkUp light into its settings; a bad packet changes nothing."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from impfactory.clock import VirtualClock
from impfactory.firmware.device import Device, DeviceConfig
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.hardware import SimHardware
from impfactory.firmware.identity import DeviceIdentity
from impfactory.firmware.led import LedState
from impfactory.firmware.settings import MemoryStore, Settings
from impfactory.firmware.signals import render_fixture_flash
from impfactory.firmware.wifi import WifiEnvironment
from impfactory.hw.optical import OpticalChannel, OpticalConfig
from impfactory.protocol.blinkup import BlinkUpConfig, encode_frame
from impfactory.protocol.linecode import render_bilevel, render_trilevel

PLAN, TOKEN = "0123456789abcdef", "fedcba9876543210"
S = LedState


def good_frame() -> bytes:
    return encode_frame(BlinkUpConfig(ssid=b"factory", password=b"secret", plan_id=PLAN,
                                      token=TOKEN))


def run(store: MemoryStore, light: np.ndarray | None, *, at: float = 2.0,
        chunk: int = 97, config: DeviceConfig | None = None,
        env: WifiEnvironment | None = None, end: bool = False) -> Device:
    async def go() -> Device:
        clock = VirtualClock()
        dev = Device(DeviceIdentity.from_serial(11), clock, env or WifiEnvironment(),
                     "mqtt://127.0.0.1:1", store=store, config=config)
        dev.power_on()
        await clock.advance(at)
        if light is not None:
            for i in range(0, len(light), chunk):  # the sensor delivers ragged chunks
                dev.feed_light(light[i:i + chunk], 1000.0)
                await clock.advance(chunk / 1000.0)
            if end:
                dev.end_light()
        await clock.advance(10.0)
        await dev.power_off()
        return dev

    return asyncio.run(go())


def test_good_blinkup_through_the_optical_channel_stores_settings() -> None:
    store = MemoryStore()
    channel = OpticalChannel(OpticalConfig(), rng=1)
    flash = render_fixture_flash("factory", "secret", PLAN, TOKEN, "pin8", fast=False,
                                 active_high=False, start=0.0, device_id="0" * 16)
    light = channel.transmit(flash.light_symbols, flash.symbol_rate)
    dev = run(store, light)
    saved = store.load()
    assert (saved.ssid, saved.password, saved.plan_id, saved.enrol_token) == (
        "factory", "secret", PLAN, TOKEN)
    kinds = [r.kind for r in dev.events]
    assert kinds.index(DeviceEvent.BLINKUP_STARTED) < kinds.index(DeviceEvent.BLINKUP_OK)
    states = dev.led.states()
    assert states[:5] == [S.OFF, S.WAITING_BLINKUP, S.BLINKUP_RECEIVING, S.BLINKUP_OK,
                          S.SEARCHING_WIFI]
    green = [s for s in dev.led.segments() if s.state is S.BLINKUP_OK]
    assert abs(sum(s.end - s.start for s in green) - 3.0) < 1e-6
    # No access point: the device keeps flashing its search pattern and reports NO_WIFI.
    assert any(r.kind is DeviceEvent.CONNECT_FAILED and r.detail == 1 for r in dev.events)


def test_fast_blinkup_decodes_too() -> None:
    store = MemoryStore()
    light = render_bilevel(good_frame(), symbol_rate=142.0, noise=0.02, seed=3).samples
    run(store, light)
    assert store.load().enrolled


@pytest.mark.parametrize("active_high", [True, False])
def test_a_capture_that_ends_right_after_the_crc_decodes_once_the_light_ends(
        active_high: bool) -> None:
    """No idle tail: the last bits are decided only when the receiver hears the end."""
    light = render_bilevel(good_frame(), lead=0.1, tail=0.0, active_high=active_high).samples
    cut_short = MemoryStore()
    run(cut_short, light)  # the last few samples wait for a next symbol that never comes
    assert not cut_short.load().enrolled
    store = MemoryStore()
    dev = run(store, light, end=True)
    assert store.load().enrolled and store.load().ssid == "factory"
    assert [r.kind for r in dev.events].count(DeviceEvent.BLINKUP_OK) == 1


def test_light_that_ends_mid_frame_fails_instead_of_receiving_forever() -> None:
    before = Settings(ssid="old", password="pw")
    light = render_bilevel(good_frame(), lead=0.1, tail=0.0).samples
    half = light[: len(light) // 2]
    stuck = run(MemoryStore(before), half)
    assert stuck.led.states()[-2] is S.BLINKUP_RECEIVING  # then the power cut
    store = MemoryStore(before)
    dev = run(store, half, end=True)
    assert store.load() == before
    failed = [r.detail for r in dev.events if r.kind is DeviceEvent.BLINKUP_FAILED]
    assert len(failed) == 1 and "transition" in failed[0]  # the decoder's own verdict
    assert S.BLINKUP_FAILED in dev.led.states()


def test_corrupt_blinkup_leaves_settings_untouched_and_shows_failure() -> None:
    before = Settings(ssid="old", password="pw")
    store = MemoryStore(before)
    frame = bytearray(good_frame())
    frame[9] ^= 0x01  # a bit flipped inside the SSID: the CRC no longer matches
    light = render_bilevel(bytes(frame)).samples
    dev = run(store, light)
    assert store.load() == before
    assert DeviceEvent.BLINKUP_FAILED in [r.kind for r in dev.events]
    assert S.BLINKUP_FAILED in dev.led.states()
    assert DeviceEvent.BLINKUP_OK not in [r.kind for r in dev.events]


def test_window_closes_after_sixty_seconds() -> None:
    store = MemoryStore()
    light = render_bilevel(good_frame()).samples
    dev = run(store, light, at=61.0)
    assert not store.load().has_network
    assert DeviceEvent.BLINKUP_WINDOW_CLOSED in [r.kind for r in dev.events]
    assert dev.led.states() == [S.OFF, S.WAITING_BLINKUP, S.OFF]  # booting, waiting, cut


def test_low_supply_shows_power_problem_and_does_not_boot() -> None:
    async def go() -> Device:
        clock = VirtualClock()
        dev = Device(DeviceIdentity.from_serial(12), clock, WifiEnvironment(),
                     "mqtt://127.0.0.1:1", hardware=SimHardware(voltage=2.2))
        dev.power_on()
        await clock.advance(5.0)
        assert dev.led.state is S.POWER_PROBLEM
        assert dev.led.colour_at(clock.now() + 0.1) == "red"
        assert not dev.listening
        await dev.power_off()
        return dev

    dev = asyncio.run(go())
    assert [r.kind for r in dev.events] == [DeviceEvent.POWERED_ON, DeviceEvent.POWER_PROBLEM,
                                            DeviceEvent.POWERED_OFF]


def test_settings_in_a_json_file_survive_a_power_cycle(tmp_path) -> None:
    from impfactory.firmware.settings import JsonFileStore

    path = tmp_path / "imp.json"
    light = render_bilevel(good_frame()).samples
    run(JsonFileStore(path), light)
    # A new device object on the same file: it is configured without any BlinkUp.
    dev = run(JsonFileStore(path), None)
    assert dev.settings.ssid == "factory" and dev.settings.enrolled
    assert DeviceEvent.BLINKUP_OK not in [r.kind for r in dev.events]
    assert S.WAITING_BLINKUP not in dev.led.states()
    assert S.SEARCHING_WIFI in dev.led.states()


def test_enableblinkup_keeps_or_closes_the_window() -> None:
    from impfactory.firmware import impapi
    from impfactory.firmware.runtime import PythonEngine

    async def go(enable: bool) -> Device:
        clock = VirtualClock()
        store = MemoryStore()
        dev = Device(DeviceIdentity.from_serial(13), clock, WifiEnvironment(),
                     "mqtt://127.0.0.1:1", store=store)
        dev.power_on()
        await clock.advance(1.0)
        dev.runtime.start(f"imp.enableblinkup({enable})",
                          PythonEngine(impapi.build_api(dev, dev.runtime)))
        await clock.advance(100.0)
        assert dev.listening is enable
        dev.feed_light(render_bilevel(good_frame()).samples, 1000.0)
        await clock.advance(5.0)
        await dev.power_off()
        return dev

    assert asyncio.run(go(True)).store.load().enrolled
    assert not asyncio.run(go(False)).store.load().enrolled


def test_a_phone_screen_blinkup_needs_the_trilevel_code() -> None:
    screen = render_trilevel(good_frame(), noise=0.01, seed=5).samples
    factory_only = MemoryStore()
    run(factory_only, screen)
    assert not factory_only.load().enrolled  # a fixture-only receiver ignores screens
    both = DeviceConfig(blinkup_line_codes=("bilevel", "trilevel"))
    for light in (screen, render_bilevel(good_frame(), symbol_rate=142.0).samples):
        store = MemoryStore()
        dev = run(store, light, config=both)
        assert store.load().enrolled
        assert [r.kind for r in dev.events].count(DeviceEvent.BLINKUP_OK) == 1


def test_proxy_settings_from_blinkup_are_kept_and_used() -> None:
    """TLV 13 is stored with the WiFi settings; on a network without that proxy the
    device shows the "proxy address or port wrong" LED and reports NO_PROXY (6)."""
    from impfactory.firmware.wifi import AccessPoint
    from impfactory.protocol.blinkup import ProxyConfig

    cfg = BlinkUpConfig(ssid=b"factory", password=b"secret", plan_id=PLAN, token=TOKEN,
                        proxy=ProxyConfig("proxy.lan", 3128, "line", "pw"))
    store = MemoryStore()
    light = render_bilevel(encode_frame(cfg), symbol_rate=142.0, noise=0.02, seed=3).samples
    dev = run(store, light, env=WifiEnvironment([AccessPoint("factory", "secret")]))
    assert store.load().proxy == {"server": "proxy.lan", "port": 3128, "username": "line",
                                  "password": "pw"}
    assert S.PROXY_WRONG in dev.led.states()
    assert any(r.kind is DeviceEvent.CONNECT_FAILED and r.detail == 6 for r in dev.events)
