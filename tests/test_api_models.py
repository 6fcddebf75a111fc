"""Request-body models: what ``/v5/openapi.json`` states is what the routes enforce.

Every route that reads a body names a model (``cloud/api_models.py``); the schema
in the OpenAPI document and the check a call meets both come from it. Here each
body's valid example is mutated along its own schema (each required member
dropped, an unknown attribute added, each string one over its ``maxLength`` or
against its ``pattern``, each enum, boolean, array and object given a value of the
wrong kind): every body the schema refuses must be refused by the model with the
API's 400, and the examples and values at the limits accepted by both. Then a few
of those bodies go to the live routes, which answer the same 400, as does the
example in docs/api.md ("Request bodies") word for word.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from test_api_core import Client

from impfactory.cloud.api_jsonapi import BadRequest
from impfactory.cloud.api_models import Body
from impfactory.cloud.api_openapi import describe
from impfactory.cloud.api_thread import ApiThread
from impfactory.cloud.model import WEBHOOK_CONTENT_TYPES, WEBHOOK_EVENTS, GroupType

REL = {"type": "product", "id": "p1"}
EXAMPLES: dict[str, Any] = {
    "Login": {"id": "owner", "password": "pw"},
    "TokenRequest": {"token": "t"},
    "LoginKeyCreate": {"data": {"type": "login_key", "attributes": {"description": "d"}}},
    "LoginKeyUpdate": {"data": {"type": "login_key", "id": "k", "attributes": {
        "description": "d"}}},
    "CollaboratorCreate": {"data": {"type": "account", "attributes": {
        "username": "u", "password": "p", "role": "blinkup_device", "email": "e@x"}}},
    "ProductCreate": {"data": {"type": "product", "attributes": {
        "name": "P", "description": "d"}, "relationships": {
        "owner": {"type": "account", "id": "a1"}}}},
    "ProductUpdate": {"data": {"type": "product", "id": "p1", "attributes": {
        "name": "P", "description": "d"}}},
    "DeviceGroupCreate": {"data": {"type": "pre_factoryfixture_devicegroup", "attributes": {
        "name": "F", "description": "", "env_vars": {"a": 1, "b": "x"}}, "relationships": {
        "product": REL, "production_target": {"type": "pre_production_devicegroup", "id": "g1"},
        "dut_target": {"type": "pre_dut_devicegroup", "id": "g2"}}}},
    "DeviceGroupUpdate": {"data": {"type": "production_devicegroup", "id": "g", "attributes": {
        "name": "x", "load_code_after_blessing": True, "region": "r"}}},
    "DeviceList": {"data": [{"type": "device", "id": "d1"}]},
    "MinSupportedDeployment": {"data": {"type": "deployment", "id": "dep"}},
    "DeploymentCreate": {"data": {"type": "deployment", "attributes": {
        "device_code": "", "agent_code": "", "description": "", "origin": None,
        "flagged": False, "tags": ["a"], "promoted": True}, "relationships": {
        "devicegroup": {"type": "dut_devicegroup", "id": "g"}}}},
    "DeploymentUpdate": {"data": {"type": "deployment", "id": "x", "attributes": {
        "description": "d", "flagged": True, "tags": ["t"], "promoted": False}}},
    "DeviceRename": {"data": {"type": "device", "attributes": {"name": "n"}}},
    "WebhookCreate": {"data": {"type": "webhook", "attributes": {
        "event": "blessing", "url": "http://h/x", "content_type": "application/json"},
        "relationships": {"devicegroup": {"type": "production_devicegroup", "id": "g"}}}},
    "WebhookUpdate": {"data": {"type": "webhook", "attributes": {
        "url": "http://h", "content_type": "application/x-www-form-urlencoded"}}},
    "GoLive": {"data": {"type": "go_live", "attributes": {
        "production": {"name": "P", "description": "d"}, "dut": {"name": "D"},
        "fixture": {"name": "F"}, "load_code_after_blessing": True,
        "webhooks": [{"event": "blessing", "url": "http://h/x",
                      "content_type": "application/json"}],
        "deployments": {"production": "a", "dut": "b", "fixture": "c"}}}},
    "EnrolmentTokenCreate": {"data": {"type": "enrolment_token", "attributes": {
        "kind": "production"}}},
}


@pytest.fixture(scope="module")
def api() -> Iterator[ApiThread]:
    with ApiThread(":memory:") as running:
        running.call(running.service.accounts.create, "owner", "s3cret")
        yield running


def _bodies(api: ApiThread) -> dict[str, Body]:
    return {r.body.name: r.body for r in api.service.router.routes if r.body is not None}


def _validator(api: ApiThread, doc: dict[str, Any], body: Body) -> Draft202012Validator:
    """A validator of the schema the OpenAPI document gives the (first) route of ``body``."""
    route = next(r for r in api.service.router.routes if r.body is body)
    op = doc["paths"][route.template][route.method.lower()]
    schema = op["requestBody"]["content"][body.content_type]["schema"]
    return Draft202012Validator({**schema, "components": doc["components"]})


def _resolve(schema: dict[str, Any], doc: dict[str, Any], value: Any) -> dict[str, Any]:
    """Follow ``$ref``s, and pick the variant of a discriminated union ``value`` is."""
    while True:
        if "$ref" in schema:
            schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif "discriminator" in schema and isinstance(value, dict):
            tag = value.get(schema["discriminator"]["propertyName"])
            schema = {"$ref": schema["discriminator"]["mapping"][tag]}
        else:
            return schema


def _set(body: Any, path: list[Any], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(body)
    node = out
    for step in path[:-1]:
        node = node[step]
    if value is _DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


_DROP = object()


def _mutations(value: Any, schema: dict[str, Any], doc: dict[str, Any], path: list[Any]
               ) -> Iterator[tuple[str, list[Any], Any, bool]]:
    """(what, path, new value, still valid) along ``schema``, from a valid ``value``."""
    schema = _resolve(schema, doc, value)
    props = schema.get("properties")
    if "enum" in schema:
        yield "not in the enum", path, "no-such-value", False
    elif props is not None and isinstance(value, dict):
        yield "not an object", path, [], False
        for key in schema.get("required", []):
            yield f"without {key}", [*path, key], _DROP, False
        if schema.get("additionalProperties") is False:
            yield "an unknown member", [*path, "bogus"], 1, False
        for key, sub in props.items():
            if key in value:
                yield from _mutations(value[key], sub, doc, [*path, key])
    elif schema.get("type") == "array" and isinstance(value, list):
        yield "not an array", path, "x", False
        if value and "maxItems" in schema:
            yield "too many items", path, value[:1] * (schema["maxItems"] + 1), False
        if value:
            yield from _mutations(value[0], schema.get("items", {}), doc, [*path, 0])
    elif schema.get("type") == "string":
        yield "a number for a string", path, 5, False
        if "maxLength" in schema:
            yield "one over maxLength", path, "x" * (schema["maxLength"] + 1), False
            yield "at maxLength", path, "x" * schema["maxLength"], True
        if schema.get("minLength"):
            yield "under minLength", path, "", False
        if "pattern" in schema:
            yield "against the pattern", path, " \n", False
    elif schema.get("type") == "boolean":
        yield "a string for a boolean", path, "true", False
    elif schema.get("type") == "object" and "additionalProperties" in schema:
        yield "not an object", path, ["x"], False


def test_every_body_of_the_route_table_has_an_example(api: ApiThread) -> None:
    assert set(_bodies(api)) == set(EXAMPLES)


def test_the_schema_and_the_model_agree_on_every_mutation(api: ApiThread) -> None:
    doc = describe(api.service.router)
    checked = 0
    for name, body in _bodies(api).items():
        example = EXAMPLES[name]
        validator = _validator(api, doc, body)
        assert validator.is_valid(example), (name, next(validator.iter_errors(example)))
        body.parse(example)
        root = validator.schema
        for what, path, new, valid in _mutations(example, root, doc, []):
            mutated = _set(example, path, new)
            assert validator.is_valid(mutated) is valid, (name, what, path)
            if valid:
                body.parse(mutated)
            else:
                with pytest.raises(BadRequest) as refused:
                    body.parse(mutated)
                assert refused.value.status == 400 and refused.value.code, (name, what)
            checked += 1
    assert checked > 150


def test_the_device_group_body_states_names_types_and_targets(api: ApiThread) -> None:
    doc = describe(api.service.router)
    schemas = doc["components"]["schemas"]
    create = doc["paths"]["/devicegroups"]["post"]["requestBody"]
    assert create["required"] is True
    data = schemas["DeviceGroupCreate"]["properties"]["data"]
    variants = {tag: schemas[ref.rsplit("/", 1)[1]]
                for tag, ref in data["discriminator"]["mapping"].items()}
    assert set(variants) == {t.value for t in GroupType}
    for tag, variant in variants.items():
        assert variant["properties"]["type"]["enum"] == [tag]
        assert {"type", "attributes", "relationships"} <= set(variant["required"])
        attrs = schemas[variant["properties"]["attributes"]["$ref"].rsplit("/", 1)[1]]
        assert attrs["required"] == ["name"] and attrs["additionalProperties"] is False
        assert attrs["properties"]["name"].items() >= {"maxLength": 80, "pattern": r"\S"}.items()
        rels = schemas[variant["properties"]["relationships"]["$ref"].rsplit("/", 1)[1]]
        fixture = GroupType(tag).is_fixture
        assert ({"production_target", "dut_target"} <= set(rels["required"])) is fixture
    update = schemas["GroupChanges"]
    assert not update["required"] and set(update["properties"]) == set(attrs["properties"])
    hook = schemas["WebhookAttributes"]["properties"]
    assert tuple(hook["event"]["enum"]) == WEBHOOK_EVENTS
    assert tuple(hook["content_type"]["enum"]) == WEBHOOK_CONTENT_TYPES
    assert schemas["WebhookAttributes"]["required"] == ["event", "url"]


def test_the_live_routes_refuse_what_the_schema_refuses(api: ApiThread) -> None:
    client = Client(api.endpoint)
    client.login("owner", "s3cret")
    status, prod = client("POST", "/products", EXAMPLES["ProductCreate"] | {"data": {
        "type": "product", "attributes": {"name": "Lamp"}}})
    assert status == 201
    group = copy.deepcopy(EXAMPLES["DeviceGroupCreate"])
    group["data"]["relationships"]["product"]["id"] = prod["data"]["id"]
    refused = [
        ("/devicegroups", _set(group, ["data", "attributes", "name"], _DROP),
         "MissingAttribute", "/data/attributes/name"),
        ("/devicegroups", _set(group, ["data", "type"], "team_devicegroup"),
         "InvalidType", "/data/type"),
        ("/devicegroups", _set(group, ["data", "relationships", "dut_target"], _DROP),
         "MissingRelationship", "/data/relationships/dut_target"),
        ("/devicegroups", _set(group, ["data", "attributes", "region"], "r" * 101),
         "InvalidAttribute", "/data/attributes/region"),
        ("/products", _set(EXAMPLES["ProductCreate"], ["data", "attributes", "bogus"], 1),
         "InvalidAttribute", "/data/attributes/bogus"),
        ("/webhooks", _set(EXAMPLES["WebhookCreate"], ["data", "attributes", "event"], "x"),
         "InvalidAttribute", "/data/attributes/event"),
    ]
    for path, body, code, pointer in refused:
        status, answer = client("POST", path, body)
        [err] = answer["errors"]
        assert (status, err["code"], err["source"]["pointer"]) == (400, code, pointer), answer
    status, answer = client("POST", "/auth", {"id": "owner", "password": 7})
    assert status == 400 and answer["errors"][0]["source"]["pointer"] == "/password"
    docs = (Path(__file__).parents[1] / "docs" / "api.md").read_text()
    section = docs[docs.index("### Request bodies"):]
    request, expected = (json.loads(block) for block in
                         re.findall(r"```json\n(.*?)```", section, re.S)[:2])
    request["data"]["relationships"]["product"]["id"] = prod["data"]["id"]
    assert client("POST", "/devicegroups", request) == (400, expected)
    client.conn.close()
