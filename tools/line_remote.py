"""A line against a cloud that already runs, reached as a factory reaches impCloud.

``line run --cloud URL --user U --password P --broker URL`` (options as ``floor``
takes them) sets nothing up in-process: it logs in to the REST API, finds or makes
the product ``Line`` with its Test Zone groups (fixture group aimed at the DUT and
production groups) and a deployment in each whose code is the run's (a group whose
current deployment already runs it keeps it), enrols fixtures with the account's
developer plan ID (``POST /enrolment_tokens``), adopts them into the fixture group
(the call ``impt device assign`` makes), and hands the line the broker URL. From
then on only MQTT joins the line to the cloud, so the cloud may crash and restart
under a running line (``impfactory soak``, tests/test_crash.py).

What the in-process set-up adds and a remote cloud cannot give: no impOS release
is published (``--outdated-impos`` is refused), and DUT records carry no agent
activity (the REST API does not expose it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from impfactory.backoff import Backoff
from impfactory.cloud.api_client import ApiClient, ApiClientError
from impfactory.errors import ImpFactoryError
from impfactory.firmware.examples import (
    application_source,
    factory_agent_source,
    factory_source,
)
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID
from impfactory.firmware.settings import DEFAULT_IMPOS_VERSION
from impfactory.fixture.line import FIXTURE_SERIAL_BASE
from impfactory.tools.line_setup import APP_AGENT_CODE, OUI, PRODUCT

T = TypeVar("T")
FIXTURE_TYPE = "pre_factoryfixture_devicegroup"
DUT_TYPE = "pre_dut_devicegroup"
PRODUCTION_TYPE = "pre_production_devicegroup"


class RemoteLineError(ImpFactoryError, RuntimeError):
    """The running cloud refused what the line needs (login, product, groups)."""


@dataclass
class RemoteLine:
    """The product's groups in a running cloud (ids and types, as the API names them)."""

    product_id: str
    fixture_group: dict[str, Any]
    dut_group: dict[str, Any]
    production_group: dict[str, Any]


@dataclass
class RemoteLineCloud:
    """A running cloud set up for a line over its REST API (a ``fixture.line.LineCloud``)."""

    client: ApiClient
    line: RemoteLine
    broker_url: str
    wifi_ssid: str = FACTORY_SSID
    wifi_password: str = FACTORY_PASSWORD
    impos_current: str = DEFAULT_IMPOS_VERSION
    impos_outdated: str = DEFAULT_IMPOS_VERSION
    first_dut_serial: int | None = None

    def fixture_enrolment(self) -> tuple[str, str]:
        token = patiently(self.client, "POST", "/enrolment_tokens")["data"]["attributes"]
        return str(token["plan_id"]), str(token["token"])

    async def adopt_fixture(self, device_id: str) -> None:
        group = self.line.fixture_group
        await asyncio.to_thread(patiently, self.client, "POST",
                                f"/devicegroups/{group['id']}/relationships/devices",
                                {"data": [{"type": "device", "id": device_id}]})


    async def blessed_devices(self, device_ids: list[str]) -> set[str]:
        """Those of ``device_ids`` in the production group (only blessing puts a
        device there)."""
        group = self.line.production_group
        found = await asyncio.to_thread(retrying, lambda: self.client.list_all(
            "/devices", {"devicegroup.id": str(group["id"])}))
        return {str(d["id"]) for d in found} & set(device_ids)


API_BACKOFF = Backoff(first=0.2, factor=2.0, cap=2.0, jitter=0.5)
API_PATIENCE = 60.0
"""Wall seconds a call waits for a cloud that does not answer (restarting after a crash)."""


def patiently(client: ApiClient, method: str, path: str, body: Any = None) -> Any:
    """``client.call``, again while the cloud cannot answer (``retrying``). The calls
    made this way are safe to repeat: a second token, the same assignment."""
    return retrying(lambda: client.call(method, path, body))


def retrying(work: Callable[[], T]) -> T:
    """``work()``, again after a pause while the cloud cannot be reached or answers
    5xx (a cloud restarting), for ``API_PATIENCE`` seconds; a 4xx is an answer and
    raised at once."""
    deadline = time.monotonic() + API_PATIENCE
    failures = 0
    while True:
        try:
            return work()
        except ApiClientError as err:
            failures += 1
            if 0 < err.status < 500 or time.monotonic() >= deadline:
                raise
            time.sleep(API_BACKOFF.delay(failures))


