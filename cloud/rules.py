"""The factory flow rules: what the cloud answers each device message.

``DeviceRules.handle(msg)`` takes one decoded ``up`` message and returns the
``down`` messages to publish, in order; it does no I/O beyond the store, so the
rules are tested without a broker as well as over one. Each message is one
transaction. A request the rules refuse is answered with ``error`` (hello,
factory token, chunks) or ``bless_answer {blessed: false}`` (bless), as the imp
API reports it.

Dispatch is a table from message class to handler; a class without a handler is
an error, never silence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from impfactory.cloud import offers
from impfactory.cloud.errors import CloudError, NotFoundError, TokenError
from impfactory.cloud.model import Device, TokenKind
from impfactory.cloud.service import CloudService, agent_id_for
from impfactory.protocol import cloudlink as cl

log = logging.getLogger(__name__)

Handler = Callable[[Any], list[cl.Message]]


class DeviceRules:
    """The device-facing half of the cloud, on top of ``CloudService``."""

    def __init__(self, service: CloudService) -> None:
        self.svc = service
        self._handlers: dict[type[cl.Message], Handler] = {
            cl.Hello: self.hello,
            cl.StateReport: self.state,
            cl.Log: self.log,
            cl.FactoryTokenRequest: self.factory_token,
            cl.ChunkRequest: self.chunks,
            cl.BlessRequest: self.bless,
            cl.Bye: self.bye,
            cl.AgentMessage: self.agent_message,
        }

    def handle(self, msg: cl.Message) -> list[cl.Message]:
        """Answer one device message; refusals become ``error`` replies, never exceptions."""
        handler = self._handlers.get(type(msg))
        if handler is None:
            return [_error(msg, cl.ErrorCode.BAD_REQUEST, f"{msg.KIND} is not a request")]
        try:
            return handler(msg)
        except TokenError as err:
            self.svc.append_log(msg.device_id, f"Enrolment refused: {err}")
            return [_error(msg, cl.ErrorCode(err.code), str(err))]
        except NotFoundError as err:
            return [_error(msg, cl.ErrorCode.NOT_FOUND, str(err))]
        except CloudError as err:
            return [_error(msg, cl.ErrorCode.BAD_REQUEST, str(err))]

    # ------------------------------------------------------------ hello / enrolment

    def hello(self, m: cl.Hello) -> list[cl.Message]:
        svc = self.svc
        if (m.plan_id is None) != (m.token is None):
            raise TokenError("plan ID and token come together")
        now = svc.now()
        with svc.tx() as db:
            known = svc.find_device(m.device_id)
            if known is None:
                db.execute("INSERT INTO devices (id, mac, created_at) VALUES (?,?,?)",
                           (m.device_id, m.mac, now))
            elif known.mac != m.mac:  # a MAC is burnt into the module: it never changes
                svc.append_log(m.device_id, f"hello with MAC {m.mac} ignored: the device's "
                                            f"MAC is {known.mac}")
            db.execute(
                "UPDATE devices SET imp_type=?, impos_version=?, deployment_id=?,"
                " online=1, connection='SERVER_CONNECTED', last_seen=? WHERE id=?",
                (m.imp_type, m.impos_version, m.deployment, now, m.device_id),
            )
            if m.token is not None and m.plan_id is not None:
                self._enrol(svc.get_device(m.device_id), m.plan_id, m.token)
            device = svc.get_device(m.device_id)
            replies: list[cl.Message] = [
                cl.Welcome(device_id=device.id, req=m.req, plan_id=device.plan_id,
                           agent_id=device.agent_id, agent_url=svc.agent_url(device.agent_id),
                           blessed=device.blessed),
                *offers.assignment_messages(svc, device),
            ]
        svc.agents.device_changed(m.device_id)
        return replies

    def _enrol(self, device: Device, plan_id: str, token_text: str) -> None:
        svc = self.svc
        token = svc.get_token(token_text)
        if token is None or token.plan_id != plan_id:
            raise TokenError("unknown enrolment token", "token_invalid")
        if token.used_at is not None:
            if token.used_by == device.id:
                return  # the same device presenting its own token again: already enrolled
            raise TokenError("enrolment token already used", "token_used")
        if token.expires_at is not None and svc.now() > token.expires_at:
            raise TokenError("enrolment token expired", "token_expired")
        enrol = {
            TokenKind.FACTORY: self._enrol_factory,
            TokenKind.PRODUCTION: self._enrol_production,
            TokenKind.DEVELOPMENT: self._enrol_development,
        }[token.kind]
        enrol(device, token.owner_id, plan_id, token.fixture_id, token_text)
        svc.db.execute("UPDATE tokens SET used_at=?, used_by=? WHERE token=?",
                       (svc.now(), device.id, token_text))

    def _enrol_factory(self, device: Device, owner_id: str, plan_id: str,
                       fixture_id: str | None, token: str) -> None:
        svc = self.svc
        fixture = svc.find_device(fixture_id) if fixture_id else None
        group = svc.get_group(fixture.group_id) if fixture and fixture.group_id else None
        if group is None or not group.type.is_fixture:
            raise TokenError("the token's fixture is no longer in a factory fixture group")
        if device.blessed:
            svc.append_log(device.id, "Factory BlinkUp of a blessed device: it stays blessed")
            return
        assert group.dut_target is not None
        dut_group = svc.get_group(group.dut_target)
        svc.db.execute(
            "UPDATE devices SET owner_id=?, group_id=?, product_id=?, plan_id=?, agent_id=?,"
            " fixture_id=?, factory_group_id=?, activated=0, last_enrolled_at=? WHERE id=?",
            (owner_id, dut_group.id, dut_group.product_id, plan_id,
             agent_id_for(device.id, plan_id), fixture_id, group.id, svc.now(), device.id),
        )
        svc.append_log(device.id, f"Factory BlinkUp by fixture {fixture_id}: assigned to DUT "
                                  f"group {dut_group.name}")

    def _enrol_production(self, device: Device, owner_id: str, plan_id: str,
                          fixture_id: str | None, token: str) -> None:
        svc = self.svc
        if not device.blessed or device.owner_id != owner_id:
            raise TokenError("production BlinkUp is for this account's blessed devices")
        svc.db.execute(
            "UPDATE devices SET plan_id=?, agent_id=?, activated=1, last_enrolled_at=?"
            " WHERE id=?", (plan_id, agent_id_for(device.id, plan_id), svc.now(), device.id))
        if device.group_id:
            svc._queue_webhooks(device.group_id, "blinkup",
                                {"device_id": device.id, "plan_id": plan_id,
                                 "token": token, "timestamp": svc.now()})
        svc.append_log(device.id, f"End-user BlinkUp: plan {plan_id}")

    def _enrol_development(self, device: Device, owner_id: str, plan_id: str,
                           fixture_id: str | None, token: str) -> None:
        svc = self.svc
        if device.owner_id not in (None, owner_id):
            raise TokenError("the device belongs to another account")
        svc.db.execute(
            "UPDATE devices SET owner_id=?, plan_id=?, agent_id=?, last_enrolled_at=? WHERE id=?",
            (owner_id, plan_id, agent_id_for(device.id, plan_id), svc.now(), device.id))
        svc.append_log(device.id, "Developer BlinkUp: device added to the account")

    # ------------------------------------------------------------ reports

    def state(self, m: cl.StateReport) -> list[cl.Message]:
        with self.svc.tx() as db:
            db.execute(
                "UPDATE devices SET connection=?, led=?, impos_version=?, deployment_id=?,"
                " online=1, last_seen=? WHERE id=?",
                (m.connection, m.led, m.impos_version, m.deployment, self.svc.now(),
                 m.device_id))
        self.svc.agents.device_changed(m.device_id)
        return []

    def log(self, m: cl.Log) -> list[cl.Message]:
        self.svc.append_log(m.device_id, m.msg, m.type.value)
        return []

    def agent_message(self, m: cl.AgentMessage) -> list[cl.Message]:
        self.svc.agent_message(m.device_id, m.name, m.value)
        return []

    def bye(self, m: cl.Bye) -> list[cl.Message]:
        with self.svc.tx() as db:
            db.execute("UPDATE devices SET online=0, connection=?, last_seen=? WHERE id=?",
                       (f"offline:{m.reason}"[:64], self.svc.now(), m.device_id))
        self.svc.agents.device_changed(m.device_id)
        return []

    # ------------------------------------------------------------ fixture

    def factory_token(self, m: cl.FactoryTokenRequest) -> list[cl.Message]:
        svc = self.svc
        device = svc.find_device(m.device_id)
        group = svc.get_group(device.group_id) if device and device.group_id else None
        if device is None or group is None or not group.type.is_fixture:
            svc.append_log(m.device_id, cl.FACTORY_REFUSED_LOG, cl.LogType.SERVER_ERROR.value)
            return [_error(m, cl.ErrorCode.NOT_FACTORY, cl.FACTORY_REFUSED_LOG)]
        token = svc.create_factory_token(device)
        return [cl.FactoryToken(device_id=m.device_id, req=m.req, plan_id=token.plan_id,
                                token=token.token, expires_in=svc.factory_token_ttl)]

    # ------------------------------------------------------------ images

    def chunks(self, m: cl.ChunkRequest) -> list[cl.Message]:
        images = self.svc.images
        if not self._offered(m.device_id, m.sha) or images.get(m.sha) is None:
            # an image the device was not offered is not there for it (nor said to exist)
            return [_error(m, cl.ErrorCode.UNKNOWN_IMAGE, f"no image {m.sha}")]
        out: list[cl.Message] = []
        for index in m.blocks:
            chunk = images.chunk(m.device_id, m.sha, index)
            if chunk is None:
                return [*out, _error(m, cl.ErrorCode.BAD_REQUEST, f"no block {index}")]
            out.append(chunk)
        return out

    def _offered(self, device_id: str, sha: str) -> bool:
        """May this device fetch image ``sha``? impOS releases: any real module; code:
        only the deployment it runs or should run (never-enrolled devices have none)."""
        svc = self.svc
        device = svc.find_device(device_id)
        if device is None:
            return False
        target = offers.target_deployment(svc, device)
        if target is not None and sha in (target.device_sha, target.agent_sha):
            return True  # what it should run: the common case, first
        running = svc.find_deployment(device.deployment_id)
        if running is not None and sha in (running.device_sha, running.agent_sha):
            return True
        return svc.is_impos_image(sha)

    # ------------------------------------------------------------ bless

    def bless(self, m: cl.BlessRequest) -> list[cl.Message]:
        svc = self.svc

        def answer(blessed: bool, reason: str = "") -> cl.BlessAnswer:
            return cl.BlessAnswer(device_id=m.device_id, req=m.req, blessed=blessed, reason=reason)

        with svc.tx() as db:
            device = svc.find_device(m.device_id)
            if device is None:
                return [answer(False, "unknown device")]
            if device.blessed:
                if m.attempt is not None and m.passed and m.attempt == db.execute(
                        "SELECT bless_attempt FROM devices WHERE id=?",
                        (device.id,)).fetchone()[0]:
                    # the answer to the call that blessed it was lost (a cloud crash, a
                    # dropped link): the same answer again, nothing blessed twice
                    return [answer(True), *offers.assignment_messages(svc, device)]
                svc.append_log(device.id, "Blessing refused: the device is already blessed")
                return [answer(False, "already blessed")]
            group = svc.get_group(device.group_id) if device.group_id else None
            if group is None or not group.type.is_dut:
                svc.append_log(device.id, "Blessing refused: the device is not a DUT")
                return [answer(False, "not a DUT")]
            if not m.passed:
                db.execute("UPDATE devices SET bless_failures=bless_failures+1 WHERE id=?",
                           (device.id,))
                svc.append_log(device.id, "Blessing failed: the device's tests did not pass")
                return [answer(False, "tests failed")]
            fixture_group = (svc.get_group(device.factory_group_id)
                             if device.factory_group_id else None)
            if fixture_group is None or fixture_group.production_target is None:
                svc.append_log(device.id, "Blessing refused: no factory fixture group")
                return [answer(False, "no factory fixture group")]
            target = svc.get_group(fixture_group.production_target)
            db.execute(
                "UPDATE devices SET group_id=?, product_id=?, blessed=1, blessed_at=?,"
                " bless_attempt=? WHERE id=?",
                (target.id, target.product_id, svc.now(), m.attempt, device.id))
            svc.append_log(device.id, f"Blessed: assigned to production group {target.name}")
            svc._queue_webhooks(target.id, "blessing",
                                {"device_id": device.id, "imp_id": device.id, "mac": device.mac,
                                 "success": True, "timestamp": svc.now()})
            blessed = svc.get_device(device.id)
            svc.agents.device_changed(device.id)
            return [answer(True), *offers.assignment_messages(svc, blessed)]


def _error(msg: cl.Message, code: cl.ErrorCode, text: str) -> cl.ErrorReply:
    req = getattr(msg, "req", None)
    return cl.ErrorReply(device_id=msg.device_id, req=req, code=code, message=text[:1024],
                         kind=msg.KIND)
