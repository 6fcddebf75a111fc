"""Webhooks: CRUD, and the outbox the REST side delivers (at least once, stable ids).

Events are queued by the use case that causes them, in its transaction
(``Context.queue_webhooks``); this module reads and marks the outbox.
"""

from __future__ import annotations

import logging

from impfactory.cloud.errors import InvalidError, NotFoundError
from impfactory.cloud.model import AbandonedDelivery, Webhook, WebhookDelivery
from impfactory.cloud.services.checks import check_webhook
from impfactory.cloud.services.context import Context, new_id

log = logging.getLogger(__name__)

PRODUCTION_EVENTS = ("blessing", "blinkup")
"""Webhook events of (pre-)production groups; ``deployment`` webhooks fit any group."""


class Webhooks:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.repo = ctx.repos.webhooks
        self.outbox = ctx.repos.outbox

    def create_webhook(self, group_id: str, event: str, url: str,
                       content_type: str = "application/json") -> Webhook:
        group = self.ctx.group(group_id)
        check_webhook(event, url, content_type)
        if event in PRODUCTION_EVENTS and not group.type.is_production:
            raise InvalidError(f"{event} webhooks belong to (pre-)production device groups; "
                               "deployment webhooks to any group")
        hook = Webhook(new_id(), group_id, event, url, content_type, self.ctx.now())
        with self.ctx.tx():
            self.repo.add(hook)
        return hook

    def get_webhook(self, webhook_id: str) -> Webhook:
        found = self.repo.get(webhook_id)
        if found is None:
            raise NotFoundError(f"no webhook {webhook_id}")
        return found

    def list_webhooks(self, group_id: str | None = None) -> list[Webhook]:
        return self.repo.list(group_id)

    def update_webhook(self, webhook_id: str, *, url: str | None = None,
                       content_type: str | None = None) -> Webhook:
        hook = self.get_webhook(webhook_id)
        url, content_type = url or hook.url, content_type or hook.content_type
        check_webhook(hook.event, url, content_type)
        with self.ctx.tx():
            self.repo.update(webhook_id, url, content_type)
        return self.get_webhook(webhook_id)

    def delete_webhook(self, webhook_id: str) -> None:
        """Delete a webhook. As in impCentral nothing more is sent to it; events still
        queued for it are kept, marked abandoned (``abandoned_webhooks``) and logged."""
        self.get_webhook(webhook_id)
        with self.ctx.tx():
            self.abandon_outbox(webhook_id, "the webhook was deleted")
            self.repo.delete(webhook_id)

    def abandon_outbox(self, webhook_id: str, why: str) -> None:
        """Mark ``webhook_id``'s undelivered events abandoned (inside the caller's tx)."""
        hook = self.get_webhook(webhook_id)
        rows = self.outbox.undelivered(webhook_id)
        if not rows:
            return
        reason = f"not delivered: {why} (it posted to {hook.url})"
        self.outbox.abandon(webhook_id, reason, self.ctx.now())
        for delivery_id, event in rows:
            log.warning("webhook event evt-%d (%s) for webhook %s %s", delivery_id, event,
                        webhook_id, reason)

    def pending_webhooks(self, limit: int = 100) -> list[WebhookDelivery]:
        """Outbox entries not yet delivered, oldest first."""
        return self.outbox.pending(limit)

    def abandoned_webhooks(self, limit: int = 100) -> list[AbandonedDelivery]:
        """Events never delivered because their webhook (or its group) was deleted (one
        whose POST was already under way when the hook went, and succeeded, is not)."""
        return self.outbox.abandoned(limit)

    def mark_webhook(self, delivery_id: int, *, ok: bool, error: str | None = None) -> None:
        with self.ctx.tx():
            self.outbox.attempted(delivery_id, self.ctx.now() if ok else None, error)

    # -- the retry schedule (the REST side's dispatcher) -----------------------------

    def retry_schedule(self) -> dict[int, tuple[float, bool]]:
        """delivery id -> (next attempt at, dead), for deliveries that failed."""
        return self.outbox.schedule()

    def retry_state(self, delivery_id: int) -> bool | None:
        """None: never failed; else whether it is dead."""
        return self.outbox.retry_state(delivery_id)

    def take(self, delivery_ids: list[int], lease_s: float,
             holder: str | None = None) -> list[int]:
        """The deliveries no dispatcher holds (of this cloud or another on the same
        store), now ``holder``'s for ``lease_s`` seconds or until its attempt is
        recorded: two clouds never post one event at once."""
        with self.ctx.tx():
            now = self.ctx.now()
            return self.outbox.take(delivery_ids, now, now + lease_s, holder)

    def reclaim(self, holder: str) -> int:
        """End the leases ``holder`` took before: a cloud starting again under the name
        only one process can have at a time (its broker client ID) knows that the
        process that took them is gone, so what it was posting is due now, not when
        the leases run out. How many there were."""
        with self.ctx.tx():
            return self.outbox.release_held_by(holder)

    def record_attempt(self, delivery_id: int, *, ok: bool, error: str | None,
                       next_at: float | None, dead: bool) -> None:
        """One POST's outcome and the delivery's next state, in one transaction."""
        with self.ctx.tx():
            self.outbox.release(delivery_id)
            self.outbox.attempted(delivery_id, self.ctx.now() if ok else None, error)
            if next_at is None:
                self.outbox.retry_done(delivery_id)
            else:
                self.outbox.retry_at(delivery_id, next_at, dead)
