"""The factory flow rules: what the cloud answers each device message.

``DeviceRules.handle(msg)`` takes one decoded ``up`` message and returns the
``down`` messages to publish, in order; it does no I/O beyond the store, so the
rules are tested without a broker as well as over one. Each message is one
transaction; the changes themselves are the services' (``cloud/services``), the
rules only choose the replies. A request the rules refuse is answered with ``error`` (hello,
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
from impfactory.cloud.service import CloudService
from impfactory.protocol import cloudlink as cl

log = logging.getLogger(__name__)

Handler = Callable[[Any], list[cl.Message]]


class DeviceRules:
    """The device-facing half of the cloud, on top of ``CloudService``."""

    def __init__(self, service: CloudService) -> None:
        self.svc = service
        # impOS releases are only ever added: an image once found to be one stays one,
        # so a hundred devices fetching a release do not each look it up again
        self._impos_images: set[str] = set()
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
        with svc.tx():  # known, online and enrolled together, or not at all
            device = svc.connection.device_connected(m.device_id, m.mac, m.imp_type,
                                                     m.impos_version, m.deployment)
            if m.token is not None and m.plan_id is not None:
                svc.enrolment.enrol(device, m.plan_id, m.token)
                device = svc.get_device(m.device_id)
            replies: list[cl.Message] = [
                cl.Welcome(device_id=device.id, req=m.req, plan_id=device.plan_id,
                           agent_id=device.agent_id, agent_url=svc.agent_url(device.agent_id),
                           blessed=device.blessed),
                *offers.assignment_messages(svc, device),
            ]
        svc.agents.device_changed(m.device_id)
        return replies

    # ------------------------------------------------------------ reports

    def state(self, m: cl.StateReport) -> list[cl.Message]:
        self.svc.connection.device_reported(m.device_id, m.connection, m.led, m.impos_version,
                                            m.deployment)
        self.svc.agents.device_changed(m.device_id)
        return []

    def log(self, m: cl.Log) -> list[cl.Message]:
        self.svc.append_log(m.device_id, m.msg, m.type.value)
        return []

    def agent_message(self, m: cl.AgentMessage) -> list[cl.Message]:
        self.svc.agent_message(m.device_id, m.name, m.value)
        return []

    def bye(self, m: cl.Bye) -> list[cl.Message]:
        self.svc.connection.device_left(m.device_id, m.reason)
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
        if sha in self._impos_images:
            return True
        target = offers.target_deployment(svc, device)
        if target is not None and sha in (target.device_sha, target.agent_sha):
            return True  # what it should run: the common case, first
        running = svc.find_deployment(device.deployment_id)
        if running is not None and sha in (running.device_sha, running.agent_sha):
            return True
        if svc.is_impos_image(sha):
            self._impos_images.add(sha)
            return True
        return False

    # ------------------------------------------------------------ bless

    def bless(self, m: cl.BlessRequest) -> list[cl.Message]:
        svc = self.svc
        with svc.tx():  # the answer's offers read the state the blessing committed
            outcome = svc.blessing.bless(m.device_id, m.passed, attempt=m.attempt)
            answer = cl.BlessAnswer(device_id=m.device_id, req=m.req, blessed=outcome.blessed,
                                    reason=outcome.reason)
            if outcome.device is None:
                return [answer]
            svc.agents.device_changed(m.device_id)
            return [answer, *offers.assignment_messages(svc, outcome.device)]


def _error(msg: cl.Message, code: cl.ErrorCode, text: str) -> cl.ErrorReply:
    req = getattr(msg, "req", None)
    return cl.ErrorReply(device_id=msg.device_id, req=req, code=code, message=text[:1024],
                         kind=msg.KIND)
