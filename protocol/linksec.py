"""What makes the cloud link trustworthy: module keys, registration, sealed messages.

No I/O and no clock (HMAC is arithmetic). The cloud and the emulated imp both use
these functions; docs/cloudlink.md tells the whole story. Three pieces:

**Module keys.** Every imp leaves its maker with a secret key derived from its
device ID by the maker's secret, ``module_key(maker_secret, device_id)``. The cloud
holds the maker's secret, so it can tell a real module from a made-up device ID
without a table of every module ever made.

**Registration** (a device's own broker credentials). A device without them
connects as one of ``ENROL_SLOTS`` shared *enrolment accounts* (``enrol-000`` ...
``enrol-127``; the password ``ENROL_PASSWORD`` is public, every impOS carries it;
each account's MQTT client ID is bound to its name, so it can never take a
device's). It may only publish on its slot's request topic and read its slot's
answer topic::

    imp/1/enrol/{slot}/register    device -> cloud
        {"v":1,"nonce":"<32 hex>","device_id":"<16 hex>","password":"<32-64 chars>",
         "proof":"<64 hex>"}
    imp/1/enrol/{slot}/registered  cloud -> device
        {"v":1,"nonce":"<32 hex>","ok":true,"code":"ok","message":""}

``proof = HMAC-SHA256(module key, "register\\0" device_id "\\0" nonce "\\0" password)``:
only the module itself can make it. The cloud checks it, creates the broker
account ``device_id`` (password as chosen, client ID bound to the device ID) and
answers. The answer carries no secret, so the slot's later users may read it.

**Sealed cloud -> device messages.** Both sides derive the device's link key
``link_key(module_key, nonce)`` from the registration's nonce (the broker never
sees the module key, so it cannot derive it). Every ``hello`` carries a fresh
``session`` nonce, and every ``down`` message but ``chunk`` ends with one more
line::

    <payload>\\n<HMAC-SHA256(link key, session "\\0" topic "\\0" payload), 64 hex>

A device acts only on messages sealed with its key for its current session: an
offer, restart or bless answer from anyone else fails ``unseal`` and is ignored.
Chunks are not sealed: each carries the SHA-256 of its block, and the assembled
image must match the SHA-256 of the sealed offer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from .cloudlink import (
    HEX16,
    HEX32,
    SHA256,
    VERSION,
    CloudLinkError,
    PayloadTooLargeError,
    SchemaError,
    TopicError,
)
from .constraints import Limits

ENROL_SLOTS: Final = 128
ENROL_PASSWORD: Final = "impfactory-enrolment"
"""Public by design: every impOS carries it. What it allows is the point (above)."""
ENROL_PREFIX: Final = f"imp/{VERSION}/enrol"
ENROL_REQUEST_FILTER: Final = f"{ENROL_PREFIX}/+/register"
MAX_REGISTRATION: Final = 1024

_SLOT = re.compile(r"enrol-[0-9]{3}\Z")
_NONCE = Limits(pattern=HEX32)
_CODE = Limits(pattern="^[a-z_]{1,32}$")
_SEAL_LEN = 64


class SealError(CloudLinkError):
    """A cloud -> device message without a valid seal for this device and session."""


class RegistrationCode:
    """Why a registration was refused (``RegisterAnswer.code``)."""

    OK: Final = "ok"
    BAD_PROOF: Final = "bad_proof"
    BAD_REQUEST: Final = "bad_request"
    UNAVAILABLE: Final = "unavailable"


# ---------------------------------------------------------------- keys


def module_key(maker_secret: bytes, device_id: str) -> bytes:
    """The secret a module is made with (32 bytes), from its maker's secret."""
    return hmac.new(maker_secret, b"impfactory module key\0" + device_id.encode(),
                    hashlib.sha256).digest()


def registration_proof(key: bytes, device_id: str, nonce: str, password: str) -> str:
    """What proves that a registration comes from the module ``device_id`` itself."""
    text = f"register\0{device_id}\0{nonce}\0{password}".encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def link_key(key: bytes, nonce: str) -> bytes:
    """The key that seals cloud -> device messages after the registration ``nonce``."""
    return hmac.new(key, b"link\0" + nonce.encode(), hashlib.sha256).digest()


# ---------------------------------------------------------------- seals


def _tag(key: bytes, session: str, topic: str, payload: bytes) -> bytes:
    mac = hmac.new(key, session.encode(), hashlib.sha256)
    mac.update(b"\0" + topic.encode() + b"\0")
    mac.update(payload)
    return mac.hexdigest().encode()


def seal(key: bytes, session: str, topic: str, payload: bytes) -> bytes:
    """``payload`` with its seal line appended (what the cloud publishes)."""
    return payload + b"\n" + _tag(key, session, topic, payload)


def unseal(key: bytes, session: str, topic: str, sealed: bytes) -> bytes:
    """The payload of a sealed message, or ``SealError`` (no seal, or not ours)."""
    payload, sep, tag = sealed.rpartition(b"\n")
    if not sep or len(tag) != _SEAL_LEN:
        raise SealError("the message carries no seal")
    if not hmac.compare_digest(tag, _tag(key, session, topic, payload)):
        raise SealError("the seal does not match this device's link key and session")
    return payload


