"""The fault plan (seeded, per DUT) and the LED-based failure diagnosis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impfactory.firmware.led import LedState as S
from impfactory.fixture.faults import FAULTS, FaultSpecError, parse_faults, plan_dut
from impfactory.fixture.observe import REASONS, failure_reason


def test_parse_faults() -> None:
    assert parse_faults(["misplaced=0.1", "link_drop=1", "misplaced=0.2"]) == {
        "misplaced": 0.2, "link_drop": 1.0}
    assert parse_faults(None) == {}
    for bad in ("misplaced", "gremlins=0.1", "test_fail=x", "test_fail=1.5", "wrong_wifi=-0.1"):
        with pytest.raises(FaultSpecError):
            parse_faults([bad])


def test_plan_is_a_function_of_seed_and_index() -> None:
    rates = {name: 0.3 for name in FAULTS}
    first = [plan_dut(7, i, rates, 0.2) for i in range(200)]
    again = [plan_dut(7, i, rates, 0.2) for i in reversed(range(200))][::-1]
    other = [plan_dut(8, i, rates, 0.2) for i in range(200)]
    assert first == again
    assert first != other


def test_rates_are_honoured() -> None:
    rates = {"misplaced": 0.1, "test_fail": 0.5}
    plans = [plan_dut(1, i, rates, 0.25) for i in range(4000)]
    for name, rate in rates.items():
        share = sum(p.has(name) for p in plans) / len(plans)
        assert share == pytest.approx(rate, abs=0.03)
    assert not any(p.has("wrong_wifi") or p.has("link_drop") for p in plans)
    assert sum(p.outdated_impos for p in plans) / len(plans) == pytest.approx(0.25, abs=0.03)
    assert all(plan_dut(1, i, {n: 1.0 for n in FAULTS}, 1.0).faults == set(FAULTS)
               for i in range(20))


LIFE = [S.OFF, S.WAITING_BLINKUP, S.BLINKUP_RECEIVING, S.BLINKUP_OK, S.SEARCHING_WIFI,
        S.JOINING_WIFI, S.GETTING_IP, S.RESOLVING, S.CONNECTING, S.ONLINE]


@pytest.mark.parametrize(("states", "reason"), [
    ([*LIFE, S.BLESSED], None),
    ([*LIFE, S.BLESSED, S.ONLINE], None),  # application running after the solid green
    ([*LIFE, S.TEST_FAILED], "test_failed"),
    ([S.OFF, S.WAITING_BLINKUP], "blinkup_failed"),
    ([S.OFF, S.WAITING_BLINKUP, S.BLINKUP_RECEIVING, S.BLINKUP_FAILED], "blinkup_failed"),
    (LIFE[:6], "wifi_join_failed"),
    (LIFE[:9], "server_unreachable"),
    ([*LIFE, S.UPDATING], "impos_update_stalled"),
    ([*LIFE, S.SEARCHING_WIFI], "link_lost"),
    (LIFE, "no_bless"),
    ([], "blinkup_failed"),
])
def test_failure_reason(states: list[S], reason: str | None) -> None:
    assert failure_reason(states) == reason


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list(S)), max_size=30))
def test_any_led_history_gets_a_known_reason(states: list[S]) -> None:
    assert failure_reason(states) in (None, *REASONS)


#: What a bench's colour sensor names (protocol/bench_status.py): a look two states
#: share carries both names.
BENCH = ["off", "waiting_blinkup", "blinkup_ok", "blinkup_failed/power_problem",
         "searching_wifi", "joining_wifi", "getting_ip/resolving", "connecting", "online",
         "updating/blessed", "test_failed/power_problem"]


@pytest.mark.parametrize(("names", "reason"), [
    # a quick cloud blesses within the 3 s BlinkUp green: one long green, read as both
    (["waiting_blinkup", "off", "updating/blessed"], None),
    (["waiting_blinkup", "off", "blinkup_ok", "connecting", "online", "updating/blessed"], None),
    # solid green and then a reconnect: an impOS update, not the blessing
    (["waiting_blinkup", "blinkup_ok", "online", "updating/blessed", "connecting"], "link_lost"),
    (["waiting_blinkup", "blinkup_ok", "online", "test_failed/power_problem"], "test_failed"),
    # red between the WiFi stages is a stretch the sensor could not name, not a verdict
    (["waiting_blinkup", "blinkup_ok", "joining_wifi", "test_failed/power_problem",
      "joining_wifi"], "wifi_join_failed"),
    (["waiting_blinkup", "blinkup_ok", "joining_wifi", "test_failed/power_problem"],
     "wifi_join_failed"),
    (["test_failed/power_problem"], "power_problem"),
    (["waiting_blinkup", "blinkup_failed/power_problem"], "blinkup_failed"),
    (["waiting_blinkup", "blinkup_ok", "getting_ip/resolving"], "wifi_join_failed"),
    (["waiting_blinkup", "blinkup_ok", "connecting"], "server_unreachable"),
    (["waiting_blinkup", "no_such_look"], "blinkup_failed"),
])
def test_failure_reason_reads_a_bench_sensors_names(names: list[str], reason: str | None) -> None:
    assert failure_reason(names) == reason


def test_the_clouds_verdict_beats_the_led() -> None:
    assert failure_reason(["waiting_blinkup", "off"], blessed=True) is None
    assert failure_reason([*LIFE, S.BLESSED], blessed=False) == "test_failed"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(BENCH), max_size=30))
def test_any_bench_reading_gets_a_known_reason(names: list[str]) -> None:
    assert failure_reason(names) in (None, *REASONS)
