"""Who may do what on the broker: accounts, access rules, and how a cloud gets its keys.

Three kinds of broker account (docs/cloud.md, "Broker security"):

========================  ===================================  ==========================
account (MQTT username)   may publish                          may receive
========================  ===================================  ==========================
``impcloud`` (the cloud)  ``imp/1/d/+/down/#``,                ``imp/1/d/+/up/#``,
                          ``imp/1/enrol/+/registered``,        ``imp/1/enrol/+/register``,
                          broker control (new accounts)        control answers
``enrol-000`` .. ``-127`` ``imp/1/enrol/{itself}/register``    ``.../{itself}/registered``
``{device_id}``           ``imp/1/d/{itself}/up/#``            ``imp/1/d/{itself}/down/#``
========================  ===================================  ==========================

Anonymous clients are refused. Enrolment and device accounts are bound to their
MQTT client ID (the account's own name), so no account can take over another's
session; only the cloud's client ID is free (``impcloud-`` and 32 random hex digits).

A ``Realm`` is what the project generates for a broker it starts: the cloud's
password, and a directory for Mosquitto's account file (so a broker restarted in
place keeps every device's account). Brokers started in this process are
remembered by address, so ``access_for(url)`` gives a cloud its credentials from
the plain URL devices use; another process gets them in the URL itself
(``BrokerServer.cloud_url``: ``mqtt://impcloud:PASSWORD@HOST:PORT``, plus
``?control=embedded`` for the embedded broker, whose control topic differs).
A broker named by a URL without credentials is taken as open: the cloud connects
anonymously and creates no accounts (and says so in its log).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pwd
import secrets
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, quote, unquote, urlsplit

from impfactory.cloud.errors import BrokerError
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linksec

CLOUD_USER: Final = "impcloud"
DYNSEC_TOPIC: Final = "$CONTROL/dynamic-security/v1"
EMBEDDED_TOPIC: Final = "impfactory/control/dynamic-security/v1"
"""amqtt refuses client publishes to ``$`` topics, so its control topic has none."""
PBKDF2_ITERATIONS: Final = 101
"""What Mosquitto's dynamic-security plugin uses for the accounts it creates."""

CLOUD_READS = (cl.CLOUD_FILTER, linksec.ENROL_REQUEST_FILTER)
CLOUD_WRITES = (f"{cl.PREFIX}/+/down/#", f"{linksec.ENROL_PREFIX}/+/registered")


@dataclass(frozen=True)
class BrokerAccess:
    """What a cloud needs to use a broker: where, as whom, and how to add accounts."""

    url: str
    username: str | None = None
    password: str | None = None
    control: str | None = None  # "dynsec" | "embedded" | None (open broker)

    @property
    def secured(self) -> bool:
        return self.username is not None and self.control is not None

    @property
    def control_topic(self) -> str:
        return EMBEDDED_TOPIC if self.control == "embedded" else DYNSEC_TOPIC

    @property
    def response_topic(self) -> str:
        return self.control_topic + "/response"

    @property
    def cloud_url(self) -> str:
        """The URL with the cloud's credentials, for a cloud in another process."""
        if self.username is None:
            return self.url
        parts = urlsplit(self.url)
        user = quote(self.username, safe="")
        password = quote(self.password or "", safe="")
        query = "?control=embedded" if self.control == "embedded" else ""
        return f"mqtt://{user}:{password}@{parts.hostname}:{parts.port}{query}"

    @classmethod
    def from_url(cls, url: str) -> BrokerAccess:
        """Credentials in the URL, else those of a broker this process started, else open."""
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname:
            raise BrokerError(f"broker URL must be mqtt://HOST:PORT, got {safe_url(url)!r}")
        try:
            port = parts.port or 1883
        except ValueError as err:
            raise BrokerError(f"bad port in broker URL {safe_url(url)!r}") from err
        plain = f"mqtt://{parts.hostname}:{port}"
        if parts.username is not None:
            control = parse_qs(parts.query).get("control", ["dynsec"])[0]
            if control not in ("dynsec", "embedded"):
                raise BrokerError(f"unknown broker control {control!r}: dynsec or embedded")
            return cls(plain, unquote(parts.username), unquote(parts.password or ""), control)
        realm = _REALMS.get((parts.hostname, port))
        if realm is not None:
            return realm.access(plain)
        return cls(plain)


