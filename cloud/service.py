"""The cloud's service layer: every management operation, one short transaction each.

Both the device link (``rules.py``, over MQTT) and the REST API (``api*.py``) call
this class; neither touches the tables directly. Operations that must reach
online devices (assignment, restarts) hand cloud-link messages to ``send``, which
the MQTT link installs; with no link running they are dropped and the device
gets the same state at its next ``hello``.

Accounts live with the REST API; the service only needs an owner's plan ID and
unbond key, through ``accounts.get(owner_id)`` (anything with ``plan_id`` and
``unbond_key`` attributes). Without one given, the service keeps its own
``owners`` table (``ensure_owner``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, overload
from urllib.parse import urlsplit

from impfactory.cloud import offers
from impfactory.cloud.errors import (
    ConflictError,
    DependentGroupsError,
    DuplicateNameError,
    FlaggedDeploymentsError,
    ForbiddenError,
    InvalidError,
    InvalidUrlError,
    NotFoundError,
    ResourceFlaggedError,
)
from impfactory.cloud.images import ImageCache, impos_blob, sha256
from impfactory.cloud.libraries import check_requires
from impfactory.cloud.model import (
    WEBHOOK_CONTENT_TYPES,
    WEBHOOK_EVENTS,
    AbandonedDelivery,
    Deployment,
    Device,
    DeviceGroup,
    GroupType,
    ImposRelease,
    LogEntry,
    Product,
    Token,
    TokenKind,
    Webhook,
    WebhookDelivery,
    version_key,
)
from impfactory.protocol import cloudlink as cl

log = logging.getLogger(__name__)

AgentListener = Callable[[str, str, Any], None]
"""``(device_id, name, value)`` for each ``agent.send`` a device makes."""


class AgentEvents(Protocol):
    """What the service tells whoever runs the agents (``cloud.agents.Agents``)."""

    def device_changed(self, device_id: str, restart: bool = False) -> None:
        """The device connected, left, reported, was assigned, blessed or restarted."""

    def device_message(self, device_id: str, name: str, value: Any) -> None:
        """The device's ``agent.send(name, value)``."""

    def is_running(self, device_id: str) -> bool | None:
        """Whether the device's agent runs (``None``: no agents here to ask)."""


class NoAgents:
    """No agent runs (a service without ``Agents`` attached, e.g. the CLI's read-only use)."""

    def device_changed(self, device_id: str, restart: bool = False) -> None:
        pass

    def device_message(self, device_id: str, name: str, value: Any) -> None:
        pass

    def is_running(self, device_id: str) -> bool | None:
        return None


NO_AGENTS = NoAgents()

FACTORY_TOKEN_TTL = 600.0
PRODUCTION_TOKEN_TTL = 7 * 86400.0
AGENT_BASE_URL = "https://agent.electricimp.com"
PRODUCTION_EVENTS = ("blessing", "blinkup")
"""Webhook events of (pre-)production groups; ``deployment`` webhooks fit any group."""


class OwnerInfo(Protocol):
    @property
    def plan_id(self) -> str: ...

    @property
    def unbond_key(self) -> str: ...


class AccountDirectory(Protocol):
    """Where owners' plan IDs and unbond keys come from (the REST API's AccountBook fits)."""

    def get(self, account_id: str) -> OwnerInfo | None: ...


@dataclass(frozen=True)
class Owner:
    id: str
    plan_id: str
    unbond_key: str


class OwnerTable:
    """The service's own owner directory, for runs without the REST API."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def get(self, account_id: str) -> Owner | None:
        row = self.db.execute("SELECT * FROM owners WHERE id=?", (account_id,)).fetchone()
        return Owner(row["id"], row["plan_id"], row["unbond_key"]) if row else None

    def ensure(self, account_id: str, plan_id: str | None = None,
               unbond_key: str | None = None) -> Owner:
        found = self.get(account_id)
        if found is not None:
            return found
        owner = Owner(account_id, plan_id or secrets.token_hex(8),
                      unbond_key or secrets.token_hex(16))
        self.db.execute("INSERT INTO owners (id, plan_id, unbond_key) VALUES (?,?,?)",
                        (owner.id, owner.plan_id, owner.unbond_key))
        return owner


def new_id() -> str:
    return str(uuid.uuid4())


def agent_id_for(device_id: str, plan_id: str | None) -> str:
    """A device's agent ID: fixed per (device, plan), as impCloud derives it."""
    digest: str = sha256(f"agent:{device_id}:{plan_id or ''}".encode())
    return digest[:12]


