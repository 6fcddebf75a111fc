"""Webhooks for real: ``/webhooks`` CRUD and delivery of the cloud's durable outbox.

The cloud service queues one outbox row per (event, webhook) in the same
transaction as the change that caused it (a blessing, an end-user BlinkUp, a
deployment), so the event is on disk before anything is sent and a cloud that
stops at any moment loses none. ``Dispatcher`` delivers that outbox:

* each POST carries the event id (``event_id`` in the body and the
  ``X-Impfactory-Event-Id`` header; stable across retries) so a receiver can drop
  duplicates: delivery is at least once;
* a failing receiver (connection error or non-2xx) is retried after
  ``base * 2**(attempts-1)`` seconds, capped at ``cap``; the schedule is kept in
  ``api_webhook_retry(delivery_id, next_at, dead)``, so a restart keeps it too;
* after ``max_attempts`` a delivery is marked dead (kept, never deleted).

A delivery's life is the table ``TRANSITIONS``: (state, outcome of a POST) → next
state; the state is read from ``api_webhook_retry`` (no row: pending; a row:
retrying, or dead) and a delivered one leaves the outbox's pending set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from enum import Enum
from typing import Annotated
from urllib.parse import urlencode

from msgspec import UNSET, Struct, UnsetType

from impfactory.backoff import Backoff
from impfactory.cloud import api_render as render
from impfactory.cloud.api import Answer, Call, Router
from impfactory.cloud.api_context import ApiContext
from impfactory.cloud.api_devicegroups import GroupRef
from impfactory.cloud.api_jsonapi import JsonObj, NotFound, filters, list_query, paginate
from impfactory.cloud.api_models import ResourceBody, meta
from impfactory.cloud.errors import NotFoundError
from impfactory.cloud.model import (
    WEBHOOK_CONTENT_TYPES,
    Webhook,
    WebhookContentType,
    WebhookDelivery,
    WebhookEvent,
)
from impfactory.cloud.outbound import Outbound, Reply
from impfactory.cloud.service import CloudService
from impfactory.errors import ImpFactoryError
from impfactory.protocol.constraints import Limits

WEBHOOK_BACKOFF = Backoff(first=1.0, cap=300.0, max_attempts=50)
"""Deliveries retry 1, 2, 4 ... s, at most 5 minutes apart, and are dead after 50 tries."""

log = logging.getLogger(__name__)

FILTERS = ("devicegroup.id",)

Url = Annotated[str, meta(Limits(max_length=2000), "an absolute http(s) URL: the service "
                          "refuses any other with impCentral's 400 'Invalid URL'")]


class WebhookChanges(Struct, forbid_unknown_fields=True, kw_only=True):
    """What an update may change (not the event)."""

    url: Url | UnsetType = UNSET
    content_type: WebhookContentType | UnsetType = UNSET


class WebhookAttributes(Struct, forbid_unknown_fields=True, kw_only=True):
    """A new webhook: ``content_type`` is JSON unless given."""

    event: WebhookEvent
    url: Url
    content_type: WebhookContentType | UnsetType = UNSET


class WebhookRelationships(Struct):
    devicegroup: GroupRef


CREATE = ResourceBody.of("WebhookCreate", "webhook", WebhookAttributes, WebhookRelationships)
UPDATE = ResourceBody.of("WebhookUpdate", "webhook", WebhookChanges, None)

LEASE_S = 15.0
"""How long a dispatcher holds the deliveries it took: above one POST's deadline (the
cloud's HTTP timeout, 10 s by default), and short, since a cloud killed mid-POST holds
its deliveries until the lease ends and only then does another cloud deliver them (the
same cloud restarted takes its own back at once: ``Dispatcher(holder=…)``)."""

class Delivery(Enum):
    """Where one outbox entry stands."""

    PENDING = "pending"  # never tried
    RETRYING = "retrying"  # failed, next try scheduled
    DELIVERED = "delivered"  # a 2xx answer
    DEAD = "dead"  # failed max_attempts times: kept, never tried again


class Outcome(Enum):
    """What one POST attempt gave."""

    OK = "ok"  # a 2xx answer
    FAILED = "failed"  # no answer or a non-2xx one, attempts left
    LAST_FAILED = "last_failed"  # failed, and that was the last attempt allowed


TRANSITIONS: dict[tuple[Delivery, Outcome], Delivery] = {
    (Delivery.PENDING, Outcome.OK): Delivery.DELIVERED,
    (Delivery.PENDING, Outcome.FAILED): Delivery.RETRYING,
    (Delivery.PENDING, Outcome.LAST_FAILED): Delivery.DEAD,
    (Delivery.RETRYING, Outcome.OK): Delivery.DELIVERED,
    (Delivery.RETRYING, Outcome.FAILED): Delivery.RETRYING,
    (Delivery.RETRYING, Outcome.LAST_FAILED): Delivery.DEAD,
}


class DeliveryStateError(ImpFactoryError, RuntimeError):
    """An outcome for a delivery in a state that cannot have one (delivered, dead)."""


def next_state(state: Delivery, outcome: Outcome) -> Delivery:
    """The table's answer; a pair it does not list is an error, never ignored."""
    try:
        return TRANSITIONS[(state, outcome)]
    except KeyError:
        raise DeliveryStateError(f"no transition from {state.value} on {outcome.value}"
                                 ) from None