def prepare(client: ApiClient, factory_code: str, app_code: str, agent_code: str) -> RemoteLine:
    """Find or make the product ``Line``, its three groups and their deployments."""
    products = [p for p in client.list_all("/products") if p["attributes"]["name"] == PRODUCT]
    if products:
        product_id = str(products[0]["id"])
    else:
        product_id = str(client.call("POST", "/products", {"data": {
            "type": "product", "attributes": {"name": PRODUCT,
                                              "description": "made by impfactory line run"}}}
                                     )["data"]["id"])
    groups = {g["type"]: g for g in client.list_all("/devicegroups",
                                                    {"product.id": product_id})}
    for kind, name in ((PRODUCTION_TYPE, "LineProduction"), (DUT_TYPE, "LineDUT"),
                       (FIXTURE_TYPE, "LineFixture")):
        if kind in groups:
            continue
        relationships: dict[str, Any] = {"product": {"type": "product", "id": product_id}}
        if kind == FIXTURE_TYPE:
            for key, target in (("production_target", PRODUCTION_TYPE), ("dut_target", DUT_TYPE)):
                relationships[key] = {"type": target, "id": groups[target]["id"]}
        groups[kind] = client.call("POST", "/devicegroups", {"data": {
            "type": kind, "attributes": {"name": name},
            "relationships": relationships}})["data"]
    for kind, code, agent in ((FIXTURE_TYPE, factory_code, agent_code),
                              (DUT_TYPE, factory_code, agent_code),
                              (PRODUCTION_TYPE, app_code, APP_AGENT_CODE)):
        _deploy(client, groups[kind], code, agent)
    return RemoteLine(product_id, groups[FIXTURE_TYPE], groups[DUT_TYPE],
                      groups[PRODUCTION_TYPE])


def _deploy(client: ApiClient, group: dict[str, Any], code: str, agent: str) -> None:
    """Make ``code`` the group's current deployment unless it already is."""
    current = group.get("relationships", {}).get("current_deployment", {})
    if isinstance(current, dict) and current.get("id"):
        found = client.call("GET", f"/deployments/{current['id']}")["data"]["attributes"]
        if (found.get("device_code"), found.get("agent_code")) == (code, agent):
            return
    client.call("POST", "/deployments", {"data": {
        "type": "deployment",
        "attributes": {"device_code": code, "agent_code": agent,
                       "description": f"{PRODUCT} {group['type']}"},
        "relationships": {"devicegroup": {"type": group["type"], "id": group["id"]}}}})


def next_dut_serial(client: ApiClient) -> int | None:
    """The serial after every line DUT the account knows, so no run meets a used one."""
    serials = []
    for device in client.list_all("/devices"):
        mac = str(device["attributes"].get("mac_address") or "")
        if mac.startswith(OUI):
            with contextlib.suppress(ValueError):
                serials.append(int(mac[6:], 16))
    duts = [n for n in serials if n < FIXTURE_SERIAL_BASE]
    return max(duts) + 1 if duts else None


@contextlib.asynccontextmanager
async def remote_cloud(endpoint: str, user: str, password: str, broker_url: str, *,
                       factory_code: str | None = None, app_code: str | None = None,
                       agent_code: str | None = None, wifi_ssid: str = FACTORY_SSID,
                       wifi_password: str = FACTORY_PASSWORD
                       ) -> AsyncIterator[RemoteLineCloud]:
    """Log in, set the line's product up in the running cloud, yield the line's view."""
    code = factory_code if factory_code is not None else factory_source(wifi_ssid,
                                                                         wifi_password)
    app = app_code if app_code is not None else application_source()
    agent = agent_code if agent_code is not None else (
        factory_agent_source() if factory_code is None else "")

    def setup() -> RemoteLineCloud:
        client = ApiClient(endpoint).login(user, password)
        line = prepare(client, code, app, agent)
        return RemoteLineCloud(client, line, broker_url, wifi_ssid, wifi_password,
                               first_dut_serial=next_dut_serial(client))

    try:
        yield await asyncio.to_thread(retrying, setup)  # finds what a first try made
    except ApiClientError as err:
        raise RemoteLineError(f"the cloud at {endpoint}: {err}") from err
