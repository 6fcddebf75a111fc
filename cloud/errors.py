"""The cloud's typed errors, each also the built-in it resembles.

The REST layer maps them to HTTP statuses (NotFound 404, Forbidden 403, Conflict
409, Invalid 400); the device link maps them to ``error`` replies.
"""

from __future__ import annotations

from impfactory.errors import ImpFactoryError


class CloudError(ImpFactoryError):
    """Base of everything the cloud refuses on purpose."""


class InvalidError(CloudError, ValueError):
    """The request is malformed or breaks a rule (bad type, missing target, wrong zone)."""


class NotFoundError(CloudError, LookupError):
    """No such account, product, group, deployment, device, token or webhook."""


class ForbiddenError(CloudError, PermissionError):
    """The caller may not do this (role, unbond key, production-group assignment)."""


class ConflictError(CloudError, ValueError):
    """The request contradicts current state (already blessed, token used, name taken)."""


class TokenError(CloudError, ValueError):
    """An enrolment token that cannot be used: unknown, forged, expired or used."""

    def __init__(self, message: str, code: str = "token_invalid") -> None:
        super().__init__(message)
        self.code = code


class BrokerError(CloudError, OSError):
    """The MQTT broker could not be started or reached."""


class StoreError(CloudError, OSError):
    """The database file cannot be opened or is not a cloud database."""