def encode(payload: JsonObj, content_type: str) -> bytes:
    """The POST body: JSON, or form fields with lists joined by commas."""
    if content_type == "application/json":
        return json.dumps(payload).encode()
    flat = {k: ",".join(map(str, v)) if isinstance(v, list) else
            ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in payload.items()}
    return urlencode(flat).encode()


async def post_event(http: Outbound, url: str, body: bytes, content_type: str, event_id: str
                     ) -> Reply:
    """One delivery attempt (a redirect is an answer, so a failure, never followed)."""
    return await http.post(url, body, {"Content-Type": content_type,
                                       "X-Impfactory-Event-Id": event_id})


class Dispatcher:
    """Delivers the cloud's webhook outbox on its loop through the cloud's HTTP client
    (``http``, whose timeout bounds each POST), all due deliveries at once.

    ``holder`` names the leases this dispatcher takes: a name one process at a time
    can have (the cloud's broker client ID, which the broker gives to one connection
    only). Starting, it takes back the leases its name holds, since the process that
    had them before is gone (killed mid-POST); without a name those wait out
    ``LEASE_S``."""

    def __init__(self, svc: CloudService, http: Outbound, backoff: Backoff | None = None,
                 poll: float = 0.2, holder: str | None = None) -> None:
        self.svc = svc
        self.http = http
        self.holder = holder
        self.backoff = backoff or WEBHOOK_BACKOFF
        self.poll = poll
        self.batch = 1000
        """Deliveries considered per round (besides the dead ones, which are skipped)."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start delivering (resuming whatever a previous run left pending)."""
        if self.holder is not None:
            reclaimed = self.svc.webhooks.reclaim(self.holder)
            if reclaimed:
                log.info("took back %d webhook deliveries a previous run of %s held",
                         reclaimed, self.holder)
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="impfactory-webhooks")

    async def stop(self) -> None:
        """Stop delivering; undelivered rows stay in the outbox for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def due(self) -> list[WebhookDelivery]:
        """Undelivered rows whose retry time has come, that are not dead and that no
        dispatcher (of this cloud or another on the same store) holds: taken by this
        one until its attempt is recorded or ``LEASE_S`` has passed."""
        now = self.svc.now()
        sched = self.svc.webhooks.retry_schedule()
        dead = sum(1 for _, is_dead in sched.values() if is_dead)
        out = []
        # dead entries stay pending in the outbox: look past them, or they starve the rest
        for d in self.svc.pending_webhooks(limit=self.batch + dead):
            next_at, is_dead = sched.get(d.id, (0.0, False))
            if not is_dead and next_at <= now:
                out.append(d)
        if not out:
            return out
        taken = set(self.svc.webhooks.take([d.id for d in out], LEASE_S, self.holder))
        return [d for d in out if d.id in taken]

    async def _run(self) -> None:
        while True:
            batch = self.due()
            if batch:
                await asyncio.gather(*(self._deliver(d) for d in batch))
            else:
                await asyncio.sleep(self.poll)

    async def _deliver(self, d: WebhookDelivery) -> None:
        event_id = f"evt-{d.id}"
        payload = {"event_id": event_id, "event": d.event, **d.payload}
        reply = await post_event(self.http, d.url, encode(payload, d.content_type),
                                 d.content_type, event_id)
        ok, error = reply.ok, reply.error
        attempts = d.attempts + 1
        outcome = (Outcome.OK if ok else Outcome.LAST_FAILED
                   if self.backoff.gives_up(attempts) else Outcome.FAILED)
        state = next_state(self.state_of(d.id), outcome)
        delivered = state is Delivery.DELIVERED
        self.svc.webhooks.record_attempt(
            d.id, ok=ok, error=error, dead=state is Delivery.DEAD,
            next_at=None if delivered else self.svc.now() + self.backoff.delay(attempts))
        if state is not Delivery.DELIVERED:
            log.info("webhook %s to %s failed (%s), attempt %d%s", event_id, d.url, error,
                     attempts, "; giving up" if state is Delivery.DEAD else "")

    def state_of(self, delivery_id: int) -> Delivery:
        """An undelivered entry's state, from the retry schedule."""
        dead = self.svc.webhooks.retry_state(delivery_id)
        if dead is None:
            return Delivery.PENDING
        return Delivery.DEAD if dead else Delivery.RETRYING


