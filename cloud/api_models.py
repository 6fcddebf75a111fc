"""Request bodies as models: one declaration validates a body and describes it.

Each route that reads a body names a ``Body`` in the route table
(``Router.add(..., body=...)``). The body's model is a msgspec type built from
declared ``msgspec.Struct`` classes (the attributes and relationships of a
resource), so the same declaration

* validates what arrives (``Body.parse``: ``msgspec.convert`` in strict mode, so a
  ``"5"`` is not a number and an unknown attribute is refused), and
* describes it in ``/v5/openapi.json`` (``msgspec.json.schema_components``: real
  ``properties``, ``required``, ``enum``s, lengths and patterns),

and the description cannot drift from the check. A JSON:API body is::

    {"data": {"type": <one of the resource's types>, "id"?: …,
              "attributes": <Attributes>, "relationships": <Relationships>}}

Limits are written in the project's one constraint vocabulary
(``protocol/constraints.Limits``, the cloud link's too) and mapped here onto
``msgspec.Meta`` (``meta``). A fault becomes the same JSON:API 400 the API always
gave, with a ``source.pointer``: ``InvalidBody`` (the envelope), ``InvalidType``,
``MissingAttribute``/``InvalidAttribute``, ``MissingRelationship``/
``InvalidRelationship``; a ``data.id`` other than the URL's is a 409.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, NamedTuple, Union

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from impfactory.cloud.api_jsonapi import JSONAPI, BadRequest, Conflict, JsonObj
from impfactory.protocol.constraints import Limits, python_pattern

_AS_WRITTEN: dict[str, str] = {}
"""Patterns as msgspec checks them → as written (and as the schema shows them)."""


def meta(limits: Limits, description: str | None = None) -> Meta:
    """``limits`` as msgspec's ``Meta``: what it checks and what JSON Schema states.

    msgspec searches a pattern with Python's ``re``, so it is given
    ``python_pattern``'s reading (a final ``$`` is the very end, as in JSON Schema);
    ``schemas`` shows the pattern as written.
    """
    if limits.items is not None:
        raise ValueError("item limits go on the item type: Annotated[list[Annotated[…]], …]")
    written = limits.pattern
    pattern = python_pattern(written) if written is not None else None
    if pattern is not None and written is not None and pattern != written:
        _AS_WRITTEN[pattern] = written
    terms: dict[str, Any] = {
        "pattern": pattern, "min_length": limits.min_length, "max_length": limits.max_length,
        "ge": limits.ge, "le": limits.le, "description": description}
    return Meta(**{k: v for k, v in terms.items() if v is not None})


# -- types that many bodies share -----------------------------------------------

Id = Annotated[str, meta(Limits(min_length=1, max_length=200), "a resource's id")]
NAME = Limits(max_length=80, pattern=r"\S")
"""A resource's (or account's) name: up to 80 characters, not blank."""
Name = Annotated[str, meta(NAME, "up to 80 characters, not blank")]
Description = Annotated[str, meta(Limits(max_length=1000))]


def given(struct: Struct) -> JsonObj:
    """A validated model as plain JSON values, leaving out what the client did not send
    (``UNSET``), so a handler tells "not sent" from a default."""
    out: JsonObj = msgspec.to_builtins(struct)
    return out


def optional(model: type[Struct], name: str) -> Any:
    """``model`` with every field optional (``UNSET`` when not sent): the body of an
    update, whose create body requires some of the same attributes."""
    fields = [(f.name, Union[f.type, UnsetType], UNSET)  # noqa: UP007 (a runtime union)
              for f in msgspec.structs.fields(model)]
    namespace = {}
    if "__post_init__" in vars(model):
        namespace["__post_init__"] = vars(model)["__post_init__"]
    return msgspec.defstruct(name, fields, forbid_unknown_fields=True, kw_only=True,
                             namespace=namespace, module=model.__module__)


# -- what a route reads -----------------------------------------------------------


class Body:
    """A route's request body: its model, for validation and for OpenAPI."""

    content_type = JSONAPI
    required = True
    name: str
    """The model's name (its schema's name under ``components.schemas``)."""
    model: Any

    def openapi(self, schema: JsonObj) -> JsonObj:
        """The OpenAPI ``requestBody`` given this body's schema (a ``$ref``)."""
        return {"required": self.required, "content": {self.content_type: {"schema": schema}}}

    def parse(self, body: Any) -> Any:
        """The body validated against the model (the model's instance), or a 400."""
        return self._convert(body)

    def _convert(self, body: Any) -> Any:
        try:
            return msgspec.convert(body, self.model, strict=True)
        except msgspec.ValidationError as err:
            raise self.refusal(body, *_explain(err)) from None

    def refusal(self, body: Any, reason: str, path: list[str], field: str | None,
                kind: str) -> BadRequest:
        """The 400 for a body the model refused (``kind``: missing, unknown, invalid)."""
        raise NotImplementedError


