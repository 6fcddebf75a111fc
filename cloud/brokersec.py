"""Who may do what on the broker: accounts, access rules, and how a cloud gets its keys.

The broker's accounts (docs/cloud.md, "Broker security"):

==========================  ==================================  ==========================
account (MQTT username)     may publish                         may receive
==========================  ==================================  ==========================
``impcloud`` (the cloud)    ``imp/1/d/+/down/#``,               ``imp/1/d/+/up/#``,
                            ``imp/1/enrol/+/registered``,       ``imp/1/enrol/+/register``,
                            account commands                    their answers
``enrol-000`` .. ``-127``   ``imp/1/enrol/{itself}/register``   ``.../{itself}/registered``
``{device_id}``             ``imp/1/d/{itself}/up/#``           ``imp/1/d/{itself}/down/#``
``impfactory-accounts``     answers to account commands         account commands
``impcloud-1`` .. ``-7``    as ``impcloud``                     as ``impcloud``
``impfactory-line-0``..     ``impfactory/line/#``               ``impfactory/line/#``
==========================  ==================================  ==========================

Several cloud processes on one broker each log in with an account of their own
(``impcloud``, ``impcloud-1`` ..: same password, same rights), because the client
ID is the account's name and a second login would take the first one's session
over; they split the devices' traffic with shared subscriptions (cloud/link.py).
Line workers (``impfactory line worker``, protocol/linework.py) log in as
``impfactory-line-{n}``, which may use the line-work topics and nothing else.
The account agent's probe, ``impfactory-accounts-probe``, may only log in.

Anonymous clients are refused, and every client's MQTT client ID is its account's
name (Mosquitto: ``use_username_as_clientid``; the embedded broker refuses any
other), so nobody can take over another's session. The cloud adds a device's
account with a command on ``ACCOUNTS_TOPIC`` (cloud/brokeradmin.py); on the
embedded broker its security plugin answers, on Mosquitto the account agent
beside it (cloud/broker_accounts.py), which keeps Mosquitto's password file.

A ``Realm`` is what the project generates for a broker it starts: the cloud's and
the agent's passwords, and a private directory with the password and ACL files,
so a broker restarted in place keeps every device's account. Brokers started in
this process are remembered by address, so ``access_for(url)`` gives a cloud its
credentials from the plain URL devices use; another process gets them in the URL
itself (``BrokerServer.cloud_url``: ``mqtt://impcloud:PASSWORD@HOST:PORT``). A
broker named by a URL without credentials is taken as open: the cloud connects
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
from urllib.parse import quote, urlsplit

from impfactory.brokerurl import login, parse_url
from impfactory.cloud.errors import BrokerError
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linework, linksec

CLOUD_USER: Final = "impcloud"
AGENT_USER: Final = "impfactory-accounts"
PROBE_USER: Final = "impfactory-accounts-probe"
"""The agent's probe: a login that may do nothing, its password new in each batch, so
the agent sees when Mosquitto has loaded a batch's file (cloud/broker_accounts.py)."""
ACCOUNTS_TOPIC: Final = "impfactory/control/accounts/v1"
"""Account commands in the JSON of Mosquitto's dynamic-security plugin (``createClient``,
``setClientPassword``, ``deleteClient``), answered on ``ACCOUNTS_TOPIC/response``."""
RESPONSE_TOPIC: Final = ACCOUNTS_TOPIC + "/response"
CLOUD_SEATS: Final = 8
"""Cloud processes that may share one broker at once (``impcloud``, ``impcloud-1`` ..)."""
LINE_USER: Final = "impfactory-line"
LINE_SEATS: Final = 32
"""Line workers that may share one broker at once (``impfactory-line-0`` ..)."""
LINE_TOPICS: Final = f"{linework.PREFIX}/#"
REALM_FILE: Final = "realm.json"


def cloud_users() -> list[str]:
    """The cloud's accounts: one per cloud process sharing the broker."""
    return [CLOUD_USER] + [f"{CLOUD_USER}-{k}" for k in range(1, CLOUD_SEATS)]


def line_users() -> list[str]:
    return [f"{LINE_USER}-{k}" for k in range(LINE_SEATS)]

AGENT_EVENTS = "impfactory/cloud/1/+/agents"
"""Agent events a share group's clouds relay to its agent cloud (cloud/agent_relay.py)."""
CLOUD_READS = (cl.CLOUD_FILTER, linksec.ENROL_REQUEST_FILTER, RESPONSE_TOPIC, AGENT_EVENTS)
CLOUD_WRITES = (f"{cl.PREFIX}/+/down/#", f"{linksec.ENROL_PREFIX}/+/registered", ACCOUNTS_TOPIC,
                AGENT_EVENTS)


