"""pytest fixture ``webhook_receiver``: an HTTP endpoint that takes the cloud's webhooks.

::

    def test_blessing_is_announced(imp_product, webhook_receiver):
        product = imp_product(...)
        product.go_live(webhooks={"blessing": webhook_receiver.url})
        dut = product.add_fixture().blinkup()
        [hook] = webhook_receiver.wait_for("blessing")
        assert hook["device_id"] == dut.device_id

It listens on a free loopback port for the length of the test and answers every
POST with 200; each body (JSON, or url-encoded as the webhook's content type
says) is kept as a dict, with the request's path under ``"_path"``. The cloud
delivers at least once: de-duplicate by ``event_id`` when it matters.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from impfactory.tools.webhook_receiver import WebhookReceiver

__all__ = ["WebhookReceiver", "webhook_receiver"]


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A running ``WebhookReceiver``; ``.url`` is where to point a webhook."""
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.close()
