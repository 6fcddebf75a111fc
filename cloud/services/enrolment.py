"""BlinkUp enrolment: the tokens (factory, production, development) and what a
device presenting one becomes (a DUT, an activated product, a developer's device)."""

from __future__ import annotations

import secrets

from impfactory.cloud.errors import TokenError
from impfactory.cloud.model import Device, Token, TokenKind
from impfactory.cloud.services.context import Context, agent_id_for

PRODUCTION_TOKEN_TTL = 7 * 86400.0


class Enrolment:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tokens = ctx.repos.tokens
        self.devices = ctx.repos.devices

    # -- tokens ---------------------------------------------------------------------

    def create_production_token(self, owner_id: str, plan_id: str | None = None,
                                ttl: float = PRODUCTION_TOKEN_TTL) -> Token:
        """An end user's BlinkUp enrolment (plan ID + token) for a production device."""
        return self._new_token(TokenKind.PRODUCTION, owner_id,
                               plan_id or secrets.token_hex(8), None, ttl)

    def create_development_token(self, owner_id: str, ttl: float = 3600.0) -> Token:
        """A developer's BlinkUp enrolment: adds a device to the owner's account."""
        return self._new_token(TokenKind.DEVELOPMENT, owner_id,
                               self.ctx.owner(owner_id).plan_id, None, ttl)

    def create_factory_token(self, fixture: Device) -> Token:
        assert fixture.owner_id is not None
        return self._new_token(TokenKind.FACTORY, fixture.owner_id,
                               self.ctx.owner(fixture.owner_id).plan_id, fixture.id,
                               self.ctx.factory_token_ttl)

    def _new_token(self, kind: TokenKind, owner_id: str, plan_id: str, fixture_id: str | None,
                   ttl: float) -> Token:
        now = self.ctx.now()
        token = Token(secrets.token_hex(8), kind, plan_id, owner_id, fixture_id, now + ttl,
                      None, None, now)
        with self.ctx.tx():
            self.tokens.add(token)
        return token

    def get_token(self, token: str) -> Token | None:
        return self.tokens.get(token)

    # -- enrolling ------------------------------------------------------------------

    def enrol(self, device: Device, plan_id: str, token_text: str) -> None:
        """The device presented (plan ID, token): check the token, enrol the device as
        the token's kind says, spend the token; all in one transaction."""
        with self.ctx.tx():
            token = self.tokens.get(token_text)
            if token is None or token.plan_id != plan_id:
                raise TokenError("unknown enrolment token", "token_invalid")
            if token.used_at is not None:
                if token.used_by == device.id:
                    return  # the same device presenting its own token again: already enrolled
                raise TokenError("enrolment token already used", "token_used")
            if token.expires_at is not None and self.ctx.now() > token.expires_at:
                raise TokenError("enrolment token expired", "token_expired")
            enrol = {
                TokenKind.FACTORY: self._factory,
                TokenKind.PRODUCTION: self._production,
                TokenKind.DEVELOPMENT: self._development,
            }[token.kind]
            enrol(device, token.owner_id, plan_id, token.fixture_id, token_text)
            self.tokens.used(token_text, device.id, self.ctx.now())

    def _factory(self, device: Device, owner_id: str, plan_id: str, fixture_id: str | None,
                 token: str) -> None:
        ctx = self.ctx
        fixture = self.devices.get(fixture_id) if fixture_id else None
        group = ctx.group(fixture.group_id) if fixture and fixture.group_id else None
        if group is None or not group.type.is_fixture:
            raise TokenError("the token's fixture is no longer in a factory fixture group")
        if device.blessed:
            ctx.log(device.id, "Factory BlinkUp of a blessed device: it stays blessed")
            return
        assert group.dut_target is not None and fixture_id is not None
        dut_group = ctx.group(group.dut_target)
        self.devices.enrolled_in_factory(device.id, owner_id, dut_group.id,
                                         dut_group.product_id, plan_id,
                                         agent_id_for(device.id, plan_id), fixture_id, group.id,
                                         ctx.now())
        ctx.log(device.id, f"Factory BlinkUp by fixture {fixture_id}: assigned to DUT "
                           f"group {dut_group.name}")

    def _production(self, device: Device, owner_id: str, plan_id: str, fixture_id: str | None,
                    token: str) -> None:
        ctx = self.ctx
        if not device.blessed or device.owner_id != owner_id:
            raise TokenError("production BlinkUp is for this account's blessed devices")
        self.devices.activated(device.id, plan_id, agent_id_for(device.id, plan_id), ctx.now())
        if device.group_id:
            ctx.queue_webhooks(device.group_id, "blinkup",
                               {"device_id": device.id, "plan_id": plan_id,
                                "token": token, "timestamp": ctx.now()})
        ctx.log(device.id, f"End-user BlinkUp: plan {plan_id}")

    def _development(self, device: Device, owner_id: str, plan_id: str, fixture_id: str | None,
                     token: str) -> None:
        ctx = self.ctx
        if device.owner_id not in (None, owner_id):
            raise TokenError("the device belongs to another account")
        self.devices.owned(device.id, owner_id, plan_id, agent_id_for(device.id, plan_id),
                           ctx.now())
        ctx.log(device.id, "Developer BlinkUp: device added to the account")
