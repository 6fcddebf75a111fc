"""``/products``: list, create, get, update, delete."""

from __future__ import annotations

from impfactory.cloud import api_render as render
from impfactory.cloud.api import Answer, Call, Router
from impfactory.cloud.api_context import ApiContext
from impfactory.cloud.api_jsonapi import (
    Forbidden,
    attributes,
    data_object,
    filters,
    is_name,
    is_str,
    list_query,
    paginate,
    relationship,
    resource_body,
)

FILTERS = ("owner.id",)
ATTRS = {"name": is_name, "description": is_str(1000)}


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
        data = data_object(call.body(), ["product"])
        attrs = attributes(data, ATTRS, required=("name",))
        owner_rel = relationship(data, "owner", ["account"])
        owner = ctx.owner(call.account)
        if owner_rel is not None and owner_rel[1] != owner:
            raise Forbidden("products can only be created in the caller's own account")
        made = svc.create_product(owner, attrs["name"].strip(), attrs.get("description", ""))
        return Answer(201, {"data": render.product(made)})

    def get(call: Call) -> Answer:
        return Answer(200, {"data": render.product(
            ctx.product(ctx.owner(call.account), call.params["id"]))})

    def update(call: Call) -> Answer:
        product = ctx.product(ctx.owner(call.account), call.params["id"])
        data = data_object(call.body(), ["product"], want_id=product.id)
        attrs = attributes(data, ATTRS)
        updated = svc.update_product(product.id, name=attrs["name"].strip() if "name" in attrs
                                     else None, description=attrs.get("description"))
        return Answer(200, {"data": render.product(updated)})

    def delete(call: Call) -> Answer:
        svc.delete_product(ctx.product(ctx.owner(call.account), call.params["id"]).id)
        return Answer(204)

    router.add("GET", "/products", list_, "List products", query=list_query(FILTERS))
    router.add("POST", "/products", create, "Create a product", body=resource_body("product"))
    router.add("GET", "/products/{id}", get, "One product")
    router.add("PATCH", "/products/{id}", update, "Rename or redescribe a product",
               body=resource_body("product"))
    router.add("DELETE", "/products/{id}", delete, "Delete a product with no device groups")
