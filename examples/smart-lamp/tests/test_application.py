"""The SmartLamp at home: its application, its agent's messages, and production's
extensions (load time, polite deployment, production groups, fixture targets)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable

from conftest import APP

from impfactory.tools.pytest_plugin import Dut, Product, WebhookReceiver

V2 = APP.read_text(encoding="utf-8") + '\nserver.log("SmartLamp application v2");\n'


def at_home(lamp: Product) -> Dut:
    """A lamp through the factory, then BlinkUp'd by its owner at home: the factory
    firmware cleared its settings once blessed, so it ships unconfigured."""
    dut = lamp.add_fixture().blinkup()
    dut.wait_for("blessed")
    lamp.activate(dut)
    dut.wait_for_log("SmartLamp application started")
    return dut


def test_the_light_follows_its_agent(lamp: Product) -> None:
    dut = at_home(lamp)
    assert dut.model("rgb").colors == [(153, 108, 60)]  # warm white at 60 %
    assert dut.send("set", {"color": [0, 0, 255], "brightness": 100})
    dut.wait_for_log("light set to [0, 0, 255] at 100 %")
    assert dut.model("rgb").colors == [(0, 0, 255)]
    assert ("state", {"color": [0, 0, 255], "brightness": 100, "on": True}) in \
        dut.agent_messages


def test_the_lamps_web_api_at_its_agent_url(lamp: Product) -> None:
    dut = at_home(lamp)
    url = lamp.device(dut.device_id)["agent_url"]
    wanted = {"color": [255, 0, 0], "brightness": 50}
    post = urllib.request.Request(url, json.dumps(wanted).encode(), method="POST")
    with urllib.request.urlopen(post, timeout=10) as answer:
        assert answer.status == 202
    dut.wait_for_log("light set to [255, 0, 0] at 50 %")
    assert dut.model("rgb").colors == [(127, 0, 0)]
    state = None
    for _ in range(100):  # the device's answer reaches its agent a moment later
        with urllib.request.urlopen(url, timeout=10) as answer:
            state = json.loads(answer.read())["state"]
        if state is not None:
            break
        time.sleep(0.05)
    assert state == {**wanted, "on": True}


def test_a_hot_lamp_derates_its_light(lamp: Product) -> None:
    dut = at_home(lamp)
    dut.set("sensor", "temperature", 60.0)
    dut.wait_for_log("board 60.0 degC, light 20 %")  # the next reading, a minute on
    assert dut.model("rgb").colors == [(51, 36, 20)]


def test_the_application_waits_for_the_owners_blinkup(make_lamp: Callable[..., Product],
                                                      webhook_receiver: WebhookReceiver
                                                      ) -> None:
    lamp = make_lamp(load_code_after_blessing=False)
    lamp.add_webhook(lamp.zone.production, "blinkup", webhook_receiver.url)
    dut = at_home(lamp)
    after = dut.events[dut.events.index("blessed"):]
    assert after.count("code_started") == 1  # not at blessing: at the owner's BlinkUp
    assert after.index("code_started") > after.index("powered_on")
    [hook] = webhook_receiver.wait_for("blinkup")
    assert hook["device_id"] == dut.device_id
    assert lamp.device(dut.device_id)["activated"]


def test_a_polite_deployment_fades_out_first(lamp: Product) -> None:
    dut = at_home(lamp)
    lamp.deploy(lamp.zone.production, V2)
    lamp.restart(lamp.zone.production, conditional=True)
    dut.wait_for_log("SmartLamp application v2")
    logs = dut.logs
    asked = next(i for i, line in enumerate(logs) if line.startswith("shutdown requested (1)"))
    assert asked < next(i for i, line in enumerate(logs) if line.endswith("v2"))


def test_lamps_move_between_production_groups(lamp: Product) -> None:
    zone = lamp.go_live()
    dut = at_home(lamp)
    lamp.create_group("Field Trial", "production")
    lamp.deploy("Field Trial", V2)
    lamp.assign("Field Trial", [dut.device_id])  # it takes the group's code at once
    dut.wait_for_log("SmartLamp application v2")
    assert lamp.devices("Field Trial") == [dut.device_id]
    assert lamp.devices(zone.production) == []


def test_a_new_production_target_takes_the_next_lamps(lamp: Product) -> None:
    zone = lamp.go_live()
    fixture = lamp.add_fixture()
    first = fixture.blinkup()
    first.wait_for("blessed")
    lamp.create_group("SmartLamp EU", "production")
    lamp.deploy("SmartLamp EU", V2)
    lamp.update_group(zone.fixture, production_target="SmartLamp EU")
    second = fixture.blinkup()
    second.wait_for("blessed")
    assert lamp.devices(zone.production) == [first.device_id]
    assert lamp.devices("SmartLamp EU") == [second.device_id]
