"""The impCloud's records: products, device groups, deployments, devices, tokens.

Plain frozen dataclasses read from the store (``cloud/store``'s repositories make
them); the use cases that change them live in ``cloud/services``. Group types
are the impCentral API v5 type strings, so the REST layer needs no mapping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol, get_args


class GroupType(StrEnum):
    """The seven device group types (impCentral API v5 ``type`` values)."""

    DEVELOPMENT = "development_devicegroup"
    PRE_FACTORYFIXTURE = "pre_factoryfixture_devicegroup"
    PRE_PRODUCTION = "pre_production_devicegroup"
    PRE_DUT = "pre_dut_devicegroup"
    FACTORYFIXTURE = "factoryfixture_devicegroup"
    PRODUCTION = "production_devicegroup"
    DUT = "dut_devicegroup"

    @property
    def zone(self) -> str:
        """``development``, ``test`` (the pre_ groups) or ``production`` (Production Zone)."""
        if self is GroupType.DEVELOPMENT:
            return "development"
        return "test" if self.value.startswith("pre_") else "production"

    @property
    def role(self) -> str:
        """``development``, ``fixture``, ``production`` or ``dut``."""
        if self is GroupType.DEVELOPMENT:
            return "development"
        if "factoryfixture" in self.value:
            return "fixture"
        return "dut" if "dut" in self.value else "production"

    @property
    def is_fixture(self) -> bool:
        return self.role == "fixture"

    @property
    def is_production(self) -> bool:
        return self.role == "production"

    @property
    def is_dut(self) -> bool:
        return self.role == "dut"

    def target_types(self) -> tuple[GroupType, GroupType]:
        """(production_target type, dut_target type) a fixture group of this type needs."""
        if self is GroupType.PRE_FACTORYFIXTURE:
            return GroupType.PRE_PRODUCTION, GroupType.PRE_DUT
        if self is GroupType.FACTORYFIXTURE:
            return GroupType.PRODUCTION, GroupType.DUT
        raise ValueError(f"{self.value} has no targets")


class TokenKind(StrEnum):
    FACTORY = "factory"
    PRODUCTION = "production"
    DEVELOPMENT = "development"


WebhookEvent = Literal["blessing", "blinkup", "deployment"]
WebhookContentType = Literal["application/json", "application/x-www-form-urlencoded"]
WEBHOOK_EVENTS: tuple[str, ...] = get_args(WebhookEvent)
WEBHOOK_CONTENT_TYPES: tuple[str, ...] = get_args(WebhookContentType)
"""The first is the default."""


class RowLike(Protocol):
    """A stored row as the repositories read it: values by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


def _json(text: str | None, default: Any) -> Any:
    return default if text is None else json.loads(text)


@dataclass(frozen=True)
class Product:
    id: str
    owner_id: str
    name: str
    description: str
    min_impos_version: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, r: RowLike) -> Product:
        return cls(r["id"], r["owner_id"], r["name"], r["description"],
                   r["min_impos_version"], r["created_at"], r["updated_at"])


@dataclass(frozen=True)
class DeviceGroup:
    id: str
    product_id: str
    owner_id: str
    type: GroupType
    name: str
    description: str
    region: str | None
    env_vars: dict[str, Any]
    production_target: str | None
    dut_target: str | None
    load_code_after_blessing: bool
    current_deployment: str | None
    min_supported_deployment: str | None
    min_impos_version: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, r: RowLike) -> DeviceGroup:
        return cls(
            r["id"], r["product_id"], r["owner_id"], GroupType(r["type"]), r["name"],
            r["description"], r["region"], _json(r["env_vars"], {}), r["production_target"],
            r["dut_target"], bool(r["load_code_after_blessing"]), r["current_deployment"],
            r["min_supported_deployment"], r["min_impos_version"], r["created_at"],
            r["updated_at"],
        )


