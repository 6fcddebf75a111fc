"""``/logstream``: live device logs as server-sent events (``impt log stream``).

    POST   /logstream                    -> {"data": {"type": "logstream", "id": SID}}
    GET    /logstream/SID?format=json    -> text/event-stream, sent without a token
    PUT    /logstream/SID/DEVICE         -> add a device (by id, MAC or agent id)
    DELETE /logstream/SID/DEVICE         -> remove it

The stream id is the capability (the clients open it with ``EventSource`` and no
Authorization), so it is long and random. Each new line of a streamed device's
log is one ``message`` event: ``{"device_id","ts","type","msg"}`` with
``format=json``, else ``DEVICE_ID TS [TYPE] MSG``. The stream follows the cloud's
log table (``CloudService.logs_since``), so logs reach it whichever path wrote
them. A stream nobody opens within ``IDLE_S`` is dropped.

Each account (an owner with its collaborators) may hold ``MAX_STREAMS`` streams at
a time, so one account cannot use up the cloud's streams for the others (a 429
``TooManyStreams`` beyond that); ``MAX_STREAMS_TOTAL`` bounds them all.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from impfactory.cloud.api import Answer, Call, Router
from impfactory.cloud.api_context import ApiContext
from impfactory.cloud.api_jsonapi import ApiError, BadRequest, NotFound, iso, resource

TOO_MANY = 429

POLL_S = 0.2
IDLE_S = 3600.0
MAX_STREAMS = 10
"""Streams one account may hold at a time."""
MAX_STREAMS_TOTAL = 1000


@dataclass
class Stream:
    """One log stream: its owner and the devices it follows."""

    owner_id: str
    devices: set[str] = field(default_factory=set)
    created: float = field(default_factory=time.monotonic)
    open: bool = False


def register(router: Router, ctx: ApiContext) -> None:
    """Add the log stream routes."""
    streams: dict[str, Stream] = {}

    def stream_of(call: Call) -> Stream:
        found = streams.get(call.params["sid"])
        if found is None or found.owner_id != ctx.owner(call.account):
            raise NotFound(f"no log stream {call.params['sid']!r}")
        return found

    def create(call: Call) -> Answer:
        now = time.monotonic()
        for sid in [s for s, st in streams.items() if not st.open and now - st.created > IDLE_S]:
            del streams[sid]
        owner = ctx.owner(call.account)
        if sum(st.owner_id == owner for st in streams.values()) >= MAX_STREAMS:
            raise ApiError(f"an account may have at most {MAX_STREAMS} log streams at a time; "
                             "close one (its EventSource) first", code="TooManyStreams",
                             status=TOO_MANY)
        if len(streams) >= MAX_STREAMS_TOTAL:
            raise ApiError(f"the cloud serves at most {MAX_STREAMS_TOTAL} log streams at a "
                             "time", code="TooManyStreams", status=TOO_MANY)
        sid = secrets.token_urlsafe(24)
        streams[sid] = Stream(owner)
        return Answer(200, {"data": resource("logstream", sid, {})})

    def add(call: Call) -> Answer:
        st = stream_of(call)
        st.devices.add(ctx.device(st.owner_id, call.params["device"]).id)
        return Answer(204)

    def remove(call: Call) -> Answer:
        st = stream_of(call)
        st.devices.discard(ctx.device(st.owner_id, call.params["device"]).id)
        return Answer(204)

    def open_(call: Call) -> Answer:
        sid = call.params["sid"]
        st = streams.get(sid)
        if st is None:
            raise NotFound(f"no log stream {sid!r}")
        fmt = call.query.get("format", "text")
        if fmt not in ("text", "json"):
            raise BadRequest("format is text or json", code="InvalidQuery")
        return Answer(200, content_type="text/event-stream",
                      stream=_events(ctx, streams, sid, st, fmt == "json"))

    router.add("POST", "/logstream", create, "Create a log stream")
    router.add("GET", "/logstream/{sid}", open_,
               "The stream's server-sent events (no token: the id is the capability)",
               auth=False, query=("format",))
    router.add("PUT", "/logstream/{sid}/{device}", add, "Add a device to a log stream")
    router.add("DELETE", "/logstream/{sid}/{device}", remove,
               "Remove a device from a log stream")


async def _events(ctx: ApiContext, streams: dict[str, Stream], sid: str, st: Stream,
                  as_json: bool) -> AsyncIterator[bytes]:
    """Yield SSE frames for new log lines of the stream's devices until it goes away
    (from the first frame asked for: a HEAD leaves the stream unopened)."""
    st.open = True
    last = ctx.svc.logs.last_log_id()
    yield b": impfactory log stream\n\n"
    try:
        while sid in streams:
            entries = ctx.svc.logs_since(last)
            for e in entries:
                last = e.id
                if e.device_id not in st.devices:
                    continue
                if as_json:
                    line = json.dumps({"device_id": e.device_id, "ts": iso(e.ts),
                                       "type": e.type, "msg": e.msg})
                else:
                    line = f"{e.device_id} {iso(e.ts)} [{e.type}] {e.msg}"
                    line = line.replace("\r", "").replace("\n", "\ndata: ")  # one SSE field
                yield f"data: {line}\n\n".encode()
            if not entries:
                await asyncio.sleep(POLL_S)
        yield b'event: state_change\ndata: {"state":"closed"}\n\n'
    finally:
        streams.pop(sid, None)
