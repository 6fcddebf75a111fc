"""Deployments (immutable builds of a group's code) and the impOS releases devices
download: together, every image the cloud serves by SHA-256."""

from __future__ import annotations

import json
from typing import Any

from impfactory.cloud.model import Deployment, ImposRelease
from impfactory.cloud.store.engine import Store


class DeploymentRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(self, d: Deployment) -> int:
        """Store ``d`` with the next sequence number (``d.seq`` is ignored); returns it.
        Call inside a transaction, so two writers never take the same number."""
        seq = int(self.store.scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM deployments"))
        self.store.execute(
            "INSERT INTO deployments (id, seq, group_id, product_id, owner_id, sha,"
            " device_code, agent_code, device_sha, agent_sha, description, origin, tags,"
            " flagged, promoted, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (d.id, seq, d.group_id, d.product_id, d.owner_id, d.sha, d.device_code,
             d.agent_code, d.device_sha, d.agent_sha, d.description, d.origin,
             json.dumps(list(d.tags)), int(d.flagged), int(d.promoted), d.created_at,
             d.updated_at))
        return seq

    def get(self, deployment_id: str) -> Deployment | None:
        row = self.store.one("SELECT * FROM deployments WHERE id=?", (deployment_id,))
        return Deployment.from_row(row) if row is not None else None

    def seq_of(self, deployment_id: str) -> int | None:
        found = self.store.scalar("SELECT seq FROM deployments WHERE id=?", (deployment_id,))
        return None if found is None else int(found)

    def list(self, **filters: Any) -> list[Deployment]:
        """Newest first; filters: owner_id, product_id, group_id, sha, flagged."""
        clauses, args = [], []
        for column in ("owner_id", "product_id", "group_id", "sha", "flagged"):
            value = filters.get(column)
            if value is not None:
                clauses.append(f"{column}=?")
                args.append(int(value) if column == "flagged" else value)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = self.store.query(f"SELECT * FROM deployments{where} ORDER BY seq DESC", args)
        return [Deployment.from_row(r) for r in rows]

    def any_flagged(self, group_id: str) -> bool:
        return self.store.one("SELECT 1 FROM deployments WHERE group_id=? AND flagged=1",
                              (group_id,)) is not None

    def update_meta(self, d: Deployment, now: float) -> None:
        """Store ``d``'s description, flag, tags and promotion (never its code)."""
        self.store.execute(
            "UPDATE deployments SET description=?, flagged=?, tags=?, promoted=?, updated_at=?"
            " WHERE id=?", (d.description, int(d.flagged), json.dumps(list(d.tags)),
                            int(d.promoted), now, d.id))

    def delete(self, deployment_id: str) -> None:
        self.store.execute("DELETE FROM deployments WHERE id=?", (deployment_id,))

    def delete_for_group(self, group_id: str) -> None:
        self.store.execute("DELETE FROM deployments WHERE group_id=?", (group_id,))

    def code_by_sha(self, digest: str) -> bytes | None:
        """The device or agent code whose SHA-256 is ``digest``."""
        row = self.store.one("SELECT device_code FROM deployments WHERE device_sha=? LIMIT 1",
                             (digest,))
        if row is None:
            row = self.store.one("SELECT agent_code FROM deployments WHERE agent_sha=? LIMIT 1",
                                 (digest,))
        return str(row[0]).encode() if row is not None else None


class ReleaseRepository:
    """impOS releases: a version, its image and the image's SHA-256."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def put(self, version: str, digest: str, blob: bytes, now: float) -> None:
        """Add or replace ``version`` (an image already known under another version
        moves to this one)."""
        with self.store.transaction():
            self.store.execute("DELETE FROM impos_releases WHERE sha=? AND version<>?",
                               (digest, version))
            self.store.execute(
                "INSERT INTO impos_releases (version, sha, size, data, created_at)"
                " VALUES (?,?,?,?,?) ON CONFLICT (version) DO UPDATE SET sha=excluded.sha,"
                " size=excluded.size, data=excluded.data, created_at=excluded.created_at",
                (version, digest, len(blob), blob, now))

    def list(self) -> list[ImposRelease]:
        rows = self.store.query("SELECT version, sha, size, created_at FROM impos_releases")
        return [ImposRelease(r[0], r[1], r[2], r[3]) for r in rows]

    def has(self, digest: str) -> bool:
        return self.store.one("SELECT 1 FROM impos_releases WHERE sha=?",
                              (digest,)) is not None

    def image(self, digest: str) -> bytes | None:
        found = self.store.scalar("SELECT data FROM impos_releases WHERE sha=?", (digest,))
        return bytes(found) if found is not None else None
