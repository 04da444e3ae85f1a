"""The CoAP endpoint over real UDP on 127.0.0.1: against itself and against libcoap's command-line tools.

Every test runs its own event loop (``asyncio.run``) and binds ephemeral ports. Transmission
parameters are shrunk so retransmission and timeout paths take milliseconds.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from _peers import needs_tools
from spmp.coap.endpoint import CoapParameters, Endpoint
from spmp.coap.errors import PeerReset, RequestTimeout, ResponseError, TransportClosed
from spmp.coap.message import Block, Code, Message, Option, Request, Response, Type, decode, encode
from spmp.coap.observe import ServedObservation, is_newer
from spmp.coap.transport import DatagramHandler, Peer
from spmp.coap.udp import UdpTransport

FAST = CoapParameters(ack_timeout=0.05, ack_random_factor=1.0, max_retransmit=3, response_timeout=2.0)

needs_libcoap = needs_tools("coap-client-notls", "coap-server-notls")


def run(coro: Coroutine[Any, Any, None], timeout: float = 20.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)

    asyncio.run(bounded())


async def endpoint(
    handler: Callable[[Request], Awaitable[Response]] | None = None, params: CoapParameters = FAST
) -> Endpoint:
    return Endpoint(await UdpTransport.bind("127.0.0.1", 0), handler, params=params)


def peer_of(ep: Endpoint) -> Peer:
    host, port = ep.transport.local_address
    return Peer(host, port)


class Lossy:
    """Wraps a transport and drops the outgoing datagrams for which ``drop`` says so."""

    def __init__(self, inner: UdpTransport, drop: Callable[[bytes], bool]) -> None:
        self.inner = inner
        self.drop = drop
        self.dropped = 0

    def set_handler(self, handler: DatagramHandler) -> None:
        self.inner.set_handler(handler)

    def send(self, data: bytes, peer: Peer) -> None:
        if self.drop(data):
            self.dropped += 1
            return
        self.inner.send(data, peer)

    @property
    def local_address(self) -> tuple[str, int]:
        return self.inner.local_address

    async def close(self) -> None:
        await self.inner.close()


def drop_first(n: int, mtype: int | None = None) -> Callable[[bytes], bool]:
    left = [n]

    def drop(data: bytes) -> bool:
        if left[0] > 0 and (mtype is None or (data[0] >> 4) & 3 == mtype):
            left[0] -= 1
            return True
        return False

    return drop


async def echo(request: Request) -> Response:
    body = "/".join(request.path).encode()
    return Response(Code.CONTENT, body + b"|" + request.payload, content_format=0)


class RawPeer:
    """A bare UDP socket speaking hand-made bytes, for duplicate and malformed datagrams."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    async def start(self) -> RawPeer:
        self.transport = await UdpTransport.bind("127.0.0.1", 0)
        self.transport.set_handler(lambda data, peer: self.received.put_nowait(data))
        return self

    def send(self, data: bytes, to: Endpoint) -> None:
        self.transport.send(data, peer_of(to))

    async def recv(self, timeout: float = 2.0) -> Message:
        return decode(await asyncio.wait_for(self.received.get(), timeout))


# --- request/response between two endpoints --------------------------------------------------------


def test_piggybacked_get_put_and_non() -> None:
    async def main() -> None:
        server = await endpoint(echo)
        client = await endpoint()
        r = await client.request(peer_of(server), Request(Code.GET, "/a/b", query=["x=1"]))
        assert (r.code, r.payload, r.content_format) == (Code.CONTENT, b"a/b|", 0)
        assert r.peer == peer_of(server)
        r = await client.request(peer_of(server), Request(Code.PUT, "p", payload=b"v"))
        assert r.payload == b"p|v"
        r = await client.request(peer_of(server), Request(Code.POST, "n", confirmable=False))
        assert r.payload == b"n|"
        await client.close()
        await server.close()

    run(main())


