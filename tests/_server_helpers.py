"""Helpers shared by the management-server tests (tests/test_server_*.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from _peers import needs_tools
from spmp.coap.endpoint import CoapParameters
from spmp.lwm2m.objects import default_registry
from spmp.server import ManagementServer
from spmp.store import Store

FAST = CoapParameters(ack_timeout=0.2, ack_random_factor=1.0, max_retransmit=2, response_timeout=3.0)

needs_libcoap = needs_tools("coap-client-notls", "coap-client-openssl")


def run(coro: Coroutine[Any, Any, None], timeout: float = 60.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)

    asyncio.run(bounded())


def make_server(store: Store, **kwargs: Any) -> ManagementServer:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "coap_port": 0,
        "coaps_port": 0,
        "insecure": True,
        "params": FAST,
        "discover_on_register": False,
        "psk_refresh": 0,
    }
    options.update(kwargs)
    return ManagementServer(store, default_registry(), **options)


async def coap_client(*args: str, secure: bool = False, timeout: float = 20.0) -> str:
    """Run libcoap's client with ``-v 6`` (prints the messages) and return what it printed."""
    program = "coap-client-openssl" if secure else "coap-client-notls"
    proc = await asyncio.create_subprocess_exec(
        program, "-v", "6", "-B", "10", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return out.decode("utf-8", "replace")


def response_line(output: str) -> str:
    """The line libcoap printed for the response (an ACK or the separate response)."""
    lines = [line for line in output.splitlines() if " c:2." in line or " c:4." in line or " c:5." in line]
    assert lines, f"no response in libcoap output:\n{output}"
    return lines[-1]


def location(output: str) -> str:
    line = response_line(output)
    parts = [p.split(":", 1)[1].strip(" ,]") for p in line.split(" ") if p.startswith("Location-Path:")]
    return "/".join(parts)
