"""Every troubleshooting case of Electric Imp's production guide is a flag of ``device life``.

The guide (docs/guide.md, "Troubleshooting") names five cases an operator meets,
each with the status LED it shows; each is reproduced here with the flag the
guide gives and checked against what the guide says the LED and the cloud show:

* BlinkUp failed (a fast red flash or a slow orange flash): ``--fault bad_blinkup``
  and ``--fault misplaced``;
* BlinkUp succeeded (three seconds of solid green, then red and amber) but no
  connection: ``--fault wrong_password``;
* an impOS update during the first connection (solid green for its whole length,
  then a restart, and only then the DUT firmware): ``--impos VERSION``;
* DUT firmware without ``server.bless()`` (connected, never a verdict):
  ``--fault no_bless``;
* an already-blessed DUT (it cannot be blessed again): ``--fault already_blessed``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from impfactory.backoff import Backoff
from impfactory.devicecode import mark_python
from impfactory.firmware.examples import factory_source
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID
from impfactory.firmware.wifi import ConnectionManager, StageTimes
from impfactory.tools import cli
from impfactory.tools.cmd_device import BLESS_CALL, dut_code
from impfactory.tools.plugin_asserts import assert_led_sequence


def life(capsys: pytest.CaptureFixture[str], broker_url: str, *args: str) -> dict[str, Any]:
    argv = ["device", "life", "--json", "--broker", broker_url, *args]
    if "--impos" not in args:
        argv += ["--impos", ""]
    assert cli.main(argv) == 0
    return dict(json.loads(capsys.readouterr().out))


def events(out: dict[str, Any]) -> list[str]:
    return [e["event"] for e in out["events"]]


def leds(out: dict[str, Any]) -> list[str]:
    return [s["state"] for s in out["led"]]


def test_a_corrupted_blinkup_flashes_red(capsys, broker_url: str) -> None:
    out = life(capsys, broker_url, "--fault", "bad_blinkup")
    assert_led_sequence(leds(out), ["waiting_blinkup", "blinkup_receiving", "blinkup_failed"])
    assert "blinkup_ok" not in leds(out) and not out["blessed"]


def test_a_misplaced_dut_keeps_its_slow_amber_flash(capsys, broker_url: str) -> None:
    out = life(capsys, broker_url, "--fault", "misplaced")
    assert leds(out) == ["off", "waiting_blinkup", "off"]  # amber 500/500 until switched off
    assert "blinkup_window_closed" in events(out) and "blinkup_ok" not in events(out)
    assert out["cloud_log"] == []  # it never reached the cloud


def test_blinkup_ok_but_a_network_that_does_not_fit_never_connects(capsys,
                                                                   broker_url: str) -> None:
    out = life(capsys, broker_url, "--fault", "wrong_password")
    assert_led_sequence(leds(out), ["blinkup_ok", "joining_wifi"])
    assert "online" not in leds(out) and "connect_failed" in events(out)
    green = next(i for i, s in enumerate(out["led"]) if s["state"] == "blinkup_ok")
    shown = out["led"][green + 1]["t"] - out["led"][green]["t"]
    # three seconds on a clock scaled x100: a timer the loop serves 15 ms late (a busy
    # machine) shows as 1.5 s more; never less than three
    assert 2.95 <= shown < 4.5


def test_the_red_stages_show_even_when_the_next_attempt_comes_late(
        capsys, broker_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loaded machine serves a DUT's timers late, so its next attempt can start well
    after the first failure. Here on purpose: the first attempt fails at 1.25 s, inside
    the green, and the next one starts at 2.75 s and fails at its join at 4.0 s. A life
    that ended a fixed 2 s after the first failure was off at 3.25 s, before the
    second attempt's join: no attempt was seen through after the green (one loaded
    full run showed only a search after it). The life ends once an attempt has failed
    with the green over, so its search and join are both on the timeline."""
    def slow(clock: Any, led: Any, env: Any, mac: str, times: Any) -> ConnectionManager:
        return ConnectionManager(clock, led, env, mac, StageTimes(join=0.5),
                                 Backoff(first=1.5, jitter=0.0))

    monkeypatch.setattr("impfactory.firmware.device._ConnectionManager", slow)
    out = life(capsys, broker_url, "--fault", "wrong_password")
    assert_led_sequence(leds(out), ["blinkup_ok", "searching_wifi", "joining_wifi"])
    assert "online" not in leds(out)


def test_an_impos_update_shows_solid_green_before_the_dut_firmware(capsys,
                                                                   broker_url: str) -> None:
    out = life(capsys, broker_url, "--impos", "44.0.1")
    assert_led_sequence(leds(out), ["blinkup_ok", "online", "updating", "off", "online",
                                    "blessed"])
    seen = events(out)
    assert seen.index("impos_updated") < seen.index("testing") < seen.index("blessed")
    assert out["blessed"]


def test_dut_firmware_without_bless_stays_online_without_a_verdict(capsys,
                                                                   broker_url: str) -> None:
    out = life(capsys, broker_url, "--fault", "no_bless")
    assert "testing" in events(out)  # the DUT firmware ran
    assert_led_sequence(leds(out), ["blinkup_ok", "online"])
    assert leds(out)[-2:] == ["online", "off"]  # online until switched off
    assert not {"blessed", "test_failed"} & set(leds(out))
    assert not out["blessed"]
    assert not any(line.startswith("Bless") for line in out["cloud_log"])
    assert any("tests passed" in line for line in out["logs"])  # its tests did pass


def test_an_already_blessed_dut_is_not_blessed_again(capsys, broker_url: str) -> None:
    out = life(capsys, broker_url, "--fault", "already_blessed")
    states = leds(out)
    second = len(states) - 1 - states[::-1].index("waiting_blinkup")
    assert "blessed" in states[:second]  # its first life on the line
    assert_led_sequence(states[second:], ["blinkup_ok", "online"])
    assert not {"blessed", "test_failed"} & set(states[second:])
    assert out["blessed"]  # still blessed, from before
    said = out["cloud_log"]
    assert said.index("Factory BlinkUp of a blessed device: it stays blessed") > next(
        i for i, line in enumerate(said) if line.startswith("Blessed: "))
    assert events(out).count("blinkup_ok") == 2 and events(out).count("blessed") == 1


def test_no_bless_removes_every_bless_call_in_either_language() -> None:
    squirrel = 'server.bless(ok, function(b) { server.log("b"); });\nserver . bless (true, f);\n'
    assert not BLESS_CALL.search(dut_code(squirrel, "no_bless"))
    python = mark_python(factory_source(FACTORY_SSID, FACTORY_PASSWORD, python=True))
    assert BLESS_CALL.search(python)
    changed = dut_code(python, "no_bless")
    assert not BLESS_CALL.search(changed)
    compile(changed, "dut.py", "exec")
    assert dut_code(squirrel, "none") == squirrel
