"""``/enrolment_tokens`` (an extension): what a BlinkUp adding a device to an account needs.

impCentral's mobile app asks the cloud for the owner's plan ID and a fresh
enrolment token, then flashes both into the device; a factory operator does the
same with targeted BlinkUp to add a fixture to the owner's account. This is the
one call a ``blinkup_device`` collaborator may make besides reading its own
account; ``impfactory floor`` uses it for new imps.

With ``{"data": {"type": "enrolment_token", "attributes": {"kind": "production"}}}``
the owner gets instead what an end user's BlinkUp of a blessed production device
carries (a production plan ID and token): the device's next connection with it is
its activation, which fires the ``blinkup`` webhook and, where the production
group waits for it, loads the application.
"""

from __future__ import annotations

from typing import Literal

from msgspec import UNSET, Struct, UnsetType

from impfactory.cloud.api import ANY_ROLE, OWNER, Answer, Call, Router
from impfactory.cloud.api_context import ApiContext
from impfactory.cloud.api_jsonapi import Forbidden, iso, rel, resource
from impfactory.cloud.api_models import ResourceBody


class EnrolmentTokenAttributes(Struct, forbid_unknown_fields=True):
    """``production``: what an end user's BlinkUp of a blessed device carries (owner only)."""

    kind: Literal["development", "production"] | UnsetType = UNSET


CREATE = ResourceBody.of("EnrolmentTokenCreate", "enrolment_token", EnrolmentTokenAttributes,
                         None, required=False)


def register(router: Router, ctx: ApiContext) -> None:
    """Add the enrolment token route."""

    def create(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        body = call.body()
        kind = "development"
        if body is not None:
            kind = CREATE.parse(body).attrs.get("kind", kind)
        if kind == "production":
            if call.account.role != OWNER:
                raise Forbidden("only the owner mints production (end-user) tokens",
                                code="RoleForbidden")
            token = ctx.svc.create_production_token(owner)
        else:
            token = ctx.svc.create_development_token(owner)
        return Answer(201, {"data": resource("enrolment_token", token.token, {
            "kind": kind, "plan_id": token.plan_id, "token": token.token,
            "expires_at": iso(token.expires_at) if token.expires_at else None,
        }, {"owner": rel("account", owner), "creator": rel("account", call.account.id)})})

    router.add("POST", "/enrolment_tokens", create,
               "Extension: the owner's plan ID and a single-use token to BlinkUp a device "
               "into the account (owner and blinkup_device collaborators)", roles=ANY_ROLE,
               body=CREATE)