_AT = re.compile(r"(?s)(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?\Z")
_STEP = re.compile(r"\.(\w+)|\[(\d+|\.\.\.)\]")
_FIELD = re.compile(r"Object (missing required|contains unknown) field `([^`]*)`")


def _explain(err: msgspec.ValidationError) -> tuple[str, list[str], str | None, str]:
    """(reason, path as steps, the field named, kind) of msgspec's message, e.g.
    ``Object missing required field `name` - at `$.data.attributes```."""
    found = _AT.match(str(err))
    assert found is not None  # the pattern matches any text
    # msgspec shows a pattern by its repr, each backslash doubled: show it as written
    reason, path = found["reason"].replace("\\\\", "\\"), found["path"] or ""
    steps = [a or b for a, b in _STEP.findall(path)]
    named = _FIELD.match(reason)
    if named is None:
        return reason, steps, None, "invalid"
    return reason, steps, named[2], "missing" if named[1] == "missing required" else "unknown"


def _pointer(steps: Iterable[str]) -> str:
    """A JSON pointer (RFC 6901) to ``steps`` (msgspec's ``[...]``, a dict's key, dropped)."""
    return "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in steps if s != "...")


def _value_at(body: Any, steps: Iterable[str]) -> Any:
    for step in steps:
        if isinstance(body, dict):
            body = body.get(step)
        elif isinstance(body, list) and step.isdigit() and int(step) < len(body):
            body = body[int(step)]
        else:
            return None
    return body


class Resource(NamedTuple):
    """A JSON:API body, validated: ``attrs`` and ``rels`` hold only what was sent
    (``rels``: relationship name → id)."""

    type: str
    id: str | None
    attrs: JsonObj
    rels: dict[str, str]


