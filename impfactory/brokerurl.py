"""Broker URLs, parsed in one place: ``mqtt://[user:password@]host[:port]``.

Clouds, lines, the floor, emulated imps and the test double are all given a broker
as a URL; each used to pick it apart itself, one of them crashing on a URL without
a port. Everything now asks here, and a bad URL is a typed error that names the URL
with its password hidden.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from impfactory.errors import ImpFactoryError

DEFAULT_PORT = 1883
"""MQTT's registered port, for a URL that names none."""


class BrokerUrlError(ImpFactoryError, ValueError):
    """Not an ``mqtt://HOST[:PORT]`` URL."""


def parse_url(url: str) -> tuple[str, int]:
    """``mqtt://[user:password@]host[:port]`` -> (host, port), or ``BrokerUrlError``."""
    try:
        parts = urlsplit(url)
    except (ValueError, TypeError, AttributeError) as err:
        raise BrokerUrlError(f"bad broker URL {safe_url(url)!r}: {err}") from None
    try:
        port = parts.port
    except ValueError as err:
        raise BrokerUrlError(f"bad port in broker URL {safe_url(url)!r}: {err}") from None
    if parts.scheme != "mqtt" or not parts.hostname:
        raise BrokerUrlError(f"broker URL must be mqtt://HOST:PORT, got {safe_url(url)!r}")
    return parts.hostname, DEFAULT_PORT if port is None else port


def login(url: str) -> tuple[str, str] | None:
    """The (user, password) a broker URL carries, percent-decoded; None without a user.
    Parse the URL with ``parse_url`` first: this one only reads the login."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    return unquote(parts.username), unquote(parts.password or "")


def safe_url(url: str) -> str:
    """A URL fit for a log line: any password replaced."""
    try:
        password = urlsplit(url).password
    except (ValueError, TypeError, AttributeError):
        return "<unparseable URL>"
    if password is None:
        return url
    return url.replace(f":{password}@", ":***@", 1)
