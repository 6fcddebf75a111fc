"""The cloud's typed errors, each also the built-in it resembles.

Each class says how the REST API answers it: ``http_status`` and ``code`` become
the JSON:API error's status and code (NotFound 404, Forbidden 403, Conflict 409,
Invalid 400), so no layer maps errors by class name. The device link maps them to
``error`` replies.

Where impCentral answers a refusal with a title and detail that Electric Imp's own
clients show or match on (``impt`` prints ``title: detail``; its test suite expects
``Duplicate Resource: Products must have unique names.`` and the like), the error
carries that ``title`` and its message is impCentral's detail, word for word; the
REST layer puts both into the JSON:API error.
"""

from __future__ import annotations

from impfactory.errors import ImpFactoryError


class CloudError(ImpFactoryError):
    """Base of everything the cloud refuses on purpose.

    ``title`` (``None``: the status's generic one) is impCentral's error title where
    it is known, and the message is then impCentral's detail.
    """

    title: str | None = None
    http_status: int = 400
    """The HTTP status the REST API answers this refusal with."""
    code: str = "Invalid"
    """The JSON:API error code the REST API gives it."""


class InvalidError(CloudError, ValueError):
    """The request is malformed or breaks a rule (bad type, missing target, wrong zone)."""


class NotFoundError(CloudError, LookupError):
    """No such account, product, group, deployment, device, token or webhook."""

    http_status = 404
    code = "NotFound"


class ForbiddenError(CloudError, PermissionError):
    """The caller may not do this (role, unbond key, production-group assignment)."""

    http_status = 403
    code = "Forbidden"


class ConflictError(CloudError, ValueError):
    """The request contradicts current state (already blessed, token used, name taken)."""

    http_status = 409
    code = "Conflict"


class TokenError(CloudError, ValueError):
    """An enrolment token that cannot be used: unknown, forged, expired or used."""

    code = "token_invalid"

    def __init__(self, message: str, code: str = "token_invalid") -> None:
        super().__init__(message)
        self.code = code


class BrokerError(CloudError, OSError):
    """The MQTT broker could not be started or reached."""

    http_status = 503
    code = "BrokerUnavailable"


class StoreError(CloudError, OSError):
    """The database file cannot be opened or is not a cloud database."""

    http_status = 503
    code = "StoreUnavailable"

class DuplicateNameError(ConflictError):
    """A product name taken in the account, or a device group name in the product."""

    title = "Duplicate Resource"
    code = "DuplicateResource"

    def __init__(self, kind: str) -> None:
        super().__init__(f"{kind}s must have unique names.")


class DependentGroupsError(ConflictError):
    """A product still has device groups."""

    title = "Dependent Devicegroups Exist"
    code = "DependentDevicegroupsExist"

    def __init__(self) -> None:
        super().__init__("Cannot delete a product with associated devicegroups.")


class FlaggedDeploymentsError(ConflictError):
    """A device group still has flagged deployments."""

    title = "Flagged Deployments Exist"
    code = "FlaggedDeploymentsExist"

    def __init__(self) -> None:
        super().__init__("Cannot delete a devicegroup with flagged deployments; "
                         "delete those first.")


class ResourceFlaggedError(ConflictError):
    """A flagged deployment cannot be deleted."""

    title = "Resource Flagged"
    code = "ResourceFlagged"

    def __init__(self) -> None:
        super().__init__("You cannot delete flagged deployments; set the flagged attribute "
                         "to false and try again.")


class InvalidUrlError(InvalidError):
    """A webhook URL that is not an absolute http(s) URL."""

    title = "Invalid URL"
    code = "InvalidURL"

    def __init__(self) -> None:
        super().__init__("The provided URL is invalid.")