def safe_url(url: str) -> str:
    """A URL fit for a log line: any password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


@dataclass
class Realm:
    """The accounts of one broker the project runs (kept across restarts in place)."""

    kind: str  # "mosquitto" | "embedded"
    cloud_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    accounts: Any = None  # the embedded broker's AccountTable (cloud/broker_embedded.py)
    _dir: tempfile.TemporaryDirectory[str] | None = None

    def access(self, url: str) -> BrokerAccess:
        control = "embedded" if self.kind == "embedded" else "dynsec"
        return BrokerAccess(url, CLOUD_USER, self.cloud_password, control)

    @property
    def directory(self) -> Path:
        """Where Mosquitto keeps this realm's accounts (lives as long as the realm)."""
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="impfactory-broker-")
        return Path(self._dir.name)

    def mosquitto_files(self) -> tuple[Path, Path]:
        """(dynamic-security account file, ACL file); the account file is written once
        and then belongs to Mosquitto, which adds every device's account to it."""
        accounts = self.directory / "dynamic-security.json"
        acl = self.directory / "acl"
        if not accounts.exists():
            _write_private(accounts, json.dumps(dynsec_config(self.cloud_password), indent=1))
        _write_private(acl, acl_file())
        return accounts, acl


_REALMS: dict[tuple[str, int], Realm] = {}
_REALMS_LOCK = threading.Lock()


def realm_for(host: str, port: int | None, kind: str) -> Realm:
    """The realm of a broker about to start: the old one when restarting in place."""
    with _REALMS_LOCK:
        if port is not None:
            found = _REALMS.get((host, port))
            if found is not None and found.kind == kind:
                return found
        return Realm(kind)


def remember(host: str, port: int, realm: Realm) -> None:
    """Remember a started broker's realm, so ``BrokerAccess.from_url`` finds it."""
    with _REALMS_LOCK:
        _REALMS[(host, port)] = realm


def access_for(url: str) -> BrokerAccess:
    return BrokerAccess.from_url(url)


# ---------------------------------------------------------------- Mosquitto's files


def password_record(password: str, salt: bytes | None = None,
                    iterations: int = PBKDF2_ITERATIONS) -> dict[str, Any]:
    """A password as the dynamic-security plugin stores it (PBKDF2-SHA512, 12-byte salt)."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return {"password": base64.b64encode(digest).decode(),
            "salt": base64.b64encode(salt).decode(), "iterations": iterations}


def dynsec_config(cloud_password: str) -> dict[str, Any]:
    """The dynamic-security plugin's starting accounts: the cloud and the enrolment slots.

    Authorisation of ordinary topics is left to the ACL file: every default access
    is ``false``, so the plugin defers whatever its roles do not name.
    """
    clients: list[dict[str, Any]] = [
        {"username": CLOUD_USER, "textname": "the impCloud", **password_record(cloud_password),
         "roles": [{"rolename": "broker-control"}]},
    ]
    enrol = password_record(linksec.ENROL_PASSWORD)
    for slot in linksec.slot_names():
        clients.append({"username": slot, "clientid": slot, "textname": "enrolment slot",
                        **enrol})
    control = [{"acltype": acltype, "topic": topic, "allow": True}
               for acltype, topic in (("publishClientSend", DYNSEC_TOPIC),
                                      ("publishClientReceive", DYNSEC_TOPIC + "/response"),
                                      ("subscribePattern", DYNSEC_TOPIC + "/response"),
                                      ("unsubscribePattern", DYNSEC_TOPIC + "/response"))]
    return {"clients": clients, "groups": [],
            "roles": [{"rolename": "broker-control", "acls": control}],
            "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                                 "subscribe": False, "unsubscribe": False}}


def acl_file() -> str:
    """Mosquitto's ACL file: the cloud's topics, the slots', and each device's by pattern."""
    lines = ["# generated by impfactory: dynamic-security authenticates, this file authorises",
             f"user {CLOUD_USER}"]
    lines += [f"topic read {t}" for t in CLOUD_READS]
    lines += [f"topic write {t}" for t in CLOUD_WRITES]
    for slot in linksec.slot_names():
        # the patterns below apply to every user: an enrolment slot is no device
        lines += ["", f"user {slot}", f"topic deny {cl.PREFIX}/#",
                  f"topic write {linksec.request_topic(slot)}",
                  f"topic read {linksec.answer_topic(slot)}"]
    lines += ["", "# every other account is a device, named by its device ID",
              f"pattern write {cl.PREFIX}/%u/up/#",
              f"pattern read {cl.PREFIX}/%u/down/#"]
    return "\n".join(lines) + "\n"


def mosquitto_user() -> str:
    """Run Mosquitto as whoever starts it (as root it would switch to ``mosquitto``,
    which could not write the account file in our private directory)."""
    return pwd.getpwuid(os.geteuid()).pw_name


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