def test_handler_errors_render_as_codes_and_do_not_kill_the_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: Request) -> Response:
        if request.path == ("missing",):
            raise ResponseError(Code.NOT_FOUND, "no such thing")
        if request.path == ("boom",):
            raise RuntimeError("bug")
        return Response(Code.CHANGED)

    async def main() -> None:
        server = await endpoint(handler)
        client = await endpoint()
        r = await client.request(peer_of(server), Request(Code.GET, "missing"))
        assert (r.code, r.payload) == (Code.NOT_FOUND, b"no such thing")
        r = await client.request(peer_of(server), Request(Code.GET, "boom"))
        assert r.code == Code.INTERNAL_SERVER_ERROR and b"bug" not in r.payload
        r = await client.request(peer_of(server), Request(Code.POST, "ok"))
        assert r.code == Code.CHANGED
        # An unknown critical option (odd number) is refused with 4.02.
        r = await client.request(peer_of(server), Request(Code.GET, "ok", options=[(2049, b"x")]))
        assert r.code == Code.BAD_OPTION
        assert server.stats.handler_errors == 1
        await client.close()
        await server.close()

    run(main())
    assert "handler failed" in caplog.text


def test_client_without_handler_answers_404() -> None:
    async def main() -> None:
        a = await endpoint()
        b = await endpoint()
        r = await a.request(peer_of(b), Request(Code.GET, "x"))
        assert r.code == Code.NOT_FOUND
        await a.close()
        await b.close()

    run(main())


def test_retransmission_recovers_lost_request_and_lost_ack() -> None:
    async def main() -> None:
        server = await endpoint(echo)
        lossy_server_t = Lossy(await UdpTransport.bind("127.0.0.1", 0), drop_first(2, Type.ACK))
        lossy_server = Endpoint(lossy_server_t, echo, params=FAST)
        lossy_client_t = Lossy(await UdpTransport.bind("127.0.0.1", 0), drop_first(2))
        client = Endpoint(lossy_client_t, params=FAST)
        # Our first two requests are lost on the way out.
        r = await client.request(peer_of(server), Request(Code.GET, "one"))
        assert r.payload == b"one|"
        assert lossy_client_t.dropped == 2 and client.stats.retransmissions == 2
        # The server's first two piggybacked responses are lost: the retransmitted CONs are
        # duplicates, answered from the dedup cache.
        r = await client.request(peer_of(lossy_server), Request(Code.GET, "two"))
        assert r.payload == b"two|"
        assert lossy_server_t.dropped == 2 and lossy_server.stats.duplicates == 2
        for ep in (client, server, lossy_server):
            await ep.close()

    run(main())


def test_duplicate_con_runs_handler_once_and_replays_response() -> None:
    calls: list[bytes] = []

    async def handler(request: Request) -> Response:
        calls.append(request.payload)
        return Response(Code.CHANGED, b"n=%d" % len(calls))

    async def main() -> None:
        server = await endpoint(handler)
        raw = await RawPeer().start()
        data = encode(Message(Type.CON, Code.POST, 0x1234, b"tok", [(Option.URI_PATH, b"c")], b"x"))
        raw.send(data, server)
        first = await raw.recv()
        raw.send(data, server)
        second = await raw.recv()
        assert first == second
        assert (first.type, first.code, first.mid, first.token, first.payload) == (
            Type.ACK,
            Code.CHANGED,
            0x1234,
            b"tok",
            b"n=1",
        )
        assert calls == [b"x"] and server.stats.duplicates == 1
        # A duplicate NON is dropped silently.
        non = encode(Message(Type.NON, Code.POST, 0x2000, b"t2", [(Option.URI_PATH, b"c")], b"y"))
        raw.send(non, server)
        reply = await raw.recv()
        assert reply.type == Type.NON and reply.payload == b"n=2"
        raw.send(non, server)
        with pytest.raises(TimeoutError):
            await raw.recv(timeout=0.2)
        assert calls == [b"x", b"y"]
        await raw.transport.close()
        await server.close()

    run(main())


