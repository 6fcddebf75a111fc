"""Products: create, read, rename, delete (not while a device group is in one)."""

from __future__ import annotations

from dataclasses import replace

from impfactory.cloud.errors import DependentGroupsError, DuplicateNameError
from impfactory.cloud.model import Product
from impfactory.cloud.services.checks import check_name
from impfactory.cloud.services.context import Context, new_id
from impfactory.cloud.store import IntegrityViolation


class Products:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.repo = ctx.repos.products

    def create_product(self, owner_id: str, name: str, description: str = "") -> Product:
        check_name(name)
        pid = new_id()
        with self.ctx.tx():
            try:
                self.repo.insert(pid, owner_id, name, description, self.ctx.now())
            except IntegrityViolation as err:
                raise DuplicateNameError("Product") from err
        return self.ctx.product(pid)

    def get_product(self, product_id: str) -> Product:
        return self.ctx.product(product_id)

    def list_products(self, owner_id: str | None = None) -> list[Product]:
        return self.repo.list(owner_id)

    def update_product(self, product_id: str, *, name: str | None = None,
                       description: str | None = None,
                       min_impos_version: str | None = None) -> Product:
        product = self.ctx.product(product_id)
        if name is not None:
            check_name(name)
        changed = replace(
            product, name=product.name if name is None else name,
            description=product.description if description is None else description,
            min_impos_version=(product.min_impos_version if min_impos_version is None
                               else min_impos_version))
        with self.ctx.tx():
            try:
                self.repo.update(changed, self.ctx.now())
            except IntegrityViolation as err:
                raise DuplicateNameError("Product") from err
        return self.ctx.product(product_id)

    def delete_product(self, product_id: str) -> None:
        self.ctx.product(product_id)
        with self.ctx.tx():
            if self.ctx.repos.groups.any_in_product(product_id):
                raise DependentGroupsError()
            self.repo.delete(product_id)
