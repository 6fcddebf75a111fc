"""``impfactory cloud testzone``: a ready Test Zone in a running cloud, over its REST API.

    impfactory cloud testzone --endpoint http://127.0.0.1:8080/v5 --user owner --password secret

Makes, the way Electric Imp's ProductionGuide has a user make them with ``impt``:

* the product ``MyProduct``;
* the Test Zone groups ``MyPreProductionDG`` (pre-production), ``MyPreDUTDG``
  (pre-DUT) and ``MyPreFactoryDG`` (pre-factory fixture, aimed at the other two);
* one deployment in each, tagged ``promoted`` so that Go Live can copy it: the
  example application in the production group (origin ``MyAppRC1``), the example
  factory firmware in the DUT and fixture groups (``MyDUTFirmwareRC1``,
  ``MyFixtureFirmwareRC1``);

and prints the names, so ``impfactory golive --from MyPreFactoryDG ...``,
``impfactory floor --assign MyPreFactoryDG`` or ``impt`` can take it from there.
Only HTTP reaches the cloud, so it works against any impCentral-compatible API.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from impfactory.cloud.api_client import ApiClient
from impfactory.errors import ImpFactoryError
from impfactory.firmware import examples
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID

PROMOTED_TAG = "promoted"


class TestZoneUsageError(ImpFactoryError, ValueError):
    """A ``cloud testzone`` option that cannot be used (no credentials, an empty name)."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class Role:
    """One Test Zone group: its type, default name, what runs there and its build's origin."""

    type: str
    name: str
    firmware: str
    origin: str


ROLES = (
    Role("pre_production_devicegroup", "MyPreProductionDG", "application", "MyAppRC1"),
    Role("pre_dut_devicegroup", "MyPreDUTDG", "factory", "MyDUTFirmwareRC1"),
    Role("pre_factoryfixture_devicegroup", "MyPreFactoryDG", "factory", "MyFixtureFirmwareRC1"),
)


def _firmware(kind: str) -> str:
    if kind == "application":
        return examples.application_source()
    return examples.factory_source(FACTORY_SSID, FACTORY_PASSWORD)


def build(client: ApiClient, product_name: str) -> dict[str, Any]:
    """Create the product, its three Test Zone groups and a promoted build in each."""
    product = client.call("POST", "/products", {"data": {"type": "product", "attributes": {
        "name": product_name, "description": "made by impfactory cloud testzone"}}})["data"]
    groups: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        relationships: dict[str, Any] = {"product": {"type": "product", "id": product["id"]}}
        if role.type == "pre_factoryfixture_devicegroup":
            prod, dut = groups["pre_production_devicegroup"], groups["pre_dut_devicegroup"]
            relationships["production_target"] = {"type": prod["type"], "id": prod["id"]}
            relationships["dut_target"] = {"type": dut["type"], "id": dut["id"]}
        groups[role.type] = client.call("POST", "/devicegroups", {"data": {
            "type": role.type, "attributes": {"name": role.name},
            "relationships": relationships}})["data"]
    made = []
    for role in ROLES:
        group = groups[role.type]
        deployment = client.call("POST", "/deployments", {"data": {
            "type": "deployment",
            "attributes": {"device_code": _firmware(role.firmware), "agent_code": "",
                           "origin": role.origin, "tags": [PROMOTED_TAG],
                           "description": f"example {role.firmware} firmware"},
            "relationships": {"devicegroup": {"type": group["type"], "id": group["id"]}}}})
        made.append({"name": role.name, "id": group["id"], "type": role.type,
                     "deployment": deployment["data"]["id"], "origin": role.origin,
                     "firmware": role.firmware})
    return {"product": {"name": product_name, "id": product["id"]}, "groups": made}


def run(args: argparse.Namespace) -> int:
    """Log in, build the Test Zone, print what was made."""
    if not args.user or not args.password:
        raise TestZoneUsageError("give --user and --password (or IMPT_USER / IMPT_PASSWORD)")
    if not args.product.strip():
        raise TestZoneUsageError("--product cannot be empty")
    client = ApiClient(args.endpoint).login(args.user, args.password)
    made = build(client, args.product.strip())
    if args.json:
        print(json.dumps(made))
        return 0
    print(f"product {made['product']['name']} ({made['product']['id']})")
    for g in made["groups"]:
        print(f"  {g['name']:<18} {g['type']:<31} build {g['origin']} ({g['firmware']}, "
              "promoted)")
    fixture, production, dut = ROLES[2].name, ROLES[0].name, ROLES[1].name
    print(f"{fixture} aims at {production} (production target) and {dut} (DUT target); "
          f"next: impfactory golive --from {fixture} ...")
    return 0


def add_parser(cloud_sub: Any, env: dict[str, str]) -> None:
    """Add ``cloud testzone`` to the ``cloud`` subcommands; ``env``: IMPT_* defaults."""
    p = cloud_sub.add_parser(
        "testzone", help="make a product with Test Zone groups and the example firmware",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", default=env.get("IMPT_ENDPOINT"),
                   required="IMPT_ENDPOINT" not in env, help="API base, http://HOST:PORT/v5")
    p.add_argument("--user", default=env.get("IMPT_USER"))
    p.add_argument("--password", default=env.get("IMPT_PASSWORD"))
    p.add_argument("--product", default="MyProduct", help="product name (default MyProduct)")
    p.add_argument("--json", action="store_true", help="print what was made as JSON")
    p.set_defaults(func=run)