def test_separate_response_when_handler_is_slow() -> None:
    calls = 0

    async def slow(request: Request) -> Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.3)  # longer than the client's first retransmission timeouts
        return Response(Code.CONTENT, b"late")

    async def main() -> None:
        server = await endpoint(slow)
        client = await endpoint(params=CoapParameters(ack_timeout=0.05, ack_random_factor=1.0, max_retransmit=4))
        r = await client.request(peer_of(server), Request(Code.GET, "slow"))
        assert r.payload == b"late" and calls == 1
        assert server.stats.duplicates >= 1  # the retransmission that triggered the empty ACK
        for _ in range(2000):  # the client's ACK of the CON response arrives
            if not server._by_mid:
                break
            await asyncio.sleep(0.01)
        assert not server._by_mid and server.stats.timeouts == 0  # the separate response was acknowledged
        await client.close()
        await server.close()

    run(main())


def test_separate_response_from_raw_peer() -> None:
    """Empty ACK first, then the response as CON (which the client must ACK)."""

    async def main() -> None:
        raw = await RawPeer().start()
        client = await endpoint()
        task = asyncio.create_task(client.request(raw_peer(raw), Request(Code.GET, "x")))
        req = await raw.recv()
        raw.transport.send(encode(Message(Type.ACK, 0, req.mid)), peer_of(client))
        await asyncio.sleep(0.3)  # well past the retransmission timeout: the empty ACK stopped it
        raw.transport.send(encode(Message(Type.CON, Code.CONTENT, 777, req.token, [], b"sep")), peer_of(client))
        ack = await raw.recv()
        assert (ack.type, ack.code, ack.mid) == (Type.ACK, 0, 777)
        r = await task
        assert r.payload == b"sep"
        assert client.stats.retransmissions == 0
        await raw.transport.close()
        await client.close()

    run(main())


def raw_peer(raw: RawPeer) -> Peer:
    host, port = raw.transport.local_address
    return Peer(host, port)


def test_timeout_and_reset() -> None:
    async def main() -> None:
        silent = await RawPeer().start()
        client = await endpoint()
        with pytest.raises(RequestTimeout) as info:
            await client.request(raw_peer(silent), Request(Code.GET, "x"))
        assert str(raw_peer(silent)) in str(info.value) and info.value.seconds > 0.3
        assert silent.received.qsize() == 1 + FAST.max_retransmit
        # NON request: no retransmission, timeout after response_timeout.
        quick = await endpoint(params=CoapParameters(response_timeout=0.1))
        with pytest.raises(RequestTimeout):
            await quick.request(raw_peer(silent), Request(Code.GET, "x", confirmable=False))

        resetter = await RawPeer().start()

        def reset(data: bytes, peer: Peer) -> None:
            resetter.transport.send(encode(Message(Type.RST, 0, decode(data).mid)), peer)

        resetter.transport.set_handler(reset)
        with pytest.raises(PeerReset):
            await client.request(raw_peer(resetter), Request(Code.GET, "x"))
        for ep in (client, quick):
            await ep.close()
        await silent.transport.close()
        await resetter.transport.close()

    run(main())


def test_close_fails_pending_requests() -> None:
    async def main() -> None:
        silent = await RawPeer().start()
        client = await endpoint(params=CoapParameters())
        task = asyncio.create_task(client.request(raw_peer(silent), Request(Code.GET, "x")))
        await silent.recv()
        await client.close()
        with pytest.raises(TransportClosed):
            await task
        with pytest.raises(TransportClosed):
            await client.request(raw_peer(silent), Request(Code.GET, "x"))
        await silent.transport.close()

    run(main())


