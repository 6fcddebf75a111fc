"""``/products``: list, create, get, update, delete."""

from __future__ import annotations

from typing import Literal

from msgspec import UNSET, Struct, UnsetType

from impfactory.cloud import api_render as render
from impfactory.cloud.api import Answer, Call, Router
from impfactory.cloud.api_context import ApiContext
from impfactory.cloud.api_jsonapi import Forbidden, filters, list_query, paginate
from impfactory.cloud.api_models import Description, Id, Name, ResourceBody, optional

FILTERS = ("owner.id",)


class ProductAttributes(Struct, forbid_unknown_fields=True, kw_only=True):
    """A product's attributes: ``name`` unique in the account."""

    name: Name
    description: Description | UnsetType = UNSET


class AccountRef(Struct):
    type: Literal["account"]
    id: Id


class ProductRelationships(Struct):
    owner: AccountRef | UnsetType = UNSET
    """Only the caller's own account (the default)."""


CREATE = ResourceBody.of("ProductCreate", "product", ProductAttributes, ProductRelationships)
UPDATE = ResourceBody.of("ProductUpdate", "product",
                         optional(ProductAttributes, "ProductChanges"), None)


def register(router: Router, ctx: ApiContext) -> None:
    """Add the product routes."""
    svc = ctx.svc

    def list_(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        f = filters(call.query, FILTERS)
        items = [] if f.get("owner.id", owner) != owner else svc.list_products(owner)
        return Answer(200, paginate(items, call.query, "/v5/products", FILTERS,
                                    render.product))

    def create(call: Call) -> Answer:
        body = CREATE.parse(call.body())
        attrs = body.attrs
        owner = ctx.owner(call.account)
        if body.rels.get("owner", owner) != owner:
            raise Forbidden("products can only be created in the caller's own account")
        made = svc.create_product(owner, attrs["name"].strip(), attrs.get("description", ""))
        return Answer(201, {"data": render.product(made)})

    def get(call: Call) -> Answer:
        return Answer(200, {"data": render.product(
            ctx.product(ctx.owner(call.account), call.params["id"]))})

    def update(call: Call) -> Answer:
        product = ctx.product(ctx.owner(call.account), call.params["id"])
        attrs = UPDATE.parse(call.body(), want_id=product.id).attrs
        updated = svc.update_product(product.id, name=attrs["name"].strip() if "name" in attrs
                                     else None, description=attrs.get("description"))
        return Answer(200, {"data": render.product(updated)})

    def delete(call: Call) -> Answer:
        svc.delete_product(ctx.product(ctx.owner(call.account), call.params["id"]).id)
        return Answer(204)

    router.add("GET", "/products", list_, "List products", query=list_query(FILTERS))
    router.add("POST", "/products", create, "Create a product", body=CREATE)
    router.add("GET", "/products/{id}", get, "One product")
    router.add("PATCH", "/products/{id}", update, "Rename or redescribe a product",
               body=UPDATE)
    router.add("DELETE", "/products/{id}", delete, "Delete a product with no device groups")
