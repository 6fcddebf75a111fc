"""Devices, their logs and their link keys (all keyed by device ID).

Each write is one statement naming exactly the fields a use case changes, so two
use cases never overwrite each other's fields with stale copies.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from impfactory.cloud.model import Device, LogEntry
from impfactory.cloud.store.engine import Store

DEVICE_FILTERS = {"owner_id": "d.owner_id", "product_id": "d.product_id",
                  "group_id": "d.group_id", "group_type": "g.type", "online": "d.online",
                  "mac": "d.mac", "agent_id": "d.agent_id"}
"""``list``/``count`` filter names and the column each compares."""


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    unknown = set(filters) - set(DEVICE_FILTERS)
    if unknown:
        raise TypeError(f"unknown device filters {sorted(unknown)}")
    clauses, args = [], []
    for name, column in DEVICE_FILTERS.items():
        value = filters.get(name)
        if value is not None:
            clauses.append(f"{column}=?")
            args.append(int(value) if name == "online" else str(value))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


class DeviceRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reads ----------------------------------------------------------------------

    def get(self, device_id: str) -> Device | None:
        row = self.store.one("SELECT * FROM devices WHERE id=?", (device_id,))
        return Device.from_row(row) if row is not None else None

    @staticmethod
    def check_filters(filters: dict[str, Any]) -> None:
        """Raise ``TypeError`` for a filter name ``list`` does not know."""
        _where(filters)

    def list(self, filters: dict[str, Any], limit: int | None = None,
             offset: int = 0) -> list[Device]:
        """Matching devices, oldest first, one page (``limit`` None: all)."""
        where, args = _where(filters)
        rows = self.store.query(
            "SELECT d.* FROM devices d LEFT JOIN devicegroups g ON d.group_id = g.id"
            f"{where} ORDER BY d.created_at, d.id LIMIT ? OFFSET ?",
            [*args, self.store.dialect.no_limit if limit is None else limit, offset])
        return [Device.from_row(r) for r in rows]

    def count(self, filters: dict[str, Any]) -> int:
        where, args = _where(filters)
        return int(self.store.scalar("SELECT COUNT(*) FROM devices d LEFT JOIN devicegroups g"
                                     f" ON d.group_id = g.id{where}", args))

    def any_in_group(self, group_id: str) -> bool:
        return self.store.one("SELECT 1 FROM devices WHERE group_id=?", (group_id,)) is not None

    # -- connection -----------------------------------------------------------------

    def add(self, device_id: str, mac: str, now: float) -> None:
        """A device seen for the first time."""
        self.store.execute("INSERT INTO devices (id, mac, created_at) VALUES (?,?,?)",
                           (device_id, mac, now))

    def add_many(self, rows: Iterable[tuple[str, str, str, str, str, float]]) -> None:
        """Devices already in an account: (id, mac, owner_id, plan_id, agent_id, created_at)
        (bulk fills for measurements)."""
        self.store.execute_many(
            "INSERT INTO devices (id, mac, owner_id, plan_id, agent_id, created_at)"
            " VALUES (?,?,?,?,?,?)", list(rows))

    def connected(self, device_id: str, imp_type: str, impos_version: str,
                  deployment_id: str | None, now: float) -> None:
        """A ``hello``: online, with what the device says it runs."""
        self.store.execute(
            "UPDATE devices SET imp_type=?, impos_version=?, deployment_id=?, online=1,"
            " connection='SERVER_CONNECTED', last_seen=? WHERE id=?",
            (imp_type, impos_version, deployment_id, now, device_id))

    def reported(self, device_id: str, connection: str, led: str, impos_version: str,
                 deployment_id: str | None, now: float) -> None:
        self.store.execute(
            "UPDATE devices SET connection=?, led=?, impos_version=?, deployment_id=?,"
            " online=1, last_seen=? WHERE id=?",
            (connection, led, impos_version, deployment_id, now, device_id))

    def offline(self, device_id: str, connection: str, now: float) -> None:
        self.store.execute("UPDATE devices SET online=0, connection=?, last_seen=? WHERE id=?",
                           (connection, now, device_id))

    # -- enrolment and blessing -----------------------------------------------------

    def enrolled_in_factory(self, device_id: str, owner_id: str, group_id: str,
                            product_id: str, plan_id: str, agent_id: str, fixture_id: str,
                            fixture_group_id: str, now: float) -> None:
        self.store.execute(
            "UPDATE devices SET owner_id=?, group_id=?, product_id=?, plan_id=?, agent_id=?,"
            " fixture_id=?, factory_group_id=?, activated=0, last_enrolled_at=? WHERE id=?",
            (owner_id, group_id, product_id, plan_id, agent_id, fixture_id, fixture_group_id,
             now, device_id))

    def activated(self, device_id: str, plan_id: str, agent_id: str, now: float) -> None:
        """An end user's BlinkUp of a blessed device."""
        self.store.execute(
            "UPDATE devices SET plan_id=?, agent_id=?, activated=1, last_enrolled_at=?"
            " WHERE id=?", (plan_id, agent_id, now, device_id))

    def owned(self, device_id: str, owner_id: str, plan_id: str, agent_id: str,
              now: float | None = None) -> None:
        """Added to an account (developer BlinkUp: ``now`` is the enrolment time)."""
        if now is None:
            self.store.execute("UPDATE devices SET owner_id=?, plan_id=?, agent_id=? WHERE id=?",
                               (owner_id, plan_id, agent_id, device_id))
        else:
            self.store.execute(
                "UPDATE devices SET owner_id=?, plan_id=?, agent_id=?, last_enrolled_at=?"
                " WHERE id=?", (owner_id, plan_id, agent_id, now, device_id))

    def bless_failed(self, device_id: str) -> None:
        self.store.execute("UPDATE devices SET bless_failures=bless_failures+1 WHERE id=?",
                           (device_id,))

    def blessed(self, device_id: str, group_id: str, product_id: str, now: float,
                attempt: str | None = None) -> bool:
        """Move a DUT to its production group, blessed, keeping the ``attempt`` (the
        device's name for the call) that blessed it; False when it already was (a
        second bless of one device changes nothing)."""
        return self.store.execute(
            "UPDATE devices SET group_id=?, product_id=?, blessed=1, blessed_at=?,"
            " bless_attempt=? WHERE id=? AND blessed=0",
            (group_id, product_id, now, attempt, device_id)) == 1

    def bless_attempt(self, device_id: str) -> str | None:
        """The attempt that blessed the device (None: not blessed, or blessed unnamed)."""
        row = self.store.one("SELECT bless_attempt FROM devices WHERE id=?", (device_id,))
        return None if row is None or row[0] is None else str(row[0])

    # -- management -----------------------------------------------------------------

    def rename(self, device_id: str, name: str) -> None:
        self.store.execute("UPDATE devices SET name=? WHERE id=?", (name, device_id))

    def assign(self, device_id: str, group_id: str, product_id: str) -> None:
        self.store.execute("UPDATE devices SET group_id=?, product_id=?, factory_group_id=NULL"
                           " WHERE id=?", (group_id, product_id, device_id))

    def unassign(self, device_id: str) -> None:
        """Out of its group; unblessed and deactivated."""
        self.store.execute(
            "UPDATE devices SET group_id=NULL, product_id=NULL, blessed=0, activated=0,"
            " blessed_at=NULL, factory_group_id=NULL WHERE id=?", (device_id,))

    def delete(self, device_id: str) -> None:
        self.store.execute("DELETE FROM devices WHERE id=?", (device_id,))


class LogRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def append(self, device_id: str, ts: float, type: str, msg: str) -> None:
        self.store.execute("INSERT INTO logs (device_id, ts, type, msg) VALUES (?,?,?,?)",
                           (device_id, ts, type, msg))

    def page(self, device_id: str, size: int, offset: int, newest_first: bool) -> list[LogEntry]:
        order = "DESC" if newest_first else "ASC"
        rows = self.store.query(
            f"SELECT id, device_id, ts, type, msg FROM logs WHERE device_id=? ORDER BY id {order}"
            " LIMIT ? OFFSET ?", (device_id, size, offset))
        return [LogEntry(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def since(self, after_id: int, limit: int) -> list[LogEntry]:
        rows = self.store.query("SELECT id, device_id, ts, type, msg FROM logs WHERE id>?"
                                " ORDER BY id LIMIT ?", (after_id, limit))
        return [LogEntry(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def last_id(self) -> int:
        """The newest line's id (0: none yet), where a log stream starts."""
        return int(self.store.scalar("SELECT COALESCE(MAX(id), 0) FROM logs"))


class LinkRepository:
    """Each registered module's link key (hex) and current session."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def save(self, device_id: str, link_key: bytes, now: float) -> None:
        """A (re-)registration: the new key, no session yet, one more registration."""
        self.store.execute(
            "INSERT INTO device_links (device_id, link_key, session, registered_at)"
            " VALUES (?,?,NULL,?) ON CONFLICT (device_id) DO UPDATE SET"
            " link_key=excluded.link_key, session=NULL, registered_at=excluded.registered_at,"
            " registrations=device_links.registrations+1", (device_id, link_key.hex(), now))

    def get(self, device_id: str) -> tuple[bytes, str | None] | None:
        row = self.store.one("SELECT link_key, session FROM device_links WHERE device_id=?",
                             (device_id,))
        return (bytes.fromhex(row[0]), row[1]) if row is not None else None

    def set_session(self, device_id: str, session: str | None) -> None:
        self.store.execute("UPDATE device_links SET session=? WHERE device_id=?",
                           (session, device_id))

    def registrations(self, device_id: str) -> int:
        found = self.store.scalar("SELECT registrations FROM device_links WHERE device_id=?",
                                  (device_id,))
        return int(found) if found is not None else 0

    def count(self) -> int:
        return int(self.store.scalar("SELECT COUNT(*) FROM device_links"))