def test_malformed_datagrams_get_rst_or_dropped_and_serving_continues() -> None:
    async def main() -> None:
        server = await endpoint(echo)
        raw = await RawPeer().start()
        # Readable CON header but an invalid option: RST with its message id.
        raw.send(bytes.fromhex("4001beef") + b"\xf0", server)
        rst = await raw.recv()
        assert (rst.type, rst.mid) == (Type.RST, 0xBEEF)
        # Garbage, a wrong version, and a malformed NON are dropped silently.
        for junk in (b"\x01", bytes.fromhex("80010001"), bytes.fromhex("5001000a") + b"\xff"):
            raw.send(junk, server)
        # A CoAP ping (empty CON) is answered with RST.
        raw.send(bytes.fromhex("40000042"), server)
        pong = await raw.recv()
        assert (pong.type, pong.mid) == (Type.RST, 0x42)
        # Unknown ACK/RST are ignored.
        raw.send(bytes.fromhex("60000999"), server)
        raw.send(bytes.fromhex("70000998"), server)
        with pytest.raises(TimeoutError):
            await raw.recv(timeout=0.2)
        client = await endpoint()
        r = await client.request(peer_of(server), Request(Code.GET, "still", payload=b"ok"))
        assert r.payload == b"still|ok"
        assert server.stats.malformed == 4
        await client.close()
        await raw.transport.close()
        await server.close()

    run(main())


def test_unmatched_response_gets_rst() -> None:
    async def main() -> None:
        client = await endpoint()
        raw = await RawPeer().start()
        raw.transport.send(encode(Message(Type.CON, Code.CONTENT, 5, b"zz", [], b"?")), peer_of(client))
        rst = await raw.recv()
        assert (rst.type, rst.mid) == (Type.RST, 5)
        await raw.transport.close()
        await client.close()

    run(main())


@pytest.mark.parametrize("nstart", [1, 3])
def test_nstart_limits_outstanding_requests(nstart: int) -> None:
    active = 0
    peak = 0

    async def handler(request: Request) -> Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        return Response(Code.CONTENT)

    async def main() -> None:
        server = await endpoint(handler, params=CoapParameters())
        client = await endpoint(params=CoapParameters(nstart=nstart))
        results = await asyncio.gather(*(client.request(peer_of(server), Request(Code.GET, "x")) for _ in range(6)))
        assert all(r.code == Code.CONTENT for r in results)
        assert not client._inflight and not client._nstart_waiters
        await client.close()
        await server.close()

    run(main())
    assert peak == nstart


# --- block-wise -----------------------------------------------------------------------------------

BODY = bytes(range(256)) * 12  # 3072 bytes


def test_block2_and_block1_between_endpoints() -> None:
    received: list[bytes] = []

    async def handler(request: Request) -> Response:
        if request.method == Code.GET:
            return Response(Code.CONTENT, BODY)
        received.append(request.payload)
        return Response(Code.CHANGED, b"got %d" % len(request.payload))

    async def main() -> None:
        server = await endpoint(handler, params=CoapParameters(block_size=256, max_body_size=4000))
        client = await endpoint(params=CoapParameters(block_size=512))
        r = await client.request(peer_of(server), Request(Code.GET, "big"))
        assert r.payload == BODY and r.block2 is None
        r = await client.request(peer_of(server), Request(Code.PUT, "big", payload=BODY))
        assert (r.code, r.payload) == (Code.CHANGED, b"got 3072")
        assert received == [BODY]
        assert r.block1 == Block(5, False, 5)
        r = await client.request(peer_of(server), Request(Code.PUT, "big", payload=BODY * 2))
        assert r.code == Code.REQUEST_ENTITY_TOO_LARGE and r.size1 == 4000
        assert received == [BODY]
        await client.close()
        await server.close()

    run(main())


def test_block2_response_size_cap() -> None:
    async def handler(request: Request) -> Response:
        return Response(Code.CONTENT, BODY)

    async def main() -> None:
        from spmp.coap.errors import BlockwiseError

        server = await endpoint(handler, params=CoapParameters(block_size=256))
        client = await endpoint(params=CoapParameters(max_body_size=1000))
        with pytest.raises(BlockwiseError):
            await client.request(peer_of(server), Request(Code.GET, "big"))
        await client.close()
        await server.close()

    run(main())


def test_block1_out_of_sequence_is_4_08() -> None:
    async def main() -> None:
        server = await endpoint(echo)
        client = await endpoint()
        part = Request(Code.PUT, "x", payload=b"a" * 16)
        part.block1 = Block(3, True, 0)
        r = await client.request(peer_of(server), part)
        assert r.code == Code.REQUEST_ENTITY_INCOMPLETE
        await client.close()
        await server.close()

    run(main())