@dataclass(frozen=True)
class BrokerAccess:
    """What a cloud needs to use a broker: where, and as whom (None: an open broker)."""

    url: str
    username: str | None = None
    password: str | None = None
    keeps_sessions: bool = True
    """The broker keeps the cloud's session while it is away (Mosquitto does; the
    embedded broker refuses persistent sessions, and lives and dies with its cloud)."""

    @property
    def secured(self) -> bool:
        return self.username is not None

    @property
    def cloud_url(self) -> str:
        """The URL with the cloud's credentials, for a cloud in another process."""
        if self.username is None:
            return self.url
        parts = urlsplit(self.url)
        user = quote(self.username, safe="")
        password = quote(self.password or "", safe="")
        return f"mqtt://{user}:{password}@{parts.hostname}:{parts.port}"

    def seat(self, n: int) -> BrokerAccess:
        """The same cloud credentials as account ``n`` (0: ``impcloud``), for the n-th
        cloud process sharing this broker."""
        if self.username is None or n == 0:
            return self
        if not 0 < n < CLOUD_SEATS:
            raise BrokerError(f"cloud seat {n} is not within 0..{CLOUD_SEATS - 1}")
        return BrokerAccess(self.url, f"{CLOUD_USER}-{n}", self.password)

    @classmethod
    def from_url(cls, url: str) -> BrokerAccess:
        """Credentials in the URL, else those of a broker this process started, else open."""
        host, port = parse_url(url)
        plain = f"mqtt://{host}:{port}"
        known = _REALMS.get((host, port))
        given = login(url)
        if given is not None:
            keeps = not isinstance(known, Realm) or known.kind == "mosquitto"
            return cls(plain, *given, keeps_sessions=keeps)
        if isinstance(known, Realm):
            return known.access(plain)
        return known if known is not None else cls(plain)


@dataclass
class Realm:
    """The accounts of one broker the project runs (kept across restarts in place)."""

    kind: str  # "mosquitto" | "embedded"
    cloud_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    agent_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    line_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    accounts: Any = None  # AccountTable (embedded) or AccountFile (Mosquitto)
    _dir: tempfile.TemporaryDirectory[str] | None = None
    home: Path | None = None
    """A directory of its own (``broker serve --dir``, a cloud's ``<db>.broker``) that
    outlives the process: the secrets, the port and Mosquitto's files stay there."""
    port: int | None = None
    """Where the broker last listened (a broker restarted from ``home`` tries it first)."""

    @classmethod
    def kept_in(cls, home: Path, kind: str) -> Realm:
        """The realm kept in ``home`` (made, with fresh secrets, when there is none).

        A broker restarted from the same directory keeps its passwords, its port
        (when free) and every device's account, so devices and clouds find it again."""
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        state = home / REALM_FILE
        try:
            saved = json.loads(state.read_text()) if state.exists() else {}
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            raise BrokerError(f"unreadable broker state {state}: {err}") from err
        realm = cls(kind, home=home)
        if saved.get("kind") == kind:
            realm.cloud_password = str(saved.get("cloud_password") or realm.cloud_password)
            realm.agent_password = str(saved.get("agent_password") or realm.agent_password)
            realm.line_password = str(saved.get("line_password") or realm.line_password)
            port = saved.get("port")
            realm.port = port if isinstance(port, int) and 0 < port < 65536 else None
        realm.save()
        return realm

    def save(self) -> None:
        """Keep the secrets and the port in ``home`` (nothing without one)."""
        if self.home is not None:
            write_private(self.home / REALM_FILE, json.dumps({
                "kind": self.kind, "cloud_password": self.cloud_password,
                "agent_password": self.agent_password, "line_password": self.line_password,
                "port": self.port}))

    def access(self, url: str) -> BrokerAccess:
        return BrokerAccess(url, CLOUD_USER, self.cloud_password,
                            keeps_sessions=self.kind == "mosquitto")

    def line_access(self, url: str, n: int) -> BrokerAccess:
        """Line worker ``n``'s account on this broker."""
        if not 0 <= n < LINE_SEATS:
            raise BrokerError(f"line seat {n} is not within 0..{LINE_SEATS - 1}")
        return BrokerAccess(url, f"{LINE_USER}-{n}", self.line_password)

    @property
    def directory(self) -> Path:
        """Where Mosquitto's password and ACL files live (as long as the realm, or in
        ``home``)."""
        if self.home is not None:
            return self.home
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="impfactory-broker-")
        return Path(self._dir.name)

    def fixed_accounts(self) -> dict[str, str]:
        """Password-file lines of the accounts every broker starts with."""
        lines = {user: password_line(user, self.cloud_password) for user in cloud_users()}
        lines[AGENT_USER] = password_line(AGENT_USER, self.agent_password)
        lines.update((user, password_line(user, self.line_password)) for user in line_users())
        for slot in linksec.slot_names():
            lines[slot] = password_line(slot, linksec.ENROL_PASSWORD)
        return lines