class CloudService:
    """Products, device groups, deployments, devices, tokens, logs and webhooks."""

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        now: Callable[[], float] = time.time,
        accounts: AccountDirectory | None = None,
        agent_base_url: str = AGENT_BASE_URL,
        factory_token_ttl: float = FACTORY_TOKEN_TTL,
        chunk_size: int = cl.DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.db = db
        self.now = now
        self.owners = OwnerTable(db)
        self.accounts: AccountDirectory = accounts if accounts is not None else self.owners
        self.agent_base_url = agent_base_url.rstrip("/")
        self.factory_token_ttl = factory_token_ttl
        self.images = ImageCache(self._load_image, chunk_size=chunk_size)
        self.send: Callable[[cl.Message], None] = lambda msg: None
        self.agents: AgentEvents = NO_AGENTS
        self._agent_listeners: list[AgentListener] = []
        self._depth = 0

    # ------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction; nested calls (or a caller's open transaction) join the outer one."""
        if self._depth or self.db.in_transaction:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.db
        except BaseException:
            self._depth = 0
            self.db.execute("ROLLBACK")
            raise
        self._depth = 0
        self.db.execute("COMMIT")

    def _one(self, sql: str, args: Sequence[Any]) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(sql, args).fetchone()
        return row

    def owner(self, owner_id: str) -> OwnerInfo:
        """An owner's plan ID and unbond key: from the account directory, else ``owners``."""
        found: OwnerInfo | None = self.accounts.get(owner_id)
        if found is None and self.accounts is not self.owners:
            found = self.owners.get(owner_id)
        if found is None:
            raise NotFoundError(f"no account {owner_id}")
        return found

    def ensure_owner(self, account_id: str, plan_id: str | None = None,
                     unbond_key: str | None = None) -> Owner:
        """Register an owner in the service's own directory (runs without the REST API)."""
        with self.tx():
            return self.owners.ensure(account_id, plan_id, unbond_key)

    def agent_url(self, agent_id: str | None) -> str | None:
        return f"{self.agent_base_url}/{agent_id}" if agent_id else None

    # ------------------------------------------------------------ products

    def create_product(self, owner_id: str, name: str, description: str = "") -> Product:
        _check_name(name)
        now = self.now()
        pid = new_id()
        with self.tx() as db:
            try:
                db.execute(
                    "INSERT INTO products (id, owner_id, name, description, created_at,"
                    " updated_at) VALUES (?,?,?,?,?,?)",
                    (pid, owner_id, name, description, now, now),
                )
            except sqlite3.IntegrityError as err:
                raise DuplicateNameError("Product") from err
        return self.get_product(pid)

    def get_product(self, product_id: str) -> Product:
        row = self._one("SELECT * FROM products WHERE id=?", (product_id,))
        if row is None:
            raise NotFoundError(f"no product {product_id}")
        return Product.from_row(row)

    def list_products(self, owner_id: str | None = None) -> list[Product]:
        sql, args = "SELECT * FROM products", []
        if owner_id is not None:
            sql, args = sql + " WHERE owner_id=?", [owner_id]
        return [Product.from_row(r) for r in self.db.execute(sql + " ORDER BY created_at", args)]

    def update_product(self, product_id: str, *, name: str | None = None,
                       description: str | None = None,
                       min_impos_version: str | None = None) -> Product:
        product = self.get_product(product_id)
        with self.tx() as db:
            if name is not None:
                _check_name(name)
            try:
                db.execute(
                    "UPDATE products SET name=?, description=?, min_impos_version=?,"
                    " updated_at=? WHERE id=?",
                    (name if name is not None else product.name,
                     description if description is not None else product.description,
                     min_impos_version if min_impos_version is not None
                     else product.min_impos_version,
                     self.now(), product_id),
                )
            except sqlite3.IntegrityError as err:
                raise DuplicateNameError("Product") from err
        return self.get_product(product_id)

    def delete_product(self, product_id: str) -> None:
        self.get_product(product_id)
        with self.tx() as db:
            if self._one("SELECT 1 FROM devicegroups WHERE product_id=?", (product_id,)):
                raise DependentGroupsError()
            db.execute("DELETE FROM products WHERE id=?", (product_id,))

    # ------------------------------------------------------------ device groups

    def create_group(
        self,
        product_id: str,
        type: GroupType | str,
        name: str,
        *,
        description: str = "",
        production_target: str | None = None,
        dut_target: str | None = None,
        load_code_after_blessing: bool | None = None,
        region: str | None = None,
        env_vars: dict[str, Any] | None = None,
        min_impos_version: str | None = None,
    ) -> DeviceGroup:
        """A device group; (pre-)factory fixture groups need both targets, same zone."""
        gtype = _group_type(type)
        product = self.get_product(product_id)
        _check_name(name)
        if (load_code_after_blessing is not None or region is not None) and not gtype.is_production:
            raise InvalidError("load_code_after_blessing and region are for production groups")
        gid = new_id()
        now = self.now()
        with self.tx() as db:
            if gtype.is_fixture:
                self._check_targets(gtype, product_id, production_target, dut_target)
            elif production_target or dut_target:
                raise InvalidError(f"{gtype.value} has no targets")
            try:
                db.execute(
                    "INSERT INTO devicegroups (id, product_id, owner_id, type, name, description,"
                    " region, env_vars, production_target, dut_target, load_code_after_blessing,"
                    " min_impos_version, created_at, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (gid, product_id, product.owner_id, gtype.value, name, description, region,
                     json.dumps(env_vars or {}), production_target, dut_target,
                     1 if load_code_after_blessing is None else int(load_code_after_blessing),
                     min_impos_version, now, now),
                )
            except sqlite3.IntegrityError as err:
                raise DuplicateNameError("Devicegroup") from err
        return self.get_group(gid)

    def _check_targets(self, gtype: GroupType, product_id: str, production_target: str | None,
                       dut_target: str | None) -> None:
        want_prod, want_dut = gtype.target_types()
        for label, gid, want in (("production_target", production_target, want_prod),
                                 ("dut_target", dut_target, want_dut)):
            if not gid:
                raise InvalidError(f"{gtype.value} needs a {label}")
            target = self.get_group(gid)
            if target.type is not want:
                raise InvalidError(f"{label} must be a {want.value}, not {target.type.value}")
            if target.product_id != product_id:
                raise InvalidError(f"{label} must belong to the same product")

    def get_group(self, group_id: str) -> DeviceGroup:
        row = self._one("SELECT * FROM devicegroups WHERE id=?", (group_id,))
        if row is None:
            raise NotFoundError(f"no device group {group_id}")
        return DeviceGroup.from_row(row)

    def list_groups(self, *, owner_id: str | None = None, product_id: str | None = None,
                    type: GroupType | str | None = None) -> list[DeviceGroup]:
        clauses, args = [], []
        for column, value in (("owner_id", owner_id), ("product_id", product_id),
                              ("type", str(type) if type is not None else None)):
            if value is not None:
                clauses.append(f"{column}=?")
                args.append(value)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = self.db.execute(f"SELECT * FROM devicegroups{where} ORDER BY created_at", args)
        return [DeviceGroup.from_row(r) for r in rows]

    def update_group(self, group_id: str, **changes: Any) -> DeviceGroup:
        """Change name, description, env_vars, load_code_after_blessing, region, targets,
        min_impos_version. Target changes apply to DUTs enrolled or blessed from now on."""
        group = self.get_group(group_id)
        allowed = {"name", "description", "env_vars", "load_code_after_blessing", "region",
                   "production_target", "dut_target", "min_impos_version"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidError(f"cannot change {sorted(unknown)}")
        if ({"load_code_after_blessing", "region"} & set(changes)) and not group.type.is_production:
            raise InvalidError("load_code_after_blessing and region are for production groups")
        if ({"production_target", "dut_target"} & set(changes)) and not group.type.is_fixture:
            raise InvalidError(f"{group.type.value} has no targets")
        if "name" in changes:
            _check_name(changes["name"])
        values: dict[str, Any] = {
            "name": group.name, "description": group.description, "env_vars": group.env_vars,
            "load_code_after_blessing": group.load_code_after_blessing, "region": group.region,
            "production_target": group.production_target, "dut_target": group.dut_target,
            "min_impos_version": group.min_impos_version,
        }
        values.update({k: v for k, v in changes.items() if v is not None})
        with self.tx() as db:
            if group.type.is_fixture:
                self._check_targets(group.type, group.product_id, values["production_target"],
                                    values["dut_target"])
            try:
                db.execute(
                    "UPDATE devicegroups SET name=?, description=?, env_vars=?,"
                    " load_code_after_blessing=?, region=?, production_target=?, dut_target=?,"
                    " min_impos_version=?, updated_at=? WHERE id=?",
                    (values["name"], values["description"], json.dumps(values["env_vars"]),
                     int(bool(values["load_code_after_blessing"])), values["region"],
                     values["production_target"], values["dut_target"],
                     values["min_impos_version"], self.now(), group_id),
                )
            except sqlite3.IntegrityError as err:
                raise DuplicateNameError("Devicegroup") from err
        return self.get_group(group_id)

    def delete_group(self, group_id: str) -> None:
        self.get_group(group_id)
        with self.tx() as db:
            if self._one("SELECT 1 FROM devices WHERE group_id=?", (group_id,)):
                raise ConflictError("the device group still has devices")
            if self._one("SELECT 1 FROM devicegroups WHERE production_target=? OR dut_target=?",
                         (group_id, group_id)):
                raise ConflictError("the device group is a fixture group's target")
            if self._one("SELECT 1 FROM deployments WHERE group_id=? AND flagged=1",
                         (group_id,)):
                raise FlaggedDeploymentsError()
            for (hook_id,) in db.execute("SELECT id FROM webhooks WHERE group_id=?",
                                         (group_id,)).fetchall():
                self._abandon_outbox(hook_id, "its device group was deleted")
            db.execute("DELETE FROM webhooks WHERE group_id=?", (group_id,))
            db.execute("DELETE FROM deployments WHERE group_id=?", (group_id,))
            db.execute("DELETE FROM devicegroups WHERE id=?", (group_id,))

    def set_min_supported_deployment(self, group_id: str, deployment_id: str) -> DeviceGroup:
        group = self.get_group(group_id)
        dep = self.get_deployment(deployment_id)
        if dep.group_id != group_id:
            raise InvalidError("the deployment belongs to another device group")
        if group.min_supported_deployment:
            old = self.get_deployment(group.min_supported_deployment)
            if dep.seq < old.seq:
                raise InvalidError("min_supported_deployment cannot move to an older deployment")
        with self.tx() as db:
            db.execute("UPDATE devicegroups SET min_supported_deployment=?, updated_at=?"
                       " WHERE id=?", (deployment_id, self.now(), group_id))
        return self.get_group(group_id)

    # ------------------------------------------------------------ deployments

    def create_deployment(
        self,
        group_id: str,
        device_code: str,
        agent_code: str = "",
        *,
        description: str = "",
        origin: str | None = None,
        tags: Iterable[str] = (),
        flagged: bool = False,
        promoted: bool = False,
    ) -> Deployment:
        """A new immutable deployment, now the group's current one; a group's first
        deployment is also its min-supported one, as in impCentral.

        Any group takes a deployment, a Production Zone one too (``impt build deploy``
        and ``impt build copy`` into production, DUT and fixture groups, as Electric
        Imp's ProductionGuide does); ``promoted`` is only a mark on a deployment. Devices
        pick it up at restart or next connection; the group's ``deployment`` webhooks
        fire.
        """
        group = self.get_group(group_id)
        check_requires(device_code, "device code")
        check_requires(agent_code, "agent code")
        device_bytes, agent_bytes = device_code.encode(), agent_code.encode()
        code_sha = sha256(b"device\0" + device_bytes + b"\0agent\0" + agent_bytes)
        tag_list = sorted(set(tags))
        did = new_id()
        with self.tx() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM deployments").fetchone()[0]
            db.execute(
                "INSERT INTO deployments (id, seq, group_id, product_id, owner_id, sha,"
                " device_code, agent_code, device_sha, agent_sha, description, origin, tags,"
                " flagged, promoted, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (did, seq, group_id, group.product_id, group.owner_id, code_sha, device_code,
                 agent_code, sha256(device_bytes), sha256(agent_bytes), description, origin,
                 json.dumps(tag_list), int(flagged), int(promoted), self.now(), self.now()),
            )
            db.execute("UPDATE devicegroups SET current_deployment=?,"
                       " min_supported_deployment=COALESCE(min_supported_deployment, ?),"
                       " updated_at=? WHERE id=?", (did, did, self.now(), group_id))
            self._queue_webhooks(group_id, "deployment",
                                 {"deployment_id": did, "devicegroup_id": group_id,
                                  "sha": code_sha})
        self.images.put(device_bytes)
        self.images.put(agent_bytes)
        return self.get_deployment(did)

    def get_deployment(self, deployment_id: str) -> Deployment:
        row = self._one("SELECT * FROM deployments WHERE id=?", (deployment_id,))
        if row is None:
            raise NotFoundError(f"no deployment {deployment_id}")
        return Deployment.from_row(row)

    def find_deployment(self, deployment_id: str | None) -> Deployment | None:
        row = self._one("SELECT * FROM deployments WHERE id=?", (deployment_id,)) \
            if deployment_id else None
        return Deployment.from_row(row) if row is not None else None

    def list_deployments(self, *, owner_id: str | None = None, product_id: str | None = None,
                         group_id: str | None = None, sha: str | None = None,
                         flagged: bool | None = None, tag: str | None = None) -> list[Deployment]:
        clauses, args = [], []
        for column, value in (("owner_id", owner_id), ("product_id", product_id),
                              ("group_id", group_id), ("sha", sha),
                              ("flagged", None if flagged is None else int(flagged))):
            if value is not None:
                clauses.append(f"{column}=?")
                args.append(value)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = self.db.execute(f"SELECT * FROM deployments{where} ORDER BY seq DESC", args)
        found = [Deployment.from_row(r) for r in rows]
        return [d for d in found if tag is None or tag in d.tags]

    def update_deployment(self, deployment_id: str, *, description: str | None = None,
                          flagged: bool | None = None, tags: Iterable[str] | None = None,
                          promoted: bool | None = None) -> Deployment:
        """Only the metadata of a deployment changes; its code never does."""
        dep = self.get_deployment(deployment_id)
        with self.tx() as db:
            db.execute(
                "UPDATE deployments SET description=?, flagged=?, tags=?, promoted=?,"
                " updated_at=? WHERE id=?",
                (dep.description if description is None else description,
                 int(dep.flagged if flagged is None else flagged),
                 json.dumps(sorted(set(dep.tags if tags is None else tags))),
                 int(dep.promoted if promoted is None else promoted), self.now(),
                 deployment_id),
            )
        return self.get_deployment(deployment_id)

    def delete_deployment(self, deployment_id: str) -> None:
        dep = self.get_deployment(deployment_id)
        if dep.flagged:
            raise ResourceFlaggedError()
        group = self.get_group(dep.group_id)
        if group.min_supported_deployment:
            floor = self.get_deployment(group.min_supported_deployment)
            if dep.seq >= floor.seq:
                raise ConflictError("the deployment is its group's min-supported one or newer")
        if group.current_deployment == deployment_id:  # a group from before min-supported
            raise ConflictError("the deployment is its group's current one")  # was always set
        with self.tx() as db:
            db.execute("DELETE FROM deployments WHERE id=?", (deployment_id,))

    # ------------------------------------------------------------ impOS

    def add_impos_release(self, version: str, data: bytes | None = None,
                          size: int | None = None) -> ImposRelease:
        """Make an impOS version available (a generated blob of ``size`` bytes by default)."""
        if not version or len(version) > 64:
            raise InvalidError("impOS version must be 1-64 characters")
        blob = data if data is not None else impos_blob(version, size or (1 << 20))
        digest = self.images.put(blob)
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO impos_releases (version, sha, size, data, created_at)"
                " VALUES (?,?,?,?,?)", (version, digest, len(blob), blob, self.now()),
            )
        return ImposRelease(version, digest, len(blob), self.now())

    def impos_releases(self) -> list[ImposRelease]:
        rows = self.db.execute("SELECT version, sha, size, created_at FROM impos_releases")
        found = [ImposRelease(r[0], r[1], r[2], r[3]) for r in rows]
        return sorted(found, key=lambda r: version_key(r.version))

    def is_impos_image(self, digest: str) -> bool:
        """True when ``digest`` names an impOS release."""
        return self._one("SELECT 1 FROM impos_releases WHERE sha=?", (digest,)) is not None

    def _load_image(self, digest: str) -> bytes | None:
        row = self._one("SELECT data FROM impos_releases WHERE sha=?", (digest,))
        if row is not None:
            return bytes(row[0])
        row = self._one("SELECT device_code FROM deployments WHERE device_sha=? LIMIT 1",
                        (digest,))
        if row is not None:
            return str(row[0]).encode()
        row = self._one("SELECT agent_code FROM deployments WHERE agent_sha=? LIMIT 1", (digest,))
        return str(row[0]).encode() if row is not None else None

    # ------------------------------------------------------------ devices

    def get_device(self, device_id: str) -> Device:
        row = self._one("SELECT * FROM devices WHERE id=?", (device_id,))
        if row is None:
            raise NotFoundError(f"no device {device_id}")
        return Device.from_row(row)

    def find_device(self, device_id: str) -> Device | None:
        row = self._one("SELECT * FROM devices WHERE id=?", (device_id,))
        return Device.from_row(row) if row else None

    def list_devices(self, *, owner_id: str | None = None, product_id: str | None = None,
                     group_id: str | None = None, group_type: GroupType | str | None = None,
                     online: bool | None = None, mac: str | None = None,
                     agent_id: str | None = None, limit: int | None = None,
                     offset: int = 0) -> list[Device]:
        """Devices matching every filter given, oldest first; ``limit``/``offset`` page in
        SQL, so one page of a large fleet never loads the rest of it."""
        if (limit is not None and limit < 0) or offset < 0:
            raise InvalidError("limit and offset must not be negative")
        where, args = _device_filters(owner_id=owner_id, product_id=product_id,
                                      group_id=group_id, group_type=group_type, online=online,
                                      mac=mac, agent_id=agent_id)
        rows = self.db.execute(
            "SELECT d.* FROM devices d LEFT JOIN devicegroups g ON d.group_id = g.id"
            f"{where} ORDER BY d.created_at, d.id LIMIT ? OFFSET ?",
            [*args, -1 if limit is None else limit, offset])
        return [Device.from_row(r) for r in rows]

    def count_devices(self, **filters: Any) -> int:
        """How many devices ``list_devices(**filters)`` would list (without paging)."""
        where, args = _device_filters(**filters)
        row = self.db.execute("SELECT COUNT(*) FROM devices d LEFT JOIN devicegroups g"
                              f" ON d.group_id = g.id{where}", args).fetchone()
        return int(row[0])

    def device_view(self, **filters: Any) -> DeviceView:
        """A lazy, sliceable view of ``list_devices(**filters)`` for paginating: its length
        is one COUNT and each slice one LIMIT/OFFSET query."""
        _device_filters(**filters)  # unknown filter names fail here, not at first use
        return DeviceView(self, filters)

    def rename_device(self, device_id: str, name: str) -> Device:
        self.get_device(device_id)
        with self.tx() as db:
            db.execute("UPDATE devices SET name=? WHERE id=?", (name, device_id))
        return self.get_device(device_id)

    def claim_device(self, device_id: str, owner_id: str) -> Device:
        """Add an unowned device to an account (what a developer BlinkUp does)."""
        device = self.get_device(device_id)
        if device.owner_id not in (None, owner_id):
            raise ForbiddenError("the device belongs to another account")
        plan = self.owner(owner_id).plan_id
        with self.tx() as db:
            db.execute("UPDATE devices SET owner_id=?, plan_id=?, agent_id=? WHERE id=?",
                       (owner_id, plan, agent_id_for(device_id, plan), device_id))
        return self.get_device(device_id)

    def assign_devices(self, group_id: str, device_ids: Iterable[str]) -> list[Device]:
        """Assign or reassign devices by hand.

        Nobody assigns to a (pre-)production or (pre-)DUT group by hand, except that a
        production device moves between production groups of its product. A moved
        online device is told at once and gets the new group's code.
        """
        group = self.get_group(group_id)
        moved = []
        with self.tx() as db:
            for device_id in device_ids:
                device = self.get_device(device_id)
                if device.owner_id != group.owner_id:
                    raise ForbiddenError(f"device {device_id} is not in this account")
                if group.type.is_dut:
                    raise ForbiddenError("DUT groups are filled by factory BlinkUp only")
                if group.type.is_production:
                    current = self.get_group(device.group_id) if device.group_id else None
                    if not (current and current.type is group.type
                            and current.product_id == group.product_id and device.blessed):
                        raise ForbiddenError(
                            "devices reach a production group only by blessing; production "
                            "devices move only between production groups of one product")
                elif device.blessed:
                    raise ForbiddenError(
                        "a blessed device must be unassigned with the unbond key first")
                db.execute(
                    "UPDATE devices SET group_id=?, product_id=?, factory_group_id=NULL"
                    " WHERE id=?", (group_id, group.product_id, device_id))
                moved.append(self.get_device(device_id))
        for device in moved:
            if device.online:
                for msg in offers.assignment_messages(self, device):
                    self.send(msg)
            self.agents.device_changed(device.id)
        return moved

    def unassign_devices(self, device_ids: Iterable[str], unbond_key: str | None = None,
                         group_id: str | None = None) -> list[Device]:
        """Unassign devices; leaving a production group (unblessing) needs the unbond key."""
        done = []
        with self.tx() as db:
            for device_id in device_ids:
                device = self.get_device(device_id)
                if group_id is not None and device.group_id != group_id:
                    raise InvalidError(f"device {device_id} is not in group {group_id}")
                if device.group_id is None:
                    continue
                group = self.get_group(device.group_id)
                if group.type.is_production or device.blessed:
                    owner = self.owner(group.owner_id)
                    if not unbond_key or not secrets.compare_digest(unbond_key, owner.unbond_key):
                        raise ForbiddenError("removing a production device needs the unbond key")
                db.execute(
                    "UPDATE devices SET group_id=NULL, product_id=NULL, blessed=0, activated=0,"
                    " blessed_at=NULL, factory_group_id=NULL WHERE id=?", (device_id,))
                done.append(self.get_device(device_id))
        for device in done:
            if device.online:
                for msg in offers.assignment_messages(self, device):
                    self.send(msg)
            self.agents.device_changed(device.id)
        return done

    def delete_device(self, device_id: str) -> None:
        device = self.get_device(device_id)
        if device.group_id is not None:
            raise ConflictError("unassign the device before removing it")
        with self.tx() as db:
            db.execute("DELETE FROM devices WHERE id=?", (device_id,))

    def restart_group(self, group_id: str, *, conditional: bool = False) -> int:
        """Restart a group's online devices; returns how many were told."""
        group = self.get_group(group_id)
        return self._restart(group, self.list_devices(group_id=group_id, online=True),
                             conditional)

    def restart_device(self, device_id: str, *, conditional: bool = False) -> int:
        device = self.get_device(device_id)
        if not device.online:
            return 0
        group = self.get_group(device.group_id) if device.group_id else None
        return self._restart(group, [device], conditional)

    def _restart(self, group: DeviceGroup | None, devices: list[Device],
                 conditional: bool) -> int:
        floor = None
        if conditional and group is not None and group.min_supported_deployment:
            floor = self.get_deployment(group.min_supported_deployment).seq
        for device in devices:
            polite = conditional and floor is not None and self._runs_at_least(device, floor)
            if conditional and floor is None:
                polite = device.deployment_id is not None
            if polite:
                self.send(cl.ShutdownNotice(device_id=device.id,
                                            reason=cl.ShutdownReason.NEWSQUIRREL))
            else:
                self.send(cl.Restart(device_id=device.id,
                                     reason="conditional" if conditional else "restart"))
            self.agents.device_changed(device.id, restart=True)
        return len(devices)

    def _runs_at_least(self, device: Device, floor_seq: int) -> bool:
        if device.deployment_id is None:
            return False
        row = self._one("SELECT seq FROM deployments WHERE id=?", (device.deployment_id,))
        return row is not None and int(row[0]) >= floor_seq

    # ------------------------------------------------------------ logs

    def append_log(self, device_id: str, msg: str, type: str = "status") -> None:
        with self.tx() as db:
            db.execute("INSERT INTO logs (device_id, ts, type, msg) VALUES (?,?,?,?)",
                       (device_id, self.now(), type, msg[:cl.MAX_LOG_LENGTH]))

    def device_logs(self, device_id: str, *, page: int = 1, size: int = 100,
                    newest_first: bool = False) -> list[LogEntry]:
        """A page of a device's log (oldest first unless asked otherwise)."""
        order = "DESC" if newest_first else "ASC"
        rows = self.db.execute(
            f"SELECT id, device_id, ts, type, msg FROM logs WHERE device_id=? ORDER BY id {order}"
            " LIMIT ? OFFSET ?", (device_id, size, max(0, page - 1) * size))
        return [LogEntry(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def logs_since(self, after_id: int, limit: int = 1000) -> list[LogEntry]:
        """Every log line with id > ``after_id`` (for log streams)."""
        rows = self.db.execute("SELECT id, device_id, ts, type, msg FROM logs WHERE id>?"
                               " ORDER BY id LIMIT ?", (after_id, limit))
        return [LogEntry(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    # ------------------------------------------------------------ device links

    def save_link(self, device_id: str, link_key: bytes) -> None:
        """A module registered (protocol/linksec.py): its new link key; no session yet."""
        with self.tx() as db:
            db.execute(
                "INSERT INTO device_links (device_id, link_key, session, registered_at)"
                " VALUES (?,?,NULL,?) ON CONFLICT(device_id) DO UPDATE SET"
                " link_key=excluded.link_key, session=NULL,"
                " registered_at=excluded.registered_at, registrations=registrations+1",
                (device_id, link_key.hex(), self.now()))

    def link_of(self, device_id: str) -> tuple[bytes, str | None] | None:
        """(link key, current session) of a registered device, else None."""
        row = self._one("SELECT link_key, session FROM device_links WHERE device_id=?",
                        (device_id,))
        return (bytes.fromhex(row[0]), row[1]) if row is not None else None

    def set_link_session(self, device_id: str, session: str | None) -> None:
        with self.tx() as db:
            db.execute("UPDATE device_links SET session=? WHERE device_id=?",
                       (session, device_id))

    def registrations(self, device_id: str) -> int:
        """How many times the module ``device_id`` has registered (0: never)."""
        row = self._one("SELECT registrations FROM device_links WHERE device_id=?",
                        (device_id,))
        return int(row[0]) if row is not None else 0

    # ------------------------------------------------------------ tokens

    def create_production_token(self, owner_id: str, plan_id: str | None = None,
                                ttl: float = PRODUCTION_TOKEN_TTL) -> Token:
        """An end user's BlinkUp enrolment (plan ID + token) for a production device."""
        return self._new_token(TokenKind.PRODUCTION, owner_id,
                               plan_id or secrets.token_hex(8), None, ttl)

    def create_development_token(self, owner_id: str, ttl: float = 3600.0) -> Token:
        """A developer's BlinkUp enrolment: adds a device to the owner's account."""
        return self._new_token(TokenKind.DEVELOPMENT, owner_id, self.owner(owner_id).plan_id,
                               None, ttl)

    def create_factory_token(self, fixture: Device) -> Token:
        assert fixture.owner_id is not None
        return self._new_token(TokenKind.FACTORY, fixture.owner_id,
                               self.owner(fixture.owner_id).plan_id, fixture.id,
                               self.factory_token_ttl)

    def _new_token(self, kind: TokenKind, owner_id: str, plan_id: str, fixture_id: str | None,
                   ttl: float) -> Token:
        token = Token(secrets.token_hex(8), kind, plan_id, owner_id, fixture_id,
                      self.now() + ttl, None, None, self.now())
        with self.tx() as db:
            db.execute(
                "INSERT INTO tokens (token, kind, plan_id, owner_id, fixture_id, expires_at,"
                " created_at) VALUES (?,?,?,?,?,?,?)",
                (token.token, kind.value, plan_id, owner_id, fixture_id, token.expires_at,
                 token.created_at),
            )
        return token

    def get_token(self, token: str) -> Token | None:
        row = self._one("SELECT * FROM tokens WHERE token=?", (token,))
        return Token.from_row(row) if row else None

    # ------------------------------------------------------------ agents

    def add_agent_listener(self, listener: AgentListener) -> Callable[[], None]:
        """Hear every device's ``agent.send`` beside its agent (tests, tools):
        ``listener(device_id, name, value)``. Returns the function that removes it."""
        self._agent_listeners.append(listener)
        return lambda: self._agent_listeners.remove(listener)

    def agent_message(self, device_id: str, name: str, value: Any) -> bool:
        """A device's ``agent.send``: handed to every listener; False (and a line in the
        device log) when the device has no agent yet, i.e. was never enrolled."""
        device = self.find_device(device_id)
        if device is None or device.agent_id is None:
            self.append_log(device_id, f"agent.send({name!r}) dropped: the device has no agent")
            return False
        for listener in list(self._agent_listeners):
            try:
                listener(device_id, name, value)
            except Exception:  # one listener's bug must not cost the others the message
                log.exception("agent listener failed on %r from %s", name, device_id)
        self.agents.device_message(device_id, name, value)
        return True

    def send_to_device(self, device_id: str, name: str, value: Any = None) -> bool:
        """An agent's ``device.send(name, value)``: True when handed to the online device,
        False when it is offline (the message is dropped, as impCloud drops it)."""
        device = self.get_device(device_id)
        try:
            msg = cl.validate(cl.DeviceMessage(device_id=device.id, name=name, value=value))
        except cl.CloudLinkError as err:
            raise InvalidError(f"device.send: {err}") from err
        if not device.online:
            return False
        self.send(msg)
        return True

    def agent_save(self, agent_id: str, data: str) -> None:
        """``server.save``: the agent's table (JSON text), kept across restarts; ``{}``
        clears it."""
        with self.tx() as db:
            if data == "{}":
                db.execute("DELETE FROM agent_store WHERE agent_id=?", (agent_id,))
            else:
                db.execute("INSERT OR REPLACE INTO agent_store (agent_id, data, updated_at)"
                           " VALUES (?,?,?)", (agent_id, data, self.now()))

    def agent_load(self, agent_id: str) -> str | None:
        """``server.load``: what the agent last saved (JSON text), or ``None``."""
        row = self._one("SELECT data FROM agent_store WHERE agent_id=?", (agent_id,))
        return str(row[0]) if row is not None else None

    # ------------------------------------------------------------ webhooks

    def create_webhook(self, group_id: str, event: str, url: str,
                       content_type: str = "application/json") -> Webhook:
        group = self.get_group(group_id)
        _check_webhook(event, url, content_type)
        if event in PRODUCTION_EVENTS and not group.type.is_production:
            raise InvalidError(f"{event} webhooks belong to (pre-)production device groups; "
                               "deployment webhooks to any group")
        hook = Webhook(new_id(), group_id, event, url, content_type, self.now())
        with self.tx() as db:
            db.execute("INSERT INTO webhooks (id, group_id, event, url, content_type, created_at)"
                       " VALUES (?,?,?,?,?,?)", (hook.id, group_id, event, url, content_type,
                                                 hook.created_at))
        return hook

    def get_webhook(self, webhook_id: str) -> Webhook:
        row = self._one("SELECT * FROM webhooks WHERE id=?", (webhook_id,))
        if row is None:
            raise NotFoundError(f"no webhook {webhook_id}")
        return _webhook(row)

    def list_webhooks(self, group_id: str | None = None) -> list[Webhook]:
        sql, args = "SELECT * FROM webhooks", []
        if group_id is not None:
            sql, args = sql + " WHERE group_id=?", [group_id]
        return [_webhook(r) for r in self.db.execute(sql + " ORDER BY created_at", args)]

    def update_webhook(self, webhook_id: str, *, url: str | None = None,
                       content_type: str | None = None) -> Webhook:
        hook = self.get_webhook(webhook_id)
        url, content_type = url or hook.url, content_type or hook.content_type
        _check_webhook(hook.event, url, content_type)
        with self.tx() as db:
            db.execute("UPDATE webhooks SET url=?, content_type=? WHERE id=?",
                       (url, content_type, webhook_id))
        return self.get_webhook(webhook_id)

    def delete_webhook(self, webhook_id: str) -> None:
        """Delete a webhook. As in impCentral nothing more is sent to it; events still
        queued for it are kept, marked abandoned (``abandoned_webhooks``) and logged."""
        self.get_webhook(webhook_id)
        with self.tx() as db:
            self._abandon_outbox(webhook_id, "the webhook was deleted")
            db.execute("DELETE FROM webhooks WHERE id=?", (webhook_id,))

    def _abandon_outbox(self, webhook_id: str, why: str) -> None:
        """Mark ``webhook_id``'s undelivered events abandoned (inside the caller's tx)."""
        hook = self.get_webhook(webhook_id)
        rows = self.db.execute(
            "SELECT id, event FROM webhook_outbox WHERE webhook_id=? AND delivered_at IS NULL"
            " AND abandoned_at IS NULL ORDER BY id", (webhook_id,)).fetchall()
        if not rows:
            return
        reason = f"not delivered: {why} (it posted to {hook.url})"
        self.db.execute(
            "UPDATE webhook_outbox SET abandoned_at=?, last_error=? WHERE webhook_id=?"
            " AND delivered_at IS NULL AND abandoned_at IS NULL",
            (self.now(), reason, webhook_id))
        for row in rows:
            log.warning("webhook event evt-%d (%s) for webhook %s %s", row[0], row[1],
                        webhook_id, reason)

    def _queue_webhooks(self, group_id: str, event: str, payload: dict[str, Any]) -> None:
        rows = self.db.execute("SELECT id FROM webhooks WHERE group_id=? AND event=?",
                               (group_id, event)).fetchall()
        for row in rows:
            self.db.execute(
                "INSERT INTO webhook_outbox (webhook_id, event, payload, created_at)"
                " VALUES (?,?,?,?)", (row[0], event, json.dumps(payload), self.now()))

    def pending_webhooks(self, limit: int = 100) -> list[WebhookDelivery]:
        """Outbox entries not yet delivered, oldest first."""
        rows = self.db.execute(
            "SELECT o.id, o.webhook_id, w.url, w.content_type, o.event, o.payload, o.attempts,"
            " o.created_at FROM webhook_outbox o JOIN webhooks w ON o.webhook_id = w.id"
            " WHERE o.delivered_at IS NULL AND o.abandoned_at IS NULL ORDER BY o.id LIMIT ?",
            (limit,))
        return [WebhookDelivery(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7])
                for r in rows]

    def abandoned_webhooks(self, limit: int = 100) -> list[AbandonedDelivery]:
        """Events never delivered because their webhook (or its group) was deleted (one
        whose POST was already under way when the hook went, and succeeded, is not)."""
        rows = self.db.execute(
            "SELECT id, webhook_id, event, payload, attempts, created_at, abandoned_at,"
            " last_error FROM webhook_outbox WHERE abandoned_at IS NOT NULL"
            " AND delivered_at IS NULL ORDER BY id"
            " LIMIT ?", (limit,))
        return [AbandonedDelivery(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6],
                                  r[7] or "") for r in rows]

    def mark_webhook(self, delivery_id: int, *, ok: bool, error: str | None = None) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE webhook_outbox SET attempts=attempts+1, delivered_at=?, last_error=?"
                " WHERE id=?", (self.now() if ok else None, error, delivery_id))


def is_webhook_url(url: object) -> bool:
    """An absolute http(s) URL with a host, of sane length."""
    if not isinstance(url, str) or len(url) > 2000:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _webhook(row: sqlite3.Row) -> Webhook:
    return Webhook(row["id"], row["group_id"], row["event"], row["url"], row["content_type"],
                   row["created_at"])


def _device_filters(*, owner_id: str | None = None, product_id: str | None = None,
                    group_id: str | None = None, group_type: GroupType | str | None = None,
                    online: bool | None = None, mac: str | None = None,
                    agent_id: str | None = None) -> tuple[str, list[Any]]:
    """The WHERE clause (over ``devices d`` joined to ``devicegroups g``) for the filters."""
    clauses, args = [], []
    for column, value in (("d.owner_id", owner_id), ("d.product_id", product_id),
                          ("d.group_id", group_id),
                          ("g.type", str(group_type) if group_type is not None else None),
                          ("d.online", None if online is None else int(online)),
                          ("d.mac", mac), ("d.agent_id", agent_id)):
        if value is not None:
            clauses.append(f"{column}=?")
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


class DeviceView(Sequence[Device]):
    """``list_devices`` as a read-only sequence that queries only what is asked of it."""

    def __init__(self, svc: CloudService, filters: dict[str, Any]) -> None:
        self._svc = svc
        self._filters = filters
        self._len: int | None = None

    def __len__(self) -> int:
        if self._len is None:
            self._len = self._svc.count_devices(**self._filters)
        return self._len

    @overload
    def __getitem__(self, index: int) -> Device: ...

    @overload
    def __getitem__(self, index: slice) -> list[Device]: ...

    def __getitem__(self, index: int | slice) -> Device | list[Device]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return self._svc.list_devices(**self._filters)[index]
            return self._svc.list_devices(**self._filters, limit=max(0, stop - start),
                                          offset=start)
        position = index + len(self) if index < 0 else index
        found = self._svc.list_devices(**self._filters, limit=1, offset=max(0, position))
        if position < 0 or not found:
            raise IndexError("device index out of range")
        return found[0]

    def __iter__(self) -> Iterator[Device]:
        return iter(self._svc.list_devices(**self._filters))


def _group_type(value: GroupType | str) -> GroupType:
    try:
        return GroupType(value)
    except ValueError:
        raise InvalidError(f"unknown device group type {value!r}") from None


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise InvalidError("a name must be 1-128 characters")


def _check_webhook(event: str, url: str, content_type: str) -> None:
    if event not in WEBHOOK_EVENTS:
        raise InvalidError(f"webhook event must be one of {', '.join(WEBHOOK_EVENTS)}")
    if not is_webhook_url(url):
        raise InvalidUrlError()
    if content_type not in WEBHOOK_CONTENT_TYPES:
        raise InvalidError(f"content_type must be one of {', '.join(WEBHOOK_CONTENT_TYPES)}")