# ---------------------------------------------------------------- registration


def slot_name(index: int) -> str:
    """The enrolment account (and MQTT client ID) of slot ``index``."""
    if not 0 <= index < ENROL_SLOTS:
        raise ValueError(f"enrolment slot {index} does not exist")
    return f"enrol-{index:03d}"


def slot_client_id(slot: str, nonce: str) -> str:
    """The MQTT client ID one registration asks for: ``enrol-007-<nonce>``. Mosquitto
    replaces it with the slot's name (so registrations on one slot take each other's
    session); the embedded broker keeps it (so they never do)."""
    return f"{slot}-{nonce[:16]}"


def slot_names() -> list[str]:
    return [slot_name(i) for i in range(ENROL_SLOTS)]


def request_topic(slot: str) -> str:
    return f"{ENROL_PREFIX}/{slot}/register"


def answer_topic(slot: str) -> str:
    return f"{ENROL_PREFIX}/{slot}/registered"


def slot_of(topic: str, kind: str = "register") -> str:
    """The slot a registration topic names, or ``TopicError``."""
    parts = topic.split("/")
    if (len(parts) != 5 or "/".join(parts[:3]) != ENROL_PREFIX or parts[4] != kind
            or not _SLOT.match(parts[3])):
        raise TopicError(f"not a registration topic: {topic[:120]!r}")
    return parts[3]


@dataclass(frozen=True)
class RegisterRequest:
    """A module asking for broker credentials: the password it chose, and its proof."""

    slot: str
    nonce: str
    device_id: str
    password: str
    proof: str

    def verify(self, maker_secret: bytes) -> bool:
        """True when ``proof`` was made with the module key of ``device_id``."""
        key = module_key(maker_secret, self.device_id)
        expected = registration_proof(key, self.device_id, self.nonce, self.password)
        return hmac.compare_digest(self.proof, expected)


@dataclass(frozen=True)
class RegisterAnswer:
    """The cloud's answer, on the slot's answer topic, naming the request's nonce."""

    slot: str
    nonce: str
    ok: bool
    code: str = RegistrationCode.OK
    message: str = ""


_REQUEST_FIELDS = {"nonce": _NONCE, "device_id": Limits(pattern=HEX16),
                   "password": Limits(pattern="^[A-Za-z0-9_.~-]{32,64}$"),
                   "proof": Limits(pattern=SHA256)}
"""A registration's fields, in the cloud link's constraint vocabulary (protocol/constraints)."""


def encode_request(msg: RegisterRequest) -> tuple[str, bytes]:
    body = {"v": VERSION, "nonce": msg.nonce, "device_id": msg.device_id,
            "password": msg.password, "proof": msg.proof}
    return request_topic(msg.slot), json.dumps(body, separators=(",", ":")).encode()


def decode_request(topic: str, payload: bytes) -> RegisterRequest:
    """A validated ``RegisterRequest``, or a ``CloudLinkError`` saying what is wrong."""
    slot = slot_of(topic, "register")
    obj = _object(payload)
    if set(obj) != set(_REQUEST_FIELDS):
        raise SchemaError(f"register: fields must be {sorted(_REQUEST_FIELDS)}")
    for name, limits in _REQUEST_FIELDS.items():
        value = obj[name]
        if not isinstance(value, str) or not limits.matches(value):
            raise SchemaError(f"register: {name} is malformed")
    return RegisterRequest(slot, obj["nonce"], obj["device_id"], obj["password"], obj["proof"])


def encode_answer(msg: RegisterAnswer) -> tuple[str, bytes]:
    body = {"v": VERSION, "nonce": msg.nonce, "ok": msg.ok, "code": msg.code,
            "message": msg.message[:256]}
    return answer_topic(msg.slot), json.dumps(body, separators=(",", ":")).encode()


def decode_answer(topic: str, payload: bytes) -> RegisterAnswer:
    slot = slot_of(topic, "registered")
    obj = _object(payload)
    if set(obj) != {"nonce", "ok", "code", "message"}:
        raise SchemaError("registered: fields must be nonce, ok, code, message")
    nonce, ok, code, message = obj["nonce"], obj["ok"], obj["code"], obj["message"]
    if not (isinstance(nonce, str) and _NONCE.matches(nonce) and isinstance(ok, bool)
            and isinstance(code, str) and _CODE.matches(code) and isinstance(message, str)
            and len(message) <= 256):
        raise SchemaError("registered: a field is malformed")
    return RegisterAnswer(slot, nonce, ok, code, message)


def _object(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_REGISTRATION:
        raise PayloadTooLargeError(f"registration payload of {len(payload)} bytes")
    try:
        obj: object = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise SchemaError(f"registration payload is not JSON: {err}") from None
    if not isinstance(obj, dict):
        raise SchemaError("registration payload is not a JSON object")
    version = obj.pop("v", None)
    if type(version) is not int or version != VERSION:
        raise SchemaError(f"registration payload is not a version {VERSION} object")
    return obj
