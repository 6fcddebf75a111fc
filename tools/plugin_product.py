"""pytest fixture ``imp_product``: your product's Test Zone, built from your firmware files.

::

    FIRMWARE = Path(__file__).parent / "firmware"

    def test_a_dut_is_blessed(imp_product):
        lamp = imp_product(factory=FIRMWARE / "factory.device.nut",
                           app=FIRMWARE / "app.device.nut", lib=[LIB])
        dut = lamp.add_fixture().blinkup()
        assert dut.wait_for("blessed", "test_failed") == "blessed"

``imp_product(factory, app, ...)`` starts a cloud with its REST API (impCentral
API v5: ``product.endpoint``, owner ``product.user`` / ``product.password``) on the
session's broker, with a fresh database, and makes over that API what a user
makes with ``impt``: the product, its Test Zone (a Test Production group, a Test
DUT group, a Test Fixture group aimed at both; ``product.zone``) and a promoted
deployment in each: ``factory`` in the fixture and DUT groups (or ``dut`` in the
DUT group), ``app`` in the production group, with their agent code (the cloud runs
agents: docs/agents.md). Code given as a ``Path`` is read and checked first
(Squirrel ``.nut``: its ``#require`` lines resolved from ``lib`` folders,
``--impfactory-lib`` folders, then the libraries impfactory ships, and compiled;
Python ``.py``: compiled), so a typo fails the test
at once naming file and line; a ``str`` is code as it is.

From there a test drives the factory as docs/guide.md does by hand:
``add_fixture()`` (an emulated fixture enrolled and assigned: plugin_station),
``go_live()``, ``deploy()``, ``restart()``, ``create_group()``, ``update_group()``,
``assign()``, ``add_webhook()``, ``devices()``, ``device()``, ``line()`` (a whole
emulated line in front of a fixture group), and ``api()`` for any other REST call.
Groups are named by their names. Everything is stopped when the test ends.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from impfactory.clock import ScaledClock
from impfactory.cloud.api_client import ApiClient
from impfactory.cloud.api_thread import ApiThread
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.examples import FIXTURE_IMP, fixture_board
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID, Fleet
from impfactory.firmware.settings import DEFAULT_IMPOS_VERSION, MemoryStore, Settings
from impfactory.firmware.wifi import AccessPoint, WifiEnvironment
from impfactory.fixture.line import LineConfig, LineResult, run_line
from impfactory.tools.cli import lib_path_restored
from impfactory.tools.firmware_input import apply_lib_dirs, read_agent, read_firmware
from impfactory.tools.plugin_station import Dut, Fixture, WaitTimeout, _Loop

__all__ = ["GROUP_TYPES", "Product", "Zone", "imp_product"]

Code = str | Path
#: ``create_group`` types: impt's ``--dg-type`` words, or impCentral's type names.
GROUP_TYPES = {"development": "development_devicegroup",
               "pre-factory": "pre_factoryfixture_devicegroup",
               "pre-production": "pre_production_devicegroup",
               "pre-dut": "pre_dut_devicegroup", "factory": "factoryfixture_devicegroup",
               "production": "production_devicegroup", "dut": "dut_devicegroup"}
PROMOTED = "promoted"
USER, PASSWORD = "owner", "secret"
#: Wall seconds a line may take per DUT, on top of a minute for its set-up.
LINE_S_PER_DUT = 10.0


@dataclass(frozen=True)
class Zone:
    """One zone's three factory groups, by name: where blessed devices go
    (``production``), where DUTs run the DUT firmware (``dut``), the fixtures' group
    (``fixture``, aimed at the other two)."""

    production: str
    dut: str
    fixture: str


class Product:
    """A product in a running emulated cloud; see the module's docstring."""

    def __init__(self, api: ApiThread, client: ApiClient, owner_id: str, name: str,
                 zone: Zone, loop: _Loop, restore: Callable[[], None]) -> None:
        self._api = api
        self._client = client
        self._owner_id = owner_id
        self._loop = loop
        self._restore = restore
        self.name = name
        #: The product's id (set once it is made).
        self.product_id = ""
        #: The Test Zone; ``zone`` is the Production Zone once ``go_live`` made it.
        self.test_zone = zone
        self.production_zone: Zone | None = None
        self.endpoint: str = api.endpoint
        self.user, self.password = USER, PASSWORD
        #: The factory's WiFi network (SSID, key) the fixture firmware must flash.
        self.wifi: tuple[str, str] = loop.wifi

    def __repr__(self) -> str:
        return f"Product({self.name!r} at {self.endpoint})"

    @property
    def zone(self) -> Zone:
        """The zone production runs in: the Production Zone once live, else the Test Zone."""
        return self.production_zone or self.test_zone

    # -- the REST API ----------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, **query: str) -> Any:
        """One impCentral API v5 call as the owner (``path`` after ``/v5``): the JSON
        answer. docs/api.md lists the routes."""
        return self._client.call(method, path, body, query=query or None)

    def group_id(self, group: str) -> str:
        """A device group's id, by name (or id)."""
        return str(self._client.find_group(group)["id"])

    def _group(self, group: str) -> dict[str, Any]:
        return dict(self._client.find_group(group))

    def create_group(self, name: str, type: str, *, production_target: str | None = None,
                     dut_target: str | None = None,
                     load_code_after_blessing: bool | None = None,
                     description: str = "") -> str:
        """A new device group of this product (``type``: ``production``, ``dut``,
        ``factory``, ``pre-production`` ... as ``impt dg create --dg-type``); its id."""
        kind = GROUP_TYPES.get(type, type)
        attrs: dict[str, Any] = {"name": name, "description": description}
        if load_code_after_blessing is not None:
            attrs["load_code_after_blessing"] = load_code_after_blessing
        rels: dict[str, Any] = {"product": {"type": "product", "id": self.product_id}}
        rels.update(self._targets(production_target, dut_target))
        made = self.api("POST", "/devicegroups", {"data": {
            "type": kind, "attributes": attrs, "relationships": rels}})
        return str(made["data"]["id"])

    def update_group(self, group: str, *, production_target: str | None = None,
                     dut_target: str | None = None,
                     load_code_after_blessing: bool | None = None) -> None:
        """Change a fixture group's targets (DUTs blessed from then on go to the new
        production target) or a production group's ``load_code_after_blessing``."""
        found = self._group(group)
        data: dict[str, Any] = {"type": found["type"], "id": found["id"], "attributes": {}}
        if load_code_after_blessing is not None:
            data["attributes"]["load_code_after_blessing"] = load_code_after_blessing
        rels = self._targets(production_target, dut_target)
        if rels:
            data["relationships"] = rels
        self.api("PATCH", f"/devicegroups/{found['id']}", {"data": data})

    def _targets(self, production: str | None, dut: str | None) -> dict[str, Any]:
        rels = {}
        for key, name in (("production_target", production), ("dut_target", dut)):
            if name is not None:
                target = self._group(name)
                rels[key] = {"type": target["type"], "id": target["id"]}
        return rels

    def deploy(self, group: str, device_code: Code, agent_code: Code | None = None, *,
               promoted: bool = False, origin: str | None = None,
               description: str = "") -> str:
        """A new deployment in ``group`` (it becomes the group's current one); its id.
        Devices get it at their next restart (``restart``) or connection."""
        found = self._group(group)
        attrs: dict[str, Any] = {
            "device_code": _device_code(device_code, "device code"),
            "agent_code": _agent_code(agent_code), "description": description,
            "tags": [PROMOTED] if promoted else []}
        if origin is not None:
            attrs["origin"] = origin
        made = self.api("POST", "/deployments", {"data": {
            "type": "deployment", "attributes": attrs,
            "relationships": {"devicegroup": {"type": found["type"], "id": found["id"]}}}})
        return str(made["data"]["id"])

    def restart(self, group: str, *, conditional: bool = False) -> None:
        """Restart the group's online devices (``conditional``: a polite deployment, each
        device's ``server.onshutdown`` handler decides when)."""
        path = "conditional_restart" if conditional else "restart"
        self.api("POST", f"/devicegroups/{self.group_id(group)}/{path}")

    def assign(self, group: str, device_ids: Sequence[str]) -> None:
        """Assign devices to ``group``: a fixture to a fixture group, production devices
        to another production group of the product."""
        body = {"data": [{"type": "device", "id": d} for d in device_ids]}
        self.api("POST", f"/devicegroups/{self.group_id(group)}/relationships/devices", body)

    def add_webhook(self, group: str, event: str, url: str, *, form: bool = False) -> str:
        """A webhook on a (pre-)production group: ``blessing``, ``blinkup`` or
        ``deployment``, JSON or (``form``) url-encoded; its id."""
        found = self._group(group)
        ctype = "application/x-www-form-urlencoded" if form else "application/json"
        made = self.api("POST", "/webhooks", {"data": {
            "type": "webhook", "attributes": {"event": event, "url": url, "content_type": ctype},
            "relationships": {"devicegroup": {"type": found["type"], "id": found["id"]}}}})
        return str(made["data"]["id"])

    def devices(self, group: str) -> list[str]:
        """The ids of the devices in ``group``."""
        return [str(d["id"]) for d in self._client.list_all(
            "/devices", {"devicegroup.id": self.group_id(group)})]

    def device(self, device_id: str) -> dict[str, Any]:
        """A device's attributes as the API shows them (``blessed``, ``device_online`` ...),
        plus ``devicegroup``: its group's name (``None`` when unassigned)."""
        data = self.api("GET", f"/devices/{device_id}")["data"]
        group = data["relationships"].get("devicegroup")
        name = self._group(group["id"])["attributes"]["name"] if group else None
        return {**data["attributes"], "devicegroup": name}

    def go_live(self, *, production: str = "Production", dut: str = "DUT",
                fixture: str = "Fixture", load_code_after_blessing: bool = True,
                webhooks: Mapping[str, str] | None = None) -> Zone:
        """Go Live from the Test Zone (as ``impfactory golive``): three Production Zone
        groups with copies of the promoted deployments, the load-code setting and
        ``webhooks`` (event -> URL) on the production group. Returns the new zone, which
        becomes ``zone``."""
        body = {"data": {"type": "go_live", "attributes": {
            "production": {"name": production}, "dut": {"name": dut},
            "fixture": {"name": fixture}, "load_code_after_blessing": load_code_after_blessing,
            "webhooks": [{"event": e, "url": u} for e, u in (webhooks or {}).items()]}}}
        self.api("POST", f"/devicegroups/{self.group_id(self.test_zone.fixture)}/go_live", body)
        self.production_zone = Zone(production, dut, fixture)
        return self.production_zone

    # -- devices ---------------------------------------------------------------------
    def add_fixture(self, group: str | None = None, *, timeout: float = 30.0) -> Fixture:
        """An emulated fixture (an imp005 on a Factory BlinkUp Box): BlinkUp'd into the
        account, assigned to ``group`` (default: the zone's fixture group), and running
        that group's firmware when this returns."""
        loop = self._loop
        token = self.api("POST", "/enrolment_tokens")["data"]["attributes"]
        ssid, password = loop.wifi

        async def enrol() -> Any:
            device = loop.fleet.add(store=MemoryStore(Settings(
                ssid=ssid, password=password, plan_id=token["plan_id"],
                enrol_token=token["token"], impos_version=loop.impos)),
                hardware=fixture_board(), imp_type=FIXTURE_IMP)
            device.power_on()
            await device.wait_for(DeviceEvent.ENROLLED, timeout, since=0)
            return device

        try:
            device = loop.run(enrol(), timeout + 5.0)
        except TimeoutError:
            raise WaitTimeout(f"the fixture did not enrol within {timeout:g} s") from None
        since = loop.call(lambda: len(device.events))
        self.assign(group or self.zone.fixture, [device.device_id])

        async def started() -> None:
            await device.wait_for(DeviceEvent.CODE_STARTED, timeout, since=since)
            await loop.fleet.clock.sleep(0.5)  # its firmware sets itself up

        try:
            loop.run(started(), timeout + 5.0)
        except TimeoutError:
            logs = loop.call(lambda: device.logs[-5:])
            raise WaitTimeout(f"the fixture firmware did not start within {timeout:g} s; "
                              f"its last log lines: {logs}") from None
        return Fixture(loop, device)

    def activate(self, dut: Dut) -> None:
        """An end user's BlinkUp of a blessed device at home: its own WiFi (here the same
        network) and a production enrolment token, written into its settings as the
        phone's BlinkUp would leave them, then a power cycle. Its next connection
        activates it: the ``blinkup`` webhook fires, and a production group with
        ``load_code_after_blessing=False`` sends it the application now."""
        token = self.api("POST", "/enrolment_tokens", {"data": {
            "type": "enrolment_token", "attributes": {"kind": "production"}}})
        attrs = token["data"]["attributes"]
        ssid, password = self._loop.wifi
        device = dut._device

        async def blinkup() -> None:
            await device.power_off()
            device.store.save(replace(device.store.load(), ssid=ssid, password=password,
                                      plan_id=attrs["plan_id"], enrol_token=attrs["token"]))
            dut._since = len(device.events)
            device.power_on()

        self._loop.run(blinkup(), 30.0)

    def line(self, *, duts: int = 4, fixtures: int = 1, group: str | None = None,
             **config: Any) -> LineResult:
        """A whole emulated line: ``fixtures`` new fixtures adopted into ``group`` (the
        zone's fixture group by default) and ``duts`` DUTs through it, each recorded
        (``LineConfig``'s options: ``seed``, ``faults`` {name: rate}, ``outdated_impos``
        ...). Returns the ``LineResult``: ``records`` and ``summary``."""
        cloud = _LineCloud(self, self.group_id(group or self.zone.fixture))
        timeout = 60.0 + LINE_S_PER_DUT * duts
        result: LineResult = self._loop.run(
            run_line(LineConfig(fixtures=fixtures, duts=duts, **config), cloud), timeout)
        return result

    def _service(self) -> Any:
        """The cloud service (only on the cloud's loop, as ``line`` calls it)."""
        assert self._api.cloud is not None
        return self._api.cloud.service

    def close(self) -> None:
        """Switch every device off and stop the cloud (the fixture does this after a test)."""
        try:
            if self._api.loop_alive:
                self._loop.run(self._loop.fleet.close(), 60.0)
        finally:
            try:
                self._api.stop()
            finally:
                self._restore()


