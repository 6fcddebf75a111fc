"""Input checks the use cases share (names, group types, webhook fields)."""

from __future__ import annotations

from urllib.parse import urlsplit

from impfactory.cloud.errors import InvalidError, InvalidUrlError
from impfactory.cloud.model import WEBHOOK_CONTENT_TYPES, WEBHOOK_EVENTS, GroupType


def check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise InvalidError("a name must be 1-128 characters")


def group_type(value: GroupType | str) -> GroupType:
    try:
        return GroupType(value)
    except ValueError:
        raise InvalidError(f"unknown device group type {value!r}") from None


def is_webhook_url(url: object) -> bool:
    """An absolute http(s) URL with a host, of sane length."""
    if not isinstance(url, str) or len(url) > 2000:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_webhook(event: str, url: str, content_type: str) -> None:
    if event not in WEBHOOK_EVENTS:
        raise InvalidError(f"webhook event must be one of {', '.join(WEBHOOK_EVENTS)}")
    if not is_webhook_url(url):
        raise InvalidUrlError()
    if content_type not in WEBHOOK_CONTENT_TYPES:
        raise InvalidError(f"content_type must be one of {', '.join(WEBHOOK_CONTENT_TYPES)}")