class ResourceBody(Body):
    """``{"data": {type, id?, attributes?, relationships?}}`` of one of ``variants``' types.

    ``variants`` maps each ``data.type`` to its (attributes, relationships) models
    (``None``: the member is not read); a device group's type decides whether its
    targets are required, so its variants differ. An attributes or relationships
    model with a required field makes the member itself required. ``id``: ``data.id``
    must be sent (a body that names a resource).
    """

    def __init__(self, name: str,
                 variants: Mapping[str, tuple[type[Struct] | None, type[Struct] | None]], *,
                 id: bool = False, required: bool = True) -> None:
        self.name = name
        self.types = list(variants)
        self.required = required
        self._variants = dict(variants)
        structs = [self._data(name if len(variants) == 1 else f"{name}_{tag}", tag, a, r, id)
                   for tag, (a, r) in variants.items()]
        self._tags = {struct: tag for struct, tag in zip(structs, variants, strict=True)}
        data: Any = structs[0] if len(structs) == 1 else Union[tuple(structs)]  # noqa: UP007
        self.model = msgspec.defstruct(name, [("data", data)], module=__name__)

    @classmethod
    def of(cls, name: str, type_: str, attributes: type[Struct] | None,
           relationships: type[Struct] | None = None, **kw: Any) -> ResourceBody:
        """A body of one resource type."""
        return cls(name, {type_: (attributes, relationships)}, **kw)

    @staticmethod
    def _data(name: str, tag: str, attrs: type[Struct] | None, rels: type[Struct] | None,
              id_required: bool) -> Any:
        fields: list[Any] = [("id", Id) if id_required else ("id", Union[Id, UnsetType], UNSET)]  # noqa: UP007
        for member, model in (("attributes", attrs), ("relationships", rels)):
            if model is None:
                continue
            if _requires(model):
                fields.append((member, model))
            else:
                fields.append((member, model, msgspec.field(default_factory=model)))
        return msgspec.defstruct(f"{name}_data", fields, tag_field="type", tag=tag,
                                 kw_only=True, module=__name__)

    def parse(self, body: Any, *, want_id: str | None = None,
              types: Iterable[str] | None = None) -> Resource:
        """The body checked against the model. ``want_id``: a ``data.id`` sent must be
        this one (the URL's); ``types``: the ``data.type`` values this call accepts
        (a device group's update: its own type)."""
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, dict):
            if "type" not in data:
                raise self._bad_type(None, self.types)
            body = {**body, "data": _flat_relationships(data)}
        found = self._convert(body).data
        type_ = self._tags[type(found)]  # the variant msgspec chose by data.type
        allowed = list(types) if types is not None else self.types
        if type_ not in allowed:
            raise self._bad_type(type_, allowed)
        id_ = None if found.id is UNSET else found.id
        if want_id is not None and id_ is not None and id_ != want_id:
            raise Conflict(f"data.id {id_!r} does not match the URL's {want_id!r}",
                           pointer="/data/id")
        attrs = given(found.attributes) if hasattr(found, "attributes") else {}
        rels = ({k: v["id"] for k, v in given(found.relationships).items()}
                if hasattr(found, "relationships") else {})
        return Resource(type_, id_, attrs, rels)

    @staticmethod
    def _bad_type(type_: Any, allowed: list[str]) -> BadRequest:
        return BadRequest(f"data.type must be one of {allowed}, got {type_!r}",
                          code="InvalidType", pointer="/data/type")

    def refusal(self, body: Any, reason: str, path: list[str], field: str | None,
                kind: str) -> BadRequest:
        if not path:  # not an object, or no "data"
            if kind == "invalid":
                return BadRequest("the body must be a JSON object with a 'data' member",
                                  code="InvalidBody", pointer="")
            return BadRequest("'data' must be an object", code="InvalidBody", pointer="/data")
        if path == ["data"]:
            if kind == "invalid":
                return BadRequest("'data' must be an object", code="InvalidBody",
                                  pointer="/data")
            if field == "type":
                return self._bad_type(None, self.types)
            if field in ("attributes", "relationships"):  # required, as one of its fields is
                return self._missing(field, self._first_required(body, field))
            return BadRequest(f"data.{field} is required", code="InvalidBody",
                              pointer=f"/data/{field}")
        member, rest = path[1], path[2:]
        if member == "type":
            return self._bad_type(_value_at(body, path), self.types)
        if member not in ("attributes", "relationships"):
            return BadRequest(f"data.{member} is invalid: {reason}", code="InvalidBody",
                              pointer=f"/data/{member}")
        if not rest:
            if kind == "missing" and field is not None:
                return self._missing(member, field)
            if kind == "unknown" and member == "attributes":
                return BadRequest(f"unknown attribute {field!r}; allowed: "
                                  f"{sorted(self._allowed(body))}", code="InvalidAttribute",
                                  pointer=_pointer(["data", "attributes", str(field)]))
            if reason.startswith("Expected `object`"):
                return BadRequest(f"data.{member} must be an object", code="InvalidBody",
                                  pointer=f"/data/{member}")
            named, _, why = reason.partition(": ")  # a model's own check: "<field>: why"
            if member == "attributes" and named in self._allowed(body):
                return BadRequest(f"attribute {named!r}: {why}", code="InvalidAttribute",
                                  pointer=f"/data/attributes/{named}")
            return BadRequest(f"data.{member}: {reason}", code=f"Invalid{_ONE[member]}",
                              pointer=f"/data/{member}")
        name = rest[0]
        if member == "relationships":
            return BadRequest(f"relationship {name!r}: {reason}", code="InvalidRelationship",
                              pointer=f"/data/relationships/{name}")
        value = _value_at(body, path)
        pointer = _pointer(path + ([field] if field is not None else []))
        return BadRequest(f"attribute {name!r} has an invalid value {value!r:.80}: {reason}",
                          code="InvalidAttribute", pointer=pointer)

    @staticmethod
    def _missing(member: str, name: str) -> BadRequest:
        if member == "attributes":
            return BadRequest(f"attribute {name!r} is required", code="MissingAttribute",
                              pointer=f"/data/attributes/{name}")
        return BadRequest(f"relationship {name!r} is required", code="MissingRelationship",
                          pointer=f"/data/relationships/{name}")

    def _variant(self, body: Any) -> tuple[type[Struct] | None, type[Struct] | None]:
        return self._variants.get(_value_at(body, ["data", "type"]), (None, None))

    def _first_required(self, body: Any, member: str) -> str:
        model = self._variant(body)[0 if member == "attributes" else 1]
        assert model is not None
        return next(f.name for f in msgspec.structs.fields(model) if f.required)

    def _allowed(self, body: Any) -> list[str]:
        model = self._variant(body)[0]
        return [f.name for f in msgspec.structs.fields(model)] if model is not None else []


