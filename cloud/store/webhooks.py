"""Webhooks and their durable outbox.

An event is queued (one outbox row per matching webhook) inside the transaction
of the change that caused it, so it is on disk before anything is sent; the
outbox row's id is the event's stable id (``evt-<id>``) across retries and
restarts. The retry schedule (``api_webhook_retry``) sits beside it.
"""

from __future__ import annotations

import json
from typing import Any

from impfactory.cloud.model import AbandonedDelivery, Webhook, WebhookDelivery
from impfactory.cloud.store.engine import Store


class WebhookRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, hook: Webhook) -> None:
        self.store.execute(
            "INSERT INTO webhooks (id, group_id, event, url, content_type, created_at)"
            " VALUES (?,?,?,?,?,?)",
            (hook.id, hook.group_id, hook.event, hook.url, hook.content_type, hook.created_at))

    def get(self, webhook_id: str) -> Webhook | None:
        row = self.store.one("SELECT id, group_id, event, url, content_type, created_at"
                             " FROM webhooks WHERE id=?", (webhook_id,))
        return Webhook(*row) if row is not None else None

    def list(self, group_id: str | None = None) -> list[Webhook]:
        sql, args = "SELECT id, group_id, event, url, content_type, created_at FROM webhooks", []
        if group_id is not None:
            sql, args = sql + " WHERE group_id=?", [group_id]
        return [Webhook(*r) for r in self.store.query(sql + " ORDER BY created_at", args)]

    def update(self, webhook_id: str, url: str, content_type: str) -> None:
        self.store.execute("UPDATE webhooks SET url=?, content_type=? WHERE id=?",
                           (url, content_type, webhook_id))

    def delete(self, webhook_id: str) -> None:
        self.store.execute("DELETE FROM webhooks WHERE id=?", (webhook_id,))

    def delete_for_group(self, group_id: str) -> None:
        self.store.execute("DELETE FROM webhooks WHERE group_id=?", (group_id,))


class OutboxRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def queue(self, group_id: str, event: str, payload: dict[str, Any], now: float) -> int:
        """One row per webhook of ``group_id`` on ``event``; returns how many."""
        text = json.dumps(payload)
        hooks = self.store.query("SELECT id FROM webhooks WHERE group_id=? AND event=?",
                                 (group_id, event))
        for (hook_id,) in hooks:
            self.store.execute("INSERT INTO webhook_outbox (webhook_id, event, payload,"
                               " created_at) VALUES (?,?,?,?)", (hook_id, event, text, now))
        return len(hooks)

    def pending(self, limit: int) -> list[WebhookDelivery]:
        """Undelivered, not abandoned, oldest first, with their hook's URL."""
        rows = self.store.query(
            "SELECT o.id, o.webhook_id, w.url, w.content_type, o.event, o.payload, o.attempts,"
            " o.created_at FROM webhook_outbox o JOIN webhooks w ON o.webhook_id = w.id"
            " WHERE o.delivered_at IS NULL AND o.abandoned_at IS NULL ORDER BY o.id LIMIT ?",
            (limit,))
        return [WebhookDelivery(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7])
                for r in rows]

    def undelivered(self, webhook_id: str) -> list[tuple[int, str]]:
        """(id, event) of the hook's events neither delivered nor abandoned."""
        rows = self.store.query(
            "SELECT id, event FROM webhook_outbox WHERE webhook_id=? AND delivered_at IS NULL"
            " AND abandoned_at IS NULL ORDER BY id", (webhook_id,))
        return [(r[0], r[1]) for r in rows]

    def abandon(self, webhook_id: str, reason: str, now: float) -> None:
        self.store.execute(
            "UPDATE webhook_outbox SET abandoned_at=?, last_error=? WHERE webhook_id=?"
            " AND delivered_at IS NULL AND abandoned_at IS NULL", (now, reason, webhook_id))

    def abandoned(self, limit: int) -> list[AbandonedDelivery]:
        rows = self.store.query(
            "SELECT id, webhook_id, event, payload, attempts, created_at, abandoned_at,"
            " last_error FROM webhook_outbox WHERE abandoned_at IS NOT NULL"
            " AND delivered_at IS NULL ORDER BY id LIMIT ?", (limit,))
        return [AbandonedDelivery(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6],
                                  r[7] or "") for r in rows]

    def attempted(self, delivery_id: int, delivered_at: float | None, error: str | None) -> None:
        """One POST made: delivered (``delivered_at``) or not (``error``)."""
        self.store.execute("UPDATE webhook_outbox SET attempts=attempts+1, delivered_at=?,"
                           " last_error=? WHERE id=?", (delivered_at, error, delivery_id))

    # -- retry schedule -------------------------------------------------------------

    def schedule(self) -> dict[int, tuple[float, bool]]:
        """delivery id -> (next attempt at, dead) for every delivery that failed."""
        rows = self.store.query("SELECT delivery_id, next_at, dead FROM api_webhook_retry")
        return {r[0]: (r[1], bool(r[2])) for r in rows}

    def retry_state(self, delivery_id: int) -> bool | None:
        """None: never failed; else whether it is dead."""
        found = self.store.scalar("SELECT dead FROM api_webhook_retry WHERE delivery_id=?",
                                  (delivery_id,))
        return None if found is None else bool(found)

    def retry_at(self, delivery_id: int, next_at: float, dead: bool) -> None:
        self.store.execute(
            "INSERT INTO api_webhook_retry (delivery_id, next_at, dead) VALUES (?,?,?)"
            " ON CONFLICT (delivery_id) DO UPDATE SET next_at=excluded.next_at,"
            " dead=excluded.dead", (delivery_id, next_at, int(dead)))

    def take(self, delivery_ids: list[int], now: float, until: float,
             holder: str | None = None) -> list[int]:
        """Of ``delivery_ids``, those no dispatcher holds, now held by ``holder`` until
        ``until`` (inside the caller's write transaction: one taker at a time)."""
        held = {row[0] for row in self.store.query(
            "SELECT delivery_id FROM api_webhook_lease WHERE until > ?", (now,))}
        taken = [d for d in delivery_ids if d not in held]
        for delivery_id in taken:
            self.store.execute(
                "INSERT INTO api_webhook_lease (delivery_id, until, holder) VALUES (?, ?, ?)"
                " ON CONFLICT (delivery_id) DO UPDATE SET until = excluded.until,"
                " holder = excluded.holder",
                (delivery_id, until, holder))
        return taken

    def release_held_by(self, holder: str) -> int:
        """End every lease ``holder`` has; how many there were."""
        return self.store.execute("DELETE FROM api_webhook_lease WHERE holder=?", (holder,))

    def release(self, delivery_id: int) -> None:
        self.store.execute("DELETE FROM api_webhook_lease WHERE delivery_id=?", (delivery_id,))

    def retry_done(self, delivery_id: int) -> None:
        self.store.execute("DELETE FROM api_webhook_retry WHERE delivery_id=?", (delivery_id,))