# --- observe ----------------------------------------------------------------------------------------


class Thermometer:
    """An observable resource: keeps its observers and notifies them on change."""

    def __init__(self) -> None:
        self.endpoint: Endpoint | None = None
        self.observers: list[ServedObservation] = []
        self.cancelled: list[str] = []
        self.value = 20
        self.big = False

    def body(self) -> bytes:
        return (b"%d" % self.value) * (1000 if self.big else 1)

    async def handle(self, request: Request) -> Response:
        assert self.endpoint is not None
        if request.observe == 0:
            self.observers.append(self.endpoint.accept_observation(request, self.on_cancel))
        return Response(Code.CONTENT, self.body(), content_format=0)

    def on_cancel(self, observation: ServedObservation, reason: str) -> None:
        self.cancelled.append(reason)
        self.observers.remove(observation)

    def change(self, value: int, *, confirmable: bool = False) -> None:
        self.value = value
        for o in list(self.observers):
            o.notify(Response(Code.CONTENT, self.body(), content_format=0), confirmable=confirmable)


async def observable(params: CoapParameters = FAST) -> tuple[Endpoint, Thermometer]:
    thermo = Thermometer()
    server = await endpoint(thermo.handle, params)
    thermo.endpoint = server
    return server, thermo


def test_observe_notifications_then_passive_cancel() -> None:
    async def main() -> None:
        server, thermo = await observable()
        client = await endpoint()
        seen: list[bytes] = []
        obs = await client.observe(peer_of(server), Request(Code.GET, "t"), callback=lambda r: seen.append(r.payload))
        assert obs.active and obs.response is not None and obs.response.payload == b"20"
        assert server.served_observations == 1
        thermo.change(21)
        thermo.change(22, confirmable=True)
        thermo.change(23)
        got = [(await obs.__anext__()).payload for _ in range(3)]
        assert got == [b"21", b"22", b"23"] == seen
        await asyncio.sleep(0.05)
        assert not server._by_mid  # the CON notification was acknowledged
        # Passive cancel: the next notification draws a RST and the server drops the observer.
        obs.cancel()
        thermo.change(24)
        for _ in range(50):
            if thermo.cancelled:
                break
            await asyncio.sleep(0.01)
        assert thermo.cancelled == ["reset"] and server.served_observations == 0
        assert [r async for r in obs] == []
        await client.close()
        await server.close()

    run(main())


def test_observe_active_cancel_and_server_end() -> None:
    async def main() -> None:
        server, thermo = await observable()
        client = await endpoint()
        obs = await client.observe(peer_of(server), Request(Code.GET, "t"))
        final = await obs.deregister()
        assert final.code == Code.CONTENT and final.observe is None
        assert thermo.cancelled == ["deregistered"] and server.served_observations == 0

        obs2 = await client.observe(peer_of(server), Request(Code.GET, "t"))
        thermo.change(30)
        thermo.observers[0].notify(Response(Code.NOT_FOUND, b"gone"))
        got = [r async for r in obs2]
        assert [(r.code, r.payload) for r in got] == [(Code.CONTENT, b"30"), (Code.NOT_FOUND, b"gone")]
        assert not obs2.active and server.served_observations == 0
        await client.close()
        await server.close()

    run(main())


def test_observe_unacknowledged_con_notification_cancels() -> None:
    async def main() -> None:
        server, thermo = await observable()
        raw = await RawPeer().start()
        req = Message(Type.CON, Code.GET, 1, b"ob", [(Option.OBSERVE, b""), (Option.URI_PATH, b"t")])
        raw.send(encode(req), server)
        first = await raw.recv()
        assert first.observe is not None
        thermo.change(1, confirmable=True)
        for _ in range(100):
            if thermo.cancelled:
                break
            await asyncio.sleep(0.02)
        assert thermo.cancelled == ["timeout"]
        assert raw.received.qsize() == 1 + FAST.max_retransmit
        await raw.transport.close()
        await server.close()

    run(main())