_REALMS: dict[tuple[str, int], Realm | BrokerAccess] = {}
_REALMS_LOCK = threading.Lock()


def realm_for(host: str, port: int | None, kind: str) -> Realm:
    """The realm of a broker about to start: the old one when restarting in place."""
    with _REALMS_LOCK:
        if port is not None:
            found = _REALMS.get((host, port))
            if isinstance(found, Realm) and found.kind == kind:
                return found
        return Realm(kind)


def remember(host: str, port: int, realm: Realm | BrokerAccess) -> None:
    """Remember a started broker's realm (or an outside broker's credentials, given
    once in its URL), so ``BrokerAccess.from_url`` finds them from the plain URL."""
    with _REALMS_LOCK:
        if isinstance(realm, BrokerAccess) and isinstance(_REALMS.get((host, port)), Realm):
            return  # a broker this process runs: its realm says more
        _REALMS[(host, port)] = realm


def access_for(url: str) -> BrokerAccess:
    return BrokerAccess.from_url(url)


def line_access_for(url: str, n: int) -> BrokerAccess | None:
    """Line account ``n`` on the broker at ``url``, when this process started it (an
    open broker needs none: anonymous); None when only the broker's operator knows it."""
    host, port = parse_url(url)
    plain = f"mqtt://{host}:{port}"
    known = _REALMS.get((host, port))
    if isinstance(known, Realm):
        return known.line_access(plain, n)
    if known is None and login(url) is None:
        return BrokerAccess(plain)
    return None


# ---------------------------------------------------------------- Mosquitto's files


def password_line(username: str, password: str, iterations: int = 1) -> str:
    """One line of a Mosquitto password file (``$7$``: PBKDF2-SHA512, 12-byte salt).

    Every password here is random or public, so one iteration is enough: stretching
    protects guessable passwords, and Mosquitto hashes each login with the count given.
    """
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (f"{username}:$7${iterations}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


def acl_file() -> str:
    """Mosquitto's ACL file: the cloud's topics, the agent's, the slots', and each
    device's by pattern (``%u``: the account's name, which is also its client ID)."""
    lines = ["# generated by impfactory: the password file authenticates, this file authorises"]
    for user in cloud_users():
        lines += [f"user {user}"]
        lines += [f"topic read {t}" for t in CLOUD_READS]
        lines += [f"topic write {t}" for t in CLOUD_WRITES]
        lines += [""]
    for user in line_users():
        lines += [f"user {user}", f"topic deny {cl.PREFIX}/#", f"topic readwrite {LINE_TOPICS}",
                  ""]
    # the patterns at the end apply to every user: the agent and the slots are no devices
    lines += [f"user {AGENT_USER}", f"topic deny {cl.PREFIX}/#",
              f"topic read {ACCOUNTS_TOPIC}", f"topic write {RESPONSE_TOPIC}"]
    lines += ["", f"user {PROBE_USER}", "topic deny #"]
    for slot in linksec.slot_names():
        lines += ["", f"user {slot}", f"topic deny {cl.PREFIX}/#",
                  f"topic write {linksec.request_topic(slot)}",
                  f"topic read {linksec.answer_topic(slot)}"]
    lines += ["", "# every other account is a device, named by its device ID",
              f"pattern write {cl.PREFIX}/%u/up/#",
              f"pattern read {cl.PREFIX}/%u/down/#"]
    return "\n".join(lines) + "\n"


def mosquitto_user() -> str:
    """Run Mosquitto as whoever starts it (as root it would switch to ``mosquitto``,
    which could not read the files in our private directory)."""
    return pwd.getpwuid(os.geteuid()).pw_name


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, readable by its owner only."""
    tmp = path.with_name(f".{path.name}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