_ONE = {"attributes": "Attribute", "relationships": "Relationship"}


def _requires(model: type[Struct]) -> bool:
    return any(f.required for f in msgspec.structs.fields(model))


def _flat_relationships(data: JsonObj) -> JsonObj:
    """Strict JSON:API nests a relationship as ``{"data": {type, id}}``; impCentral's
    clients send ``{type, id}``. Both are read alike (the first flattened here)."""
    rels = data.get("relationships")
    if not isinstance(rels, dict):
        return data
    for v in rels.values():
        if isinstance(v, dict) and isinstance(v.get("data"), dict):
            break
    else:
        return data
    flat = {k: v["data"] if isinstance(v, dict) and isinstance(v.get("data"), dict) else v
            for k, v in rels.items()}
    return {**data, "relationships": flat}


class IdListBody(Body):
    """``{"data": [{"type": <type>, "id": …}, …]}``: the resources a call acts on."""

    def __init__(self, name: str, ref: type[Struct]) -> None:
        self.name = name
        self.model = msgspec.defstruct(name, [("data", list[ref])], module=__name__)  # type: ignore[valid-type]

    def parse(self, body: Any) -> list[str]:
        """The ids, in the order sent."""
        return [entry.id for entry in self._convert(body).data]

    def refusal(self, body: Any, reason: str, path: list[str], field: str | None,
                kind: str) -> BadRequest:
        if len(path) >= 2 and path[1].isdigit():
            return BadRequest(f"data[{path[1]}] must be {{'type', 'id'}} as the schema says: "
                              f"{reason}", code="InvalidBody", pointer=f"/data/{path[1]}")
        return BadRequest("the body must be {'data': [{'type': …, 'id': …}]}",
                          code="InvalidBody", pointer="/data")


class PlainBody(Body):
    """A plain JSON object (``/auth``): ``model`` is its struct; ``hint`` what to send."""

    content_type = "application/json"

    def __init__(self, model: type[Struct], hint: str,
                 extra_schema: JsonObj | None = None) -> None:
        self.name = model.__name__
        self.model = (Annotated[model, Meta(extra_json_schema=extra_schema)]
                      if extra_schema else model)
        self.hint = hint

    def refusal(self, body: Any, reason: str, path: list[str], field: str | None,
                kind: str) -> BadRequest:
        if not isinstance(body, dict):
            return BadRequest("the body must be a JSON object", code="InvalidBody")
        return BadRequest(f"send {self.hint} ({reason})",
                          pointer=_pointer(path + ([field] if field is not None else [])) or None)


def schemas(bodies: Iterable[Body]) -> tuple[list[JsonObj], JsonObj]:
    """The JSON Schema of each body's model (a ``$ref``) and the components they name."""
    refs, components = msgspec.json.schema_components(
        [b.model for b in bodies], ref_template="#/components/schemas/{name}")
    return list(refs), _written(components)


def _written(schema: Any) -> Any:
    """``schema`` with every pattern as written (``meta``), not as Python checks it."""
    if isinstance(schema, dict):
        return {k: _AS_WRITTEN.get(v, v) if k == "pattern" and isinstance(v, str)
                else _written(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_written(v) for v in schema]
    return schema
