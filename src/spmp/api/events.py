"""``GET /api/events``: the server's events as a server-sent events stream (text/event-stream).

Each event is written as ``event: <kind>`` / ``id: <n>`` / ``data: <json>``; a comment line
(``: keep-alive``) goes out every ``keepalive`` seconds so proxies and browsers keep an idle stream
open, and so a vanished client is noticed (the write fails) even when no event happens.

The stream ends when the client disconnects (Starlette cancels the generator and the ``finally``
releases the subscription), when the event hub closes (the server stopping), or when the app's
``closing`` event is set (the HTTP server shutting down: otherwise an endless stream would hold
up a graceful shutdown until its timeout).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from spmp.server import ManagementServer
from spmp.server.events import Event, Subscription

KINDS = frozenset({"registered", "updated", "deregistered", "expired", "notification", "send", "observation-cancelled"})


def event_json(event: Event) -> dict[str, Any]:
    return {"kind": event.kind, "endpoint": event.endpoint, "time": event.time, **event.data}


def format_event(event: Event, number: int) -> bytes:
    data = json.dumps(event_json(event), separators=(",", ":"), default=str)
    # json.dumps never writes a raw newline, so one data: line is always enough.
    return f"event: {event.kind}\nid: {number}\ndata: {data}\n\n".encode()


async def events(request: Request) -> StreamingResponse:
    from spmp.api.errors import bad_request  # noqa: PLC0415 - avoid a cycle at import time

    server: ManagementServer = request.app.state.server
    endpoint = request.query_params.get("endpoint")
    kinds_text = request.query_params.get("kind")
    kinds: frozenset[str] | None = None
    if kinds_text:
        kinds = frozenset(kinds_text.split(","))
        unknown = kinds - KINDS
        if unknown:
            raise bad_request(f"unknown event kind(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(KINDS))}")
    subscription = server.events.subscribe(kinds=kinds)
    stream = _stream(subscription, endpoint, request.app.state.keepalive, request.app.state.closing)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    subscription: Subscription, endpoint: str | None, keepalive: float, closing: asyncio.Event
) -> AsyncIterator[bytes]:
    number = 0
    closed = asyncio.ensure_future(closing.wait())
    try:
        # An initial comment makes clients (and tests) see the stream is open before any event.
        yield b": connected\n\n"
        while not closing.is_set():
            nxt = asyncio.ensure_future(subscription.get())
            try:
                done, _ = await asyncio.wait({nxt, closed}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not nxt.done():
                    nxt.cancel()
            if nxt not in done:
                if closed in done:
                    return
                yield b": keep-alive\n\n"
                continue
            try:
                event = nxt.result()
            except StopAsyncIteration:
                return  # the hub closed: the server is stopping
            if endpoint is not None and event.endpoint != endpoint:
                continue
            number += 1
            yield format_event(event, number)
    finally:
        closed.cancel()
        subscription.close()