def test_observe_not_accepted() -> None:
    async def main() -> None:
        server = await endpoint(echo)
        client = await endpoint()
        obs = await client.observe(peer_of(server), Request(Code.GET, "plain"))
        assert not obs.active and obs.response is not None and obs.response.payload == b"plain|"
        assert obs.response.observe is None
        assert [r async for r in obs] == []
        await client.close()
        await server.close()

    run(main())


def test_observe_block2_notification() -> None:
    async def main() -> None:
        server, thermo = await observable(CoapParameters(ack_timeout=0.05, block_size=256))
        thermo.big = True
        client = await endpoint()
        obs = await client.observe(peer_of(server), Request(Code.GET, "t"))
        assert obs.response is not None and obs.response.payload == b"20" * 1000
        thermo.change(33)
        n = await obs.__anext__()
        assert n.payload == b"33" * 1000 and n.block2 is None
        await client.close()
        await server.close()

    run(main())


def test_reordering_rule() -> None:
    assert is_newer(1, 0.0, 2, 0.0)
    assert not is_newer(2, 0.0, 1, 0.0)
    assert not is_newer(5, 0.0, 5, 0.0)
    assert is_newer(0xFFFFFF, 0.0, 3, 0.0)  # wrapped around
    assert not is_newer(3, 0.0, 0xFFFFFF, 0.0)
    assert is_newer(10, 0.0, 2, 129.0)  # stale number but more than 128 s later


def test_stale_notification_dropped() -> None:
    async def main() -> None:
        raw = await RawPeer().start()
        client = await endpoint()
        task = asyncio.create_task(client.observe(raw_peer(raw), Request(Code.GET, "t")))
        req = await raw.recv()
        send = raw.transport.send
        to = peer_of(client)

        def note(mid: int, seq: int, body: bytes, mtype: int = Type.NON) -> bytes:
            opts: list[tuple[int, bytes]] = [(Option.OBSERVE, seq.to_bytes(3, "big"))]
            return encode(Message(mtype, Code.CONTENT, mid, req.token, opts, body))

        send(encode(Message(Type.ACK, Code.CONTENT, req.mid, req.token, [(Option.OBSERVE, b"\x10")], b"a")), to)
        obs = await task
        send(note(100, 0x12, b"b"), to)
        send(note(101, 0x11, b"stale"), to)
        send(note(102, 0x13, b"c", Type.CON), to)
        ack = await raw.recv()
        assert (ack.type, ack.mid) == (Type.ACK, 102)
        assert [(await obs.__anext__()).payload for _ in range(2)] == [b"b", b"c"]
        await client.close()
        await raw.transport.close()

    run(main())


# --- against libcoap ----------------------------------------------------------------------------------


async def libcoap(*args: str, timeout: float = 15.0) -> str:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return out.decode(errors="replace")


@needs_libcoap
def test_libcoap_client_against_our_endpoint() -> None:
    store: dict[str, bytes] = {"big": BODY.hex().encode()[:3000]}

    async def handler(request: Request) -> Response:
        name = "/".join(request.path)
        if request.method == Code.GET:
            if name not in store:
                raise ResponseError(Code.NOT_FOUND, "nope")
            return Response(Code.CONTENT, store[name], content_format=0)
        if request.method == Code.PUT:
            store[name] = request.payload
            return Response(Code.CHANGED)
        raise ResponseError(Code.METHOD_NOT_ALLOWED)

    async def main() -> None:
        server = await endpoint(handler, params=CoapParameters())
        uri = f"coap://127.0.0.1:{server.transport.local_address[1]}/"
        out = await libcoap("coap-client-notls", "-m", "put", "-e", "hello", uri + "greeting")
        assert "ERR" not in out and store["greeting"] == b"hello"
        out = await libcoap("coap-client-notls", "-m", "get", uri + "greeting")
        assert out.strip() == "hello"
        out = await libcoap("coap-client-notls", "-m", "get", uri + "absent")
        assert "4.04" in out
        # Block-wise GET of a 3000-byte body in 64-byte blocks, and a block-wise PUT.
        out = await libcoap("coap-client-notls", "-m", "get", "-b", "64", uri + "big")
        assert out.strip() == store["big"].decode()
        out = await libcoap("coap-client-notls", "-m", "put", "-b", "64", "-e", "x" * 1500, uri + "upload")
        assert "ERR" not in out and store["upload"] == b"x" * 1500
        await server.close()

    run(main(), timeout=60)


