"""A tiny LwM2M server and bootstrap server for the client-engine tests, on spmp.coap.Endpoint.

Real CoAP over UDP on 127.0.0.1 and the real codecs; no LwM2M logic beyond what the tests check:
it answers /rd (Register, Update, De-register), /dp (Send) and /bs (Bootstrap-Request), records
everything, and lets the test send requests to the registered client. ``down = True`` makes it
drop every datagram, in and out, as an unreachable server would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from spmp.coap.endpoint import CoapParameters, Endpoint
from spmp.coap.message import Code, Request, Response
from spmp.coap.transport import DatagramHandler, Peer
from spmp.coap.udp import UdpTransport

FAST = CoapParameters(ack_timeout=0.1, ack_random_factor=1.0, max_retransmit=2, response_timeout=3.0)


class Switchable:
    """A UDP transport that can be switched off (drops everything) to simulate an unreachable server."""

    def __init__(self, inner: UdpTransport) -> None:
        self.inner = inner
        self.down = False
        self._handler: DatagramHandler | None = None

    def set_handler(self, handler: DatagramHandler) -> None:
        self._handler = handler
        self.inner.set_handler(self._receive)

    def _receive(self, data: bytes, peer: Peer) -> None:
        if not self.down and self._handler is not None:
            self._handler(data, peer)

    def send(self, data: bytes, peer: Peer) -> None:
        if not self.down:
            self.inner.send(data, peer)

    @property
    def local_address(self) -> tuple[str, int]:
        return self.inner.local_address

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class Registration:
    location: str
    query: tuple[str, ...]
    payload: str
    peer: Peer


@dataclass
class Seen:
    """Everything the peer saw, in order."""

    registers: list[Registration] = field(default_factory=list)
    updates: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)
    deregisters: list[str] = field(default_factory=list)
    sends: list[tuple[int | None, bytes]] = field(default_factory=list)
    bootstrap_requests: list[tuple[str, ...]] = field(default_factory=list)


class TestServer:
    """The LwM2M (and bootstrap) server side of the tests."""

    __test__ = False

    def __init__(self, endpoint: Endpoint, switch: Switchable) -> None:
        self.endpoint = endpoint
        self.switch = switch
        self.seen = Seen()
        self.active: set[str] = set()
        self.client: Peer | None = None
        self.on_bootstrap_request: Callable[[Peer], None] | None = None
        self.changed = asyncio.Event()
        endpoint.handler = self.handle

    @classmethod
    async def start(cls) -> TestServer:
        switch = Switchable(await UdpTransport.bind("127.0.0.1", 0))
        return cls(Endpoint(switch, params=FAST), switch)

    @property
    def uri(self) -> str:
        host, port = self.switch.local_address
        return f"coap://{host}:{port}"

    async def close(self) -> None:
        await self.endpoint.close()

    async def handle(self, request: Request) -> Response:
        path = request.path
        payload = request.payload.decode("utf-8", "replace")
        try:
            if request.method == Code.POST and path == ("rd",):
                location = f"rd/{len(self.seen.registers) + 1}"
                assert request.peer is not None
                self.client = request.peer
                self.seen.registers.append(Registration(location, request.query, payload, request.peer))
                self.active.add(location)
                return Response(Code.CREATED, location_path=location)
            if request.method == Code.POST and len(path) == 2 and path[0] == "rd":
                location = "/".join(path)
                if location not in self.active:
                    return Response(Code.NOT_FOUND)
                self.seen.updates.append((location, request.query, payload))
                return Response(Code.CHANGED)
            if request.method == Code.DELETE and len(path) == 2 and path[0] == "rd":
                location = "/".join(path)
                self.seen.deregisters.append(location)
                self.active.discard(location)
                return Response(Code.DELETED)
            if request.method == Code.POST and path == ("dp",):
                self.seen.sends.append((request.content_format, request.payload))
                return Response(Code.CHANGED)
            if request.method == Code.POST and path == ("bs",):
                assert request.peer is not None
                self.seen.bootstrap_requests.append(request.query)
                if self.on_bootstrap_request is not None:
                    asyncio.get_running_loop().call_soon(self.on_bootstrap_request, request.peer)
                return Response(Code.CHANGED)
            return Response(Code.NOT_FOUND)
        finally:
            self.changed.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        async def loop() -> None:
            while not condition():
                self.changed.clear()
                if condition():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.05)

        await asyncio.wait_for(loop(), timeout)

    async def request(self, request: Request) -> Response:
        assert self.client is not None, "no client registered"
        return await self.endpoint.request(self.client, request)
