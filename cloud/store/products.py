"""Products and their device groups (one aggregate: a group lives in one product)."""

from __future__ import annotations

import json
from typing import Any

from impfactory.cloud.model import DeviceGroup, Product
from impfactory.cloud.store.engine import Store


class ProductRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(self, product_id: str, owner_id: str, name: str, description: str,
               now: float) -> None:
        """Raises ``IntegrityViolation`` when the owner has a product by that name."""
        self.store.execute(
            "INSERT INTO products (id, owner_id, name, description, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?)", (product_id, owner_id, name, description, now, now))

    def get(self, product_id: str) -> Product | None:
        row = self.store.one("SELECT * FROM products WHERE id=?", (product_id,))
        return Product.from_row(row) if row is not None else None

    def list(self, owner_id: str | None = None) -> list[Product]:
        sql, args = "SELECT * FROM products", []
        if owner_id is not None:
            sql, args = sql + " WHERE owner_id=?", [owner_id]
        return [Product.from_row(r) for r in self.store.query(sql + " ORDER BY created_at", args)]

    def update(self, product: Product, now: float) -> None:
        """Store ``product``'s name, description and impOS floor."""
        self.store.execute(
            "UPDATE products SET name=?, description=?, min_impos_version=?, updated_at=?"
            " WHERE id=?",
            (product.name, product.description, product.min_impos_version, now, product.id))

    def delete(self, product_id: str) -> None:
        self.store.execute("DELETE FROM products WHERE id=?", (product_id,))


class GroupRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(self, g: DeviceGroup) -> None:
        """Raises ``IntegrityViolation`` when the product has a group by that name."""
        self.store.execute(
            "INSERT INTO devicegroups (id, product_id, owner_id, type, name, description,"
            " region, env_vars, production_target, dut_target, load_code_after_blessing,"
            " min_impos_version, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (g.id, g.product_id, g.owner_id, g.type.value, g.name, g.description, g.region,
             json.dumps(g.env_vars), g.production_target, g.dut_target,
             int(g.load_code_after_blessing), g.min_impos_version, g.created_at,
             g.updated_at))

    def get(self, group_id: str) -> DeviceGroup | None:
        row = self.store.one("SELECT * FROM devicegroups WHERE id=?", (group_id,))
        return DeviceGroup.from_row(row) if row is not None else None

    def list(self, *, owner_id: str | None = None, product_id: str | None = None,
             type: str | None = None) -> list[DeviceGroup]:
        clauses, args = [], []
        for column, value in (("owner_id", owner_id), ("product_id", product_id),
                              ("type", type)):
            if value is not None:
                clauses.append(f"{column}=?")
                args.append(value)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = self.store.query(f"SELECT * FROM devicegroups{where} ORDER BY created_at", args)
        return [DeviceGroup.from_row(r) for r in rows]

    def any_in_product(self, product_id: str) -> bool:
        return self.store.one("SELECT 1 FROM devicegroups WHERE product_id=?",
                              (product_id,)) is not None

    def is_target(self, group_id: str) -> bool:
        """Whether a fixture group targets ``group_id``."""
        return self.store.one("SELECT 1 FROM devicegroups WHERE production_target=?"
                              " OR dut_target=?", (group_id, group_id)) is not None

    def update(self, group_id: str, values: dict[str, Any], now: float) -> None:
        """Store the changeable fields (``name`` ... ``min_impos_version``) in ``values``;
        raises ``IntegrityViolation`` on a duplicate name."""
        self.store.execute(
            "UPDATE devicegroups SET name=?, description=?, env_vars=?,"
            " load_code_after_blessing=?, region=?, production_target=?, dut_target=?,"
            " min_impos_version=?, updated_at=? WHERE id=?",
            (values["name"], values["description"], json.dumps(values["env_vars"]),
             int(bool(values["load_code_after_blessing"])), values["region"],
             values["production_target"], values["dut_target"], values["min_impos_version"],
             now, group_id))

    def set_min_supported(self, group_id: str, deployment_id: str, now: float) -> None:
        self.store.execute("UPDATE devicegroups SET min_supported_deployment=?, updated_at=?"
                           " WHERE id=?", (deployment_id, now, group_id))

    def set_current(self, group_id: str, deployment_id: str, now: float) -> None:
        """A new current deployment (also the min-supported one when there was none)."""
        self.store.execute(
            "UPDATE devicegroups SET current_deployment=?,"
            " min_supported_deployment=COALESCE(min_supported_deployment, ?), updated_at=?"
            " WHERE id=?", (deployment_id, deployment_id, now, group_id))

    def delete(self, group_id: str) -> None:
        self.store.execute("DELETE FROM devicegroups WHERE id=?", (group_id,))