def register(router: Router, ctx: ApiContext) -> None:
    """Add the webhook routes."""
    svc = ctx.svc

    def hook(owner: str, hook_id: str) -> Webhook:
        try:
            found = svc.get_webhook(hook_id)
            ctx.group(owner, found.group_id)
        except (NotFoundError, NotFound):
            raise NotFound(f"no webhook {hook_id!r}") from None
        return found

    def list_(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        f = filters(call.query, FILTERS)
        if "devicegroup.id" in f:
            ctx.group(owner, f["devicegroup.id"])
            hooks = svc.list_webhooks(f["devicegroup.id"])
        else:
            mine = {g.id for g in svc.list_groups(owner_id=owner)}
            hooks = [h for h in svc.list_webhooks() if h.group_id in mine]
        return Answer(200, paginate(hooks, call.query, "/v5/webhooks", FILTERS,
                                    lambda h: render.webhook(h, svc)))

    def create(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        body = CREATE.parse(call.body())
        attrs = body.attrs
        group = ctx.group(owner, body.rels["devicegroup"])
        made = svc.create_webhook(group.id, attrs["event"], attrs["url"],
                                  attrs.get("content_type", WEBHOOK_CONTENT_TYPES[0]))
        return Answer(201, {"data": render.webhook(made, svc)})

    def get(call: Call) -> Answer:
        return Answer(200, {"data": render.webhook(
            hook(ctx.owner(call.account), call.params["id"]), svc)})

    def update(call: Call) -> Answer:
        found = hook(ctx.owner(call.account), call.params["id"])
        attrs = UPDATE.parse(call.body(), want_id=found.id).attrs
        updated = svc.update_webhook(found.id, url=attrs.get("url"),
                                     content_type=attrs.get("content_type"))
        return Answer(200, {"data": render.webhook(updated, svc)})

    def delete(call: Call) -> Answer:
        svc.delete_webhook(hook(ctx.owner(call.account), call.params["id"]).id)
        return Answer(204)

    router.add("GET", "/webhooks", list_, "List webhooks", query=list_query(FILTERS))
    router.add("POST", "/webhooks", create,
               "Create a webhook: deployment on any group; blessing, blinkup on "
               "(pre-)production groups",
               body=CREATE)
    router.add("GET", "/webhooks/{id}", get, "One webhook")
    router.add("PATCH", "/webhooks/{id}", update, "Change a webhook's url or content type",
               body=UPDATE)
    router.add("DELETE", "/webhooks/{id}", delete, "Delete a webhook")
