"""The REST API over real HTTP: uvicorn on an ephemeral port through spmp.api.serve, httpx over TCP,
and the server-sent events stream (registration events, keep-alives, filters, disconnect, shutdown)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx

from _server_helpers import make_server
from spmp.api import create_app, serve
from spmp.server import ManagementServer
from spmp.store import MemoryStore
from test_api import TOKEN, Device

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Live:
    server: ManagementServer
    http: httpx.AsyncClient
    serving: asyncio.Task[None]


@asynccontextmanager
async def live_api(keepalive: float = 15.0) -> AsyncIterator[Live]:
    async with MemoryStore() as store:
        server = make_server(store)
        await server.start()
        bound: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
        app = create_app(server, store, TOKEN, keepalive=keepalive)
        serving = asyncio.create_task(serve(app, "127.0.0.1", 0, on_started=bound.set_result))
        try:
            host, port = await asyncio.wait_for(bound, 10)
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as http:
                yield Live(server, http, serving)
        finally:
            serving.cancel()
            with suppress(asyncio.CancelledError):
                await serving
            await server.stop()


def run(test: Callable[[Live], Coroutine[Any, Any, None]], **options: Any) -> None:
    async def main() -> None:
        async with live_api(**options) as live:
            await test(live)

    asyncio.run(asyncio.wait_for(main(), 60))


async def next_event(lines: AsyncIterator[str], timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
    """The next ``event:``/``data:`` pair of an SSE stream, skipping comments and ids."""

    async def read() -> tuple[str, dict[str, Any]]:
        kind = ""
        async for line in lines:
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                return kind, json.loads(line.removeprefix("data: "))
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(read(), timeout)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_rest_over_tcp() -> None:
    async def body(live: Live) -> None:
        assert (await live.http.get("/api/health")).json()["status"] == "ok"
        assert (await live.http.get("/api/clients")).status_code == 401
        device = await Device.register(live.server, "tcp-dev")
        try:
            listed = (await live.http.get("/api/clients", headers=AUTH)).json()
            assert [c["endpoint"] for c in listed] == ["tcp-dev"]
            read = await live.http.get("/api/clients/tcp-dev/3/0/0", headers=AUTH)
            assert read.json()["value"] == "SPMP"
            written = await live.http.put("/api/clients/tcp-dev/3/0/15", json={"value": "UTC+3"}, headers=AUTH)
            assert written.status_code == 200
            assert (await live.http.get("/api/clients/tcp-dev/3/0/15", headers=AUTH)).json()["value"] == "UTC+3"
        finally:
            await device.close()

    run(body)


def test_event_stream_sees_registration_and_ends_on_disconnect() -> None:
    async def body(live: Live) -> None:
        async with live.http.stream("GET", "/api/events", headers=AUTH) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            assert await asyncio.wait_for(anext(lines), 5) == ": connected"
            device = await Device.register(live.server, "sse-dev")
            try:
                kind, data = await next_event(lines)
                assert kind == "registered" and data["endpoint"] == "sse-dev" and data["kind"] == "registered"
            finally:
                await device.close()
            assert live.server.events.subscribers == 1
        # Leaving the block closes the connection: the server notices and drops its subscription.
        await wait_until(lambda: live.server.events.subscribers == 0)

    run(body)


def test_event_stream_filters_by_endpoint_and_keeps_alive() -> None:
    async def body(live: Live) -> None:
        async with live.http.stream("GET", "/api/events?endpoint=wanted", headers=AUTH) as stream:
            lines = stream.aiter_lines()
            assert await asyncio.wait_for(anext(lines), 5) == ": connected"
            other = await Device.register(live.server, "other")
            wanted = await Device.register(live.server, "wanted")
            try:
                kind, data = await next_event(lines)
                assert (kind, data["endpoint"]) == ("registered", "wanted")
                seen = [await asyncio.wait_for(anext(lines), 5) for _ in range(4)]
                assert ": keep-alive" in seen
            finally:
                await other.close()
                await wanted.close()
        bad = await live.http.get("/api/events?kind=nonsense", headers=AUTH)
        assert bad.status_code == 400 and "nonsense" in bad.json()["message"]

    run(body, keepalive=0.1)


def test_shutdown_ends_open_event_streams() -> None:
    async def body(live: Live) -> None:
        async with live.http.stream("GET", "/api/events", headers=AUTH) as stream:
            lines = stream.aiter_lines()
            assert await asyncio.wait_for(anext(lines), 5) == ": connected"
            started = time.monotonic()
            live.serving.cancel()
            with suppress(asyncio.CancelledError):
                await live.serving
            # Well under uvicorn's graceful timeout: the stream was ended, not waited out.
            assert time.monotonic() - started < 3
            rest = [line async for line in lines]
            assert all(not line.startswith("data:") for line in rest)

    run(body)