@dataclass(frozen=True)
class Deployment:
    """An immutable build; ``seq`` orders deployments (higher is newer)."""

    id: str
    seq: int
    group_id: str
    product_id: str
    owner_id: str
    sha: str
    device_code: str
    agent_code: str
    device_sha: str
    agent_sha: str
    description: str
    origin: str | None
    tags: tuple[str, ...]
    flagged: bool
    promoted: bool
    created_at: float
    updated_at: float
    """When its description, tags or flag last changed (its code never does)."""

    @classmethod
    def from_row(cls, r: RowLike) -> Deployment:
        return cls(
            r["id"], r["seq"], r["group_id"], r["product_id"], r["owner_id"], r["sha"],
            r["device_code"], r["agent_code"], r["device_sha"], r["agent_sha"],
            r["description"], r["origin"], tuple(_json(r["tags"], [])), bool(r["flagged"]),
            bool(r["promoted"]), r["created_at"], r["updated_at"] or r["created_at"],
        )


@dataclass(frozen=True)
class Device:
    id: str
    mac: str
    name: str
    owner_id: str | None
    group_id: str | None
    product_id: str | None
    imp_type: str
    blessed: bool
    activated: bool
    online: bool
    impos_version: str
    deployment_id: str | None
    plan_id: str | None
    agent_id: str | None
    fixture_id: str | None
    factory_group_id: str | None
    led: str
    connection: str
    bless_failures: int
    last_enrolled_at: float | None
    blessed_at: float | None
    last_seen: float | None
    created_at: float

    @classmethod
    def from_row(cls, r: RowLike) -> Device:
        return cls(
            r["id"], r["mac"], r["name"], r["owner_id"], r["group_id"], r["product_id"],
            r["imp_type"], bool(r["blessed"]), bool(r["activated"]), bool(r["online"]),
            r["impos_version"], r["deployment_id"], r["plan_id"], r["agent_id"],
            r["fixture_id"], r["factory_group_id"], r["led"], r["connection"],
            r["bless_failures"], r["last_enrolled_at"], r["blessed_at"], r["last_seen"],
            r["created_at"],
        )


@dataclass(frozen=True)
class Token:
    """An enrolment token: what BlinkUp carries (plan ID + token)."""

    token: str
    kind: TokenKind
    plan_id: str
    owner_id: str
    fixture_id: str | None
    expires_at: float | None
    used_at: float | None
    used_by: str | None
    created_at: float

    @classmethod
    def from_row(cls, r: RowLike) -> Token:
        return cls(r["token"], TokenKind(r["kind"]), r["plan_id"], r["owner_id"],
                   r["fixture_id"], r["expires_at"], r["used_at"], r["used_by"],
                   r["created_at"])


@dataclass(frozen=True)
class LogEntry:
    id: int
    device_id: str
    ts: float
    type: str
    msg: str


@dataclass(frozen=True)
class Webhook:
    id: str
    group_id: str
    event: str
    url: str
    content_type: str
    created_at: float


@dataclass(frozen=True)
class WebhookDelivery:
    """One pending POST in the outbox: the REST side sends it and marks it done."""

    id: int
    webhook_id: str
    url: str
    content_type: str
    event: str
    payload: dict[str, Any]
    attempts: int
    created_at: float


@dataclass(frozen=True)
class AbandonedDelivery:
    """An outbox event whose webhook was deleted before it was delivered: never sent,
    but kept (with the deleted hook's URL in ``reason``) so it does not vanish."""

    id: int
    webhook_id: str
    event: str
    payload: dict[str, Any]
    attempts: int
    created_at: float
    abandoned_at: float
    reason: str


@dataclass(frozen=True)
class ImposRelease:
    version: str
    sha: str
    size: int
    created_at: float


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Order impOS versions numerically part by part: ``"43.1.9" < "43.1.10"``."""
    parts: list[tuple[int, str]] = []
    for piece in version.replace("-", ".").split("."):
        parts.append((int(piece), "") if piece.isdigit() else (-1, piece))
    return tuple(parts)


@dataclass(frozen=True)
class Account:
    """A REST API account; ``owner_id`` is itself for an owner."""

    id: str
    username: str
    email: str
    role: str
    owner_id: str
    unbond_key: str
    plan_id: str
    created_at: float


@dataclass(frozen=True)
class Owner:
    """An owner in the cloud's own directory (runs without the REST API)."""

    id: str
    plan_id: str
    unbond_key: str
