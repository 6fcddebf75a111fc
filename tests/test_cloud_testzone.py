"""``impfactory cloud testzone`` makes a Test Zone a new user can Go Live from.

The README's impCentral section needs a product with pre-production, pre-DUT and
pre-factory fixture groups, each with a promoted deployment. The command makes
them over the REST API; the test reads them back the way a client would, then
runs ``impfactory golive`` from the fixture group it printed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from impfactory.cloud.api_client import ApiClient
from impfactory.cloud.api_thread import ApiThread
from impfactory.tools.cli import main


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiThread]:
    with ApiThread(tmp_path / "cloud.db") as running:
        running.call(running.service.accounts.create, "owner", "secret")
        yield running


def run_testzone(api: ApiThread, *extra: str) -> int:
    return main(["cloud", "testzone", "--endpoint", api.endpoint, "--user", "owner",
                 "--password", "secret", *extra])


def test_it_makes_the_productionguide_test_zone_ready_for_go_live(
        api: ApiThread, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_testzone(api, "--json") == 0
    made = json.loads(capsys.readouterr().out)
    assert made["product"]["name"] == "MyProduct"
    assert [g["name"] for g in made["groups"]] == ["MyPreProductionDG", "MyPreDUTDG",
                                                   "MyPreFactoryDG"]
    client = ApiClient(api.endpoint).login("owner", "secret")
    groups = {g["attributes"]["name"]: g for g in client.list_all("/devicegroups")}
    fixture = groups["MyPreFactoryDG"]
    assert fixture["type"] == "pre_factoryfixture_devicegroup"
    assert fixture["relationships"]["production_target"]["id"] == groups["MyPreProductionDG"]["id"]
    assert fixture["relationships"]["dut_target"]["id"] == groups["MyPreDUTDG"]["id"]
    for name in ("MyPreProductionDG", "MyPreDUTDG", "MyPreFactoryDG"):
        builds = client.list_all("/deployments", {"devicegroup.id": groups[name]["id"]})
        assert len(builds) == 1 and builds[0]["attributes"]["promoted"] is True
        assert "promoted" in builds[0]["attributes"]["tags"]
    app = client.call("GET", f"/deployments/{made['groups'][0]['deployment']}")["data"]
    assert app["attributes"]["origin"] == "MyAppRC1"

    assert main(["golive", "--endpoint", api.endpoint, "--user", "owner", "--password",
                 "secret", "--from", "MyPreFactoryDG", "--production", "MyProductionDG",
                 "--dut", "MyDUTDG", "--fixture", "MyFixtureDG"]) == 0
    names = {g["attributes"]["name"]: g["type"] for g in client.list_all("/devicegroups")}
    assert names["MyFixtureDG"] == "factoryfixture_devicegroup"
    assert names["MyProductionDG"] == "production_devicegroup"


def test_text_output_names_what_was_made(api: ApiThread,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run_testzone(api, "--product", "Lamp") == 0
    out = capsys.readouterr().out
    assert out.startswith("product Lamp (")
    for name in ("MyPreProductionDG", "MyPreDUTDG", "MyPreFactoryDG", "MyAppRC1",
                 "impfactory golive --from MyPreFactoryDG"):
        assert name in out


@pytest.mark.parametrize("extra, needle", [
    (["--product", " "], "--product"),
    (["--password", "wrong"], "401"),
])
def test_bad_input_is_one_line_and_exit_2(api: ApiThread, extra: list[str], needle: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert run_testzone(api, *extra) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_second_test_zone_of_the_same_name_is_refused(
        api: ApiThread, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_testzone(api) == 0
    capsys.readouterr()
    assert run_testzone(api) == 2
    assert "Duplicate Resource: Products must have unique names." in capsys.readouterr().err


@pytest.mark.parametrize("group, needle", [
    ("MyPreDUTDG", "not a (pre-)factory fixture group"),
    ("NoSuchDG", "no device group named 'NoSuchDG'"),
])
def test_floor_assign_names_a_fixture_group_or_is_refused_before_any_imp(
        api: ApiThread, group: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``floor --assign`` (the README's floor line) looks the group up first: a wrong
    one is bad input, refused before the floor enrols anything (its broker is nowhere)."""
    assert run_testzone(api) == 0
    capsys.readouterr()
    assert main(["floor", "--cloud", api.endpoint, "--broker", "mqtt://127.0.0.1:1", "--user",
                 "owner", "--password", "secret", "--assign", group, "--no-commands"]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert ApiClient(api.endpoint).login("owner", "secret").list_all("/devices") == []