@dataclass
class _LineCloud:
    """What ``fixture.line`` needs from the cloud, for one of the product's fixture groups;
    called on the cloud's loop, so it uses the cloud service directly."""

    product: Product
    fixture_group_id: str

    def __post_init__(self) -> None:
        loop = self.product._loop
        self.broker_url = loop.fleet.server_url
        self.wifi_ssid, self.wifi_password = loop.wifi
        self.impos_current = loop.impos
        self.impos_outdated = loop.impos_outdated
        self.first_dut_serial: int | None = None

    def fixture_enrolment(self) -> tuple[str, str]:
        token = self.product._service().create_development_token(self.product._owner_id)
        return token.plan_id, token.token

    async def adopt_fixture(self, device_id: str) -> None:
        self.product._service().assign_devices(self.fixture_group_id, [device_id])


def _device_code(code: Code, what: str) -> str:
    if isinstance(code, Path):
        text = read_firmware(code, what)
        assert text is not None
        return text
    return code


def _agent_code(code: Code | None) -> str:
    if code is None:
        return ""
    if isinstance(code, Path):
        text = read_agent(code, "agent code")
        assert text is not None
        return text
    return code


def _with_libraries(lib: Sequence[Path | str]) -> Callable[[], None]:
    """Put ``lib`` first on ``IMPFACTORY_LIB_PATH`` (as ``--lib`` does); returns what puts
    the variable back."""
    stack = contextlib.ExitStack()
    stack.enter_context(lib_path_restored())
    try:
        apply_lib_dirs([Path(d) for d in lib])
    except BaseException:
        stack.close()
        raise
    return stack.close