@needs_libcoap
def test_libcoap_client_observes_our_resource() -> None:
    async def main() -> None:
        server, thermo = await observable(CoapParameters())
        uri = f"coap://127.0.0.1:{server.transport.local_address[1]}/t"
        proc = asyncio.create_task(libcoap("coap-client-notls", "-s", "2", "-w", uri))
        for _ in range(200):
            if thermo.observers:
                break
            await asyncio.sleep(0.01)
        assert thermo.observers
        for value in (21, 22, 23):
            await asyncio.sleep(0.2)
            thermo.change(value, confirmable=value == 22)
        out = await proc
        lines = out.split()
        assert lines[:4] == ["20", "21", "22", "23"], out
        # libcoap ends its observation when -s runs out; the next notification finds it gone.
        thermo.change(24, confirmable=True)
        for _ in range(300):
            if thermo.cancelled:
                break
            await asyncio.sleep(0.02)
        assert thermo.cancelled and server.served_observations == 0
        await server.close()

    run(main(), timeout=60)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@needs_libcoap
def test_our_client_against_libcoap_server() -> None:
    async def main() -> None:
        port = free_udp_port()
        proc = await asyncio.create_subprocess_exec(
            "coap-server-notls", "-A", "127.0.0.1", "-p", str(port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        client = await endpoint(params=CoapParameters(ack_timeout=0.2))
        server = Peer("127.0.0.1", port)
        try:
            for _ in range(50):
                try:
                    r = await client.request(server, Request(Code.GET, "/"))
                    break
                except (RequestTimeout, PeerReset):
                    await asyncio.sleep(0.1)
            assert r.code == Code.CONTENT and b"libcoap" in r.payload
            r = await client.request(server, Request(Code.GET, "time"))
            assert r.code == Code.CONTENT and r.payload
            r = await client.request(server, Request(Code.GET, "nothing-here"))
            assert r.code == Code.NOT_FOUND
            obs = await client.observe(server, Request(Code.GET, "time"))
            assert obs.active
            note = await asyncio.wait_for(obs.__anext__(), 5)
            assert note.code == Code.CONTENT and note.observe is not None
            final = await obs.deregister()
            assert final.code == Code.CONTENT
        finally:
            await client.close()
            proc.terminate()
            await proc.wait()

    run(main(), timeout=60)


def test_block1_request_with_block2_response() -> None:
    async def handler(request: Request) -> Response:
        return Response(Code.CHANGED, request.payload[::-1])

    async def main() -> None:
        server = await endpoint(handler, params=CoapParameters(block_size=128))
        client = await endpoint(params=CoapParameters(block_size=256))
        r = await client.request(peer_of(server), Request(Code.POST, "rev", payload=BODY))
        assert r.code == Code.CHANGED and r.payload == BODY[::-1]
        await client.close()
        await server.close()

    run(main())


def test_observe_reregistration_replaces_the_old_observation() -> None:
    async def main() -> None:
        server, thermo = await observable()
        raw = await RawPeer().start()
        req = Message(Type.CON, Code.GET, 1, b"ob", [(Option.OBSERVE, b""), (Option.URI_PATH, b"t")])
        raw.send(encode(req), server)
        first = await raw.recv()
        req.mid = 2
        raw.send(encode(req), server)
        second = await raw.recv()
        assert first.observe is not None and second.observe is not None
        assert thermo.cancelled == ["re-registered"] and server.served_observations == 1
        thermo.change(5)
        note = await raw.recv()
        assert note.token == b"ob" and note.payload == b"5" and note.observe is not None
        assert is_newer(second.observe, 0.0, note.observe, 0.0)
        await raw.transport.close()
        await server.close()

    run(main())
