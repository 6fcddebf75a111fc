"""An HTTP endpoint that takes the cloud's webhooks and keeps every delivery.

It listens on a free loopback port and answers every POST with 200; each body
(JSON, or url-encoded as the webhook's content type says) is kept as a dict, with
the request's path under ``"_path"``. The cloud delivers at least once:
de-duplicate by ``event_id`` when it matters. The pytest fixture
``webhook_receiver`` (tools/plugin_webhooks.py) and ``impfactory soak`` use it.
"""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any
from urllib.parse import parse_qsl


class WebhookReceiver(http.server.ThreadingHTTPServer):
    """Keeps every POST it is sent; ``wait_for`` an event's deliveries."""

    daemon_threads = True

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None
        self.arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                self.send_response(200)
                self.end_headers()
                receiver._keep(self.path, self.headers.get("Content-Type", ""), raw)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/hook``; any other path on the port is taken too."""
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def _keep(self, path: str, ctype: str, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        try:
            body = (dict(parse_qsl(text)) if "x-www-form-urlencoded" in ctype
                    else dict(json.loads(text or "{}")))
        except (ValueError, TypeError):
            body = {"_raw": text}
        with self.arrived:
            self.received.append({**body, "_path": path})
            self.arrived.notify_all()

    def events(self, event: str) -> list[dict[str, Any]]:
        """The deliveries of ``event`` so far (``blessing``, ``blinkup``, ``deployment``)."""
        with self.arrived:
            return [b for b in self.received if b.get("event") == event]

    def wait_for(self, event: str, count: int = 1, timeout: float = 30.0
                 ) -> list[dict[str, Any]]:
        """Wait until ``count`` deliveries of ``event`` arrived; return them all."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.events(event)) >= count, timeout)
        got = self.events(event)
        if len(got) < count:
            raise AssertionError(f"{len(got)} {event} webhook(s) arrived in {timeout:g} s, "
                                 f"not {count}; received: {self.received}")
        return got

    def start(self) -> WebhookReceiver:
        """Serve on a daemon thread until ``close``."""
        self._thread = threading.Thread(target=self.serve_forever, name="webhooks",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(10)
        self.server_close()