def build_product(broker_url: str, db: Path, factory: Code, app: Code, *,
                  dut: Code | None = None, factory_agent: Code | None = None,
                  app_agent: Code | None = None, lib: Sequence[Path | str] = (),
                  name: str = "MyProduct", min_impos: str | None = None,
                  scale: float = 100.0,
                  wifi: tuple[str, str] = (FACTORY_SSID, FACTORY_PASSWORD),
                  load_code_after_blessing: bool = True) -> Product:
    """Start a cloud and make the product's Test Zone in it (``imp_product`` calls this)."""
    restore = _with_libraries(lib)
    api: ApiThread | None = None
    try:
        fixture_code = _device_code(factory, "factory firmware")
        dut_code = fixture_code if dut is None else _device_code(dut, "DUT firmware")
        app_code = _device_code(app, "application firmware")
        agents = (_agent_code(factory_agent), _agent_code(app_agent))
        api = ApiThread(db, broker_url=broker_url).start()
        account = api.call(api.service.accounts.create, USER, PASSWORD)
        client = ApiClient(api.endpoint).login(USER, PASSWORD)
        assert api.cloud is not None
        svc = api.cloud.service
        if min_impos:
            api.call(svc.add_impos_release, min_impos, size=64 * 1024)
        zone = Zone("Test Production", "Test DUT", "Test Fixture")
        fleet = Fleet(broker_url, ScaledClock(scale), WifiEnvironment([AccessPoint(*wifi)]),
                      first_serial=0x10000 + secrets.randbelow(0xF0) * 0x1000)
        loop = _Loop(api, fleet, wifi, min_impos or DEFAULT_IMPOS_VERSION, DEFAULT_IMPOS_VERSION,
                     svc.send_to_device)
        product = Product(api, client, account.id, name, zone, loop, restore)
        made = product.api("POST", "/products", {"data": {"type": "product", "attributes": {
            "name": name, "description": f"{name} (made by the impfactory pytest plugin)"}}})
        product.product_id = str(made["data"]["id"])
        if min_impos:
            api.call(svc.update_product, product.product_id, min_impos_version=min_impos)
        product.create_group(zone.production, "pre-production",
                             load_code_after_blessing=load_code_after_blessing)
        product.create_group(zone.dut, "pre-dut")
        product.create_group(zone.fixture, "pre-factory", production_target=zone.production,
                             dut_target=zone.dut)
        for group, code, agent, what in ((zone.fixture, fixture_code, agents[0], "fixture"),
                                         (zone.dut, dut_code, agents[0], "dut"),
                                         (zone.production, app_code, agents[1], "app")):
            product.deploy(group, code, agent, promoted=True, origin=f"{name}-{what}-1",
                           description=f"{name} {what} firmware")
        return product
    except BaseException:
        if api is not None and api.loop_alive:
            api.stop()
        restore()
        raise


@pytest.fixture
def imp_product(broker_url: str, tmp_path: Path) -> Iterator[Callable[..., Product]]:
    """``make(factory, app, *, dut=None, factory_agent=None, app_agent=None, lib=(),
    name="MyProduct", min_impos=None, scale=100.0, wifi=(ssid, key),
    load_code_after_blessing=True) -> Product``; every product made is stopped after the
    test."""
    made: list[Product] = []

    def make(factory: Code, app: Code, **options: Any) -> Product:
        product = build_product(broker_url, tmp_path / f"impcloud-{len(made)}.db", factory,
                                app, **options)
        made.append(product)
        return product

    yield make
    for product in reversed(made):
        product.close()
