"""``impfactory golive`` and ``impfactory floor`` refuse bad input with one line and exit 2."""

from __future__ import annotations

import socket

import pytest

from impfactory.tools.cli import main as impfactory


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


GOLIVE = ["golive", "--user", "u", "--password", "p", "--from", "F", "--production", "P",
          "--dut", "D", "--fixture", "X"]


@pytest.mark.parametrize("extra, needle", [
    (["--webhook", "blessing"], "EVENT=URL"),
    (["--webhook", "blessing=http://h/x,xml"], "json or form"),
    (["--production", ":descr only"], "needs a name"),
    (["--endpoint", "notaurl"], "http://HOST:PORT/v5"),
    (["--endpoint", "ftp://h/v5"], "http://HOST:PORT/v5"),
    (["--endpoint", "http://[::1/v5"], "bad endpoint"),
    (["--endpoint", "http://h:port/v5"], "bad endpoint"),
])
def test_golive_bad_arguments(extra: list[str], needle: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = [] if "--endpoint" in extra else ["--endpoint", "http://127.0.0.1:1/v5"]
    code = impfactory([*GOLIVE, *endpoint, *extra])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_golive_without_a_cloud_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = impfactory([*GOLIVE, "--endpoint", f"http://127.0.0.1:{_closed_port()}/v5"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, needle", [
    (["--duts", "-1"], "negative"), (["--scale", "0"], "positive"), ([], "--user"),
    (["--press-every", "-1"], "negative"), (["--timeout", "0"], "positive"),
    (["--cloud", "notaurl"], "http://HOST:PORT/v5"),
    (["--broker", "notaurl"], "mqtt://HOST:PORT"),
    (["--broker", "mqtt://"], "mqtt://HOST:PORT"),
    (["--broker", "mqtt://h:abc"], "bad --broker"),
])
def test_floor_bad_arguments(extra: list[str], needle: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any connection: the cloud given here is on a closed port."""
    creds = [] if not extra else ["--user", "u", "--password", "p"]
    where = {"--cloud": f"http://127.0.0.1:{_closed_port()}/v5", "--broker": "mqtt://127.0.0.1:1"}
    for i, word in enumerate(extra):
        if word in where:
            where[word] = extra[i + 1]
    rest = [w for i, w in enumerate(extra)
            if w not in where and (i == 0 or extra[i - 1] not in where)]
    code = impfactory(["floor", "--cloud", where["--cloud"], "--broker", where["--broker"],
                       *creds, *rest])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, needle", [
    (["--clients", "0"], "--clients"), (["--seconds", "0"], "--seconds"),
    (["--devices", "-5"], "--devices"),
])
def test_perf_api_bad_arguments(extra: list[str], needle: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code = impfactory(["perf", "api", *extra])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_perf_api_short_run_reports_figures(capsys: pytest.CaptureFixture[str]) -> None:
    """A one-second run (the figures themselves are the lead's, on a quiet machine)."""
    import json

    code = impfactory(["perf", "api", "--devices", "20", "--clients", "2", "--seconds", "1",
                       "--json"])
    figures = json.loads(capsys.readouterr().out)
    assert code == 0 and figures["non_2xx"] == 0 and figures["requests"] >= 20
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert set(figures["p50_ms_by_call"]) == {"GET /accounts/me", "GET /devices",
                                              "GET /devicegroups/{id}", "POST /deployments"}


def test_golive_against_a_running_cloud_refuses_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong password, an unknown --from group and a non-fixture --from group."""
    from impfactory.cloud.api_client import ApiClient
    from impfactory.cloud.api_thread import ApiThread

    with ApiThread(":memory:") as api:
        api.call(api.service.accounts.create, "u", "p")
        owner = ApiClient(api.endpoint).login("u", "p")
        product = owner.call("POST", "/products", {"data": {"type": "product",
                                                            "attributes": {"name": "P"}}})
        owner.call("POST", "/devicegroups", {"data": {
            "type": "development_devicegroup", "attributes": {"name": "Dev"},
            "relationships": {"product": {"type": "product", "id": product["data"]["id"]}}}})
        base = ["golive", "--endpoint", api.endpoint, "--production", "P", "--dut", "D",
                "--fixture", "X"]
        for creds, source, needle in ((["--user", "u", "--password", "bad"], "Dev", "401"),
                                      (["--user", "u", "--password", "p"], "Nope", "no device"),
                                      (["--user", "u", "--password", "p"], "Dev", "400")):
            code = impfactory([*base, *creds, "--from", source])
            err = capsys.readouterr().err
            assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
        assert len(owner.call("GET", "/devicegroups")["data"]) == 1
