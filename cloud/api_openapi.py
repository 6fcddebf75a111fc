"""``/v5/openapi.json``: an OpenAPI 3.1 description generated from the route table.

Generated, not written by hand, so it lists exactly the routes that are served:
a route added to the router appears here with its summary, path parameters,
whether it needs a bearer token, which roles may call it, and its request body:
the JSON Schema of the very model that validates it (``cloud/api_models.py``),
under ``components.schemas``.
"""

from __future__ import annotations

import re

from impfactory import __version__
from impfactory.cloud.api import BASE, Answer, Call, Router
from impfactory.cloud.api_jsonapi import MAX_PAGE_SIZE, JsonObj
from impfactory.cloud.api_models import schemas

_ERROR_REF = {"$ref": "#/components/responses/Error"}
_QUERY_SCHEMA: dict[str, JsonObj] = {
    "page[number]": {"type": "integer", "minimum": 1},
    "page[size]": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
    "filter[flagged]": {"type": "string", "enum": ["true", "false"]},
    "format": {"type": "string", "enum": ["json", "text"]},
}


def describe(router: Router) -> JsonObj:
    """The OpenAPI document for every route in ``router``."""
    paths: dict[str, JsonObj] = {}
    bodies = [r.body for r in router.routes if r.body is not None]
    refs, components = schemas(bodies)
    body_schema = {id(b): ref for b, ref in zip(bodies, refs, strict=True)}
    for route in router.routes:
        op: JsonObj = {
            "summary": route.summary,
            "operationId": _operation_id(route.method, route.template),
            "responses": {"2XX": {"description": "success"}, "4XX": _ERROR_REF},
        }
        params: list[JsonObj] = [{"name": p, "in": "path", "required": True,
                                  "schema": {"type": "string"}}
                                 for p in re.findall(r"\{(\w+)\}", route.template)]
        params += [{"name": q, "in": "query", "required": False, "schema": _QUERY_SCHEMA.get(
            q, {"type": "string"})} for q in route.query]
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = route.body.openapi(body_schema[id(route.body)])
        if route.auth:
            op["x-roles"] = sorted(route.roles)
        else:
            op["security"] = []
        paths.setdefault(route.template, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "impfactory emulated impCentral API", "version": __version__,
                 "description": "A subset of impCentral API v5 (JSON:API) served by the "
                                "impfactory cloud; extensions are marked 'Extension'."},
        "servers": [{"url": BASE}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {
                "description": "JSON:API error document",
                "content": {"application/vnd.api+json": {"schema": {
                    "type": "object", "required": ["errors"],
                    "properties": {"errors": {"type": "array", "items": {
                        "type": "object",
                        "required": ["status", "code", "title", "detail"],
                    }}}}}},
            }},
        },
    }


def _operation_id(method: str, template: str) -> str:
    words = [w.strip("{}") for w in template.strip("/").split("/") if w]
    return method.lower() + "_" + "_".join(words).replace("-", "_")


def register(router: Router) -> None:
    """Serve the description itself (no token needed, so tools can discover it)."""

    def openapi(call: Call) -> Answer:
        return Answer(200, describe(router), content_type="application/json")

    router.add("GET", "/openapi.json", openapi, "This OpenAPI description", auth=False)
