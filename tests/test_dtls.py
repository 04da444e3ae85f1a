"""DTLS (PSK) transports against real peers on 127.0.0.1: libcoap's OpenSSL tools and each other.

Every test runs its own event loop and binds ephemeral ports. Retransmission timeouts are shrunk so
loss and timeout paths take a fraction of a second. Tests assert behaviour (what was refused, logged,
counted, delivered), never speed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Coroutine
from typing import Any, cast

import pytest

from _peers import needs_tools
from spmp.coap.dtls import (
    LWM2M_PSK_CIPHERS,
    DtlsClientTransport,
    DtlsError,
    DtlsHandshakeError,
    DtlsServerTransport,
    InMemoryPskStore,
    split_datagrams,
)
from spmp.coap.errors import CoapError
from spmp.coap.transport import Peer

KEY = b"secret-key-0123"
WRONG_KEY = b"not-the-right-key"

needs_client = needs_tools("coap-client-openssl")
needs_server = needs_tools("coap-server-openssl")


def run(coro: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)

    asyncio.run(bounded())


def ack_205(request: bytes, payload: bytes = b"hello") -> bytes:
    """A piggybacked ACK 2.05 Content for a CoAP request: same message id and token."""
    tkl = request[0] & 0x0F
    return bytes([0x60 | tkl, 0x45]) + request[2:4] + request[4 : 4 + tkl] + b"\xff" + payload


async def server(store: InMemoryPskStore | None = None, **options: Any) -> DtlsServerTransport:
    options.setdefault("retransmit_timeout", 0.1)
    return await DtlsServerTransport.bind("127.0.0.1", 0, store or InMemoryPskStore({"dev1": KEY}), **options)


async def client(port: int, identity: str = "dev1", key: bytes = KEY, **options: Any) -> DtlsClientTransport:
    options.setdefault("retransmit_timeout", 0.1)
    options.setdefault("handshake_timeout", 5.0)
    return await DtlsClientTransport.connect("127.0.0.1", port, identity, key, **options)


class Inbox:
    """A handler that queues what a transport delivers."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Peer]] = asyncio.Queue()

    def __call__(self, data: bytes, peer: Peer) -> None:
        self.queue.put_nowait((data, peer))

    async def get(self, timeout: float = 5.0) -> tuple[bytes, Peer]:
        return await asyncio.wait_for(self.queue.get(), timeout)


async def wait_until(condition: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def coap_client(*args: str) -> str:
    """Run coap-client-openssl (bounded by -B) and return its combined output.

    It exits 0 even when the DTLS handshake fails, so callers check the output.
    """
    proc = await asyncio.create_subprocess_exec(
        "coap-client-openssl",
        "-B",
        "10",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return out.decode(errors="replace")


def echo_handler(transport: DtlsServerTransport, seen: list[Peer]) -> Any:
    def handle(data: bytes, peer: Peer) -> None:
        seen.append(peer)
        transport.send(ack_205(data), peer)

    return handle


def failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "dtls handshake failed" and r.name.endswith("server")]


# --- libcoap's coap-client-openssl against our server ---------------------------------------------------


@needs_client
def test_coap_client_get_over_psk() -> None:
    async def main() -> None:
        srv = await server()
        seen: list[Peer] = []
        srv.set_handler(echo_handler(srv, seen))
        port = srv.local_address[1]
        try:
            out = await coap_client("-m", "get", "-k", KEY.decode(), "-u", "dev1", f"coaps://127.0.0.1:{port}/x")
        finally:
            await srv.close()
        assert "hello" in out
        assert [p.identity for p in seen] == ["dev1"]
        assert srv.stats.handshakes_ok == 1
        assert srv.stats.handshakes_failed == 0

    run(main())


@needs_client
def test_coap_client_wrong_key_is_refused_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        srv = await server()
        seen: list[Peer] = []
        srv.set_handler(echo_handler(srv, seen))
        port = srv.local_address[1]
        try:
            out = await coap_client("-m", "get", "-k", WRONG_KEY.decode(), "-u", "dev1", f"coaps://127.0.0.1:{port}/x")
        finally:
            await srv.close()
        assert "hello" not in out
        assert "bad record mac" in out.lower()  # our alert reached the client: refused, not left to time out
        assert "ERR" in out
        assert seen == []
        assert srv.stats.handshakes_failed == 1
        assert srv.stats.unknown_identity == 0
        assert srv.stats.sessions_open == 0
        (record,) = failures(caplog)
        assert record.levelno == logging.WARNING
        assert record.__dict__["identity"] == "dev1"
        assert record.__dict__["peer"].startswith("127.0.0.1:")
        assert "wrong pre-shared key" in record.__dict__["reason"]

    run(main())
    assert KEY.decode() not in caplog.text
    assert WRONG_KEY.decode() not in caplog.text


@needs_client
def test_coap_client_unknown_identity_is_refused_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        srv = await server()
        srv.set_handler(echo_handler(srv, []))
        port = srv.local_address[1]
        try:
            out = await coap_client("-m", "get", "-k", KEY.decode(), "-u", "intruder", f"coaps://127.0.0.1:{port}/x")
        finally:
            await srv.close()
        assert "hello" not in out
        assert "unknown psk identity" in out.lower()
        assert srv.stats.unknown_identity == 1
        assert srv.stats.handshakes_failed == 1
        (record,) = failures(caplog)
        assert record.__dict__["identity"] == "intruder"
        assert record.__dict__["reason"] == "unknown PSK identity"

    run(main())


# --- our client against libcoap's coap-server-openssl ---------------------------------------------------


def free_port_pair() -> int:
    """A port P with P and P+1 free for UDP and TCP (coap-server listens on P and DTLS on P+1)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port >= 65535:
            continue
        sockets = []
        try:
            for p in (port, port + 1):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(socket.AF_INET, kind)
                    sockets.append(s)
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port pair")


async def connect_when_up(port: int, key: bytes, **options: Any) -> DtlsClientTransport:
    """Connect once coap-server-openssl listens (until then the port answers ICMP unreachable)."""
    for _ in range(100):
        try:
            return await DtlsClientTransport.connect("127.0.0.1", port, "dev1", key, **options)
        except DtlsHandshakeError as exc:
            if "port unreachable" not in exc.reason:
                raise
            await asyncio.sleep(0.05)
    raise AssertionError("coap-server-openssl did not come up")


@needs_server
def test_our_client_against_coap_server_openssl() -> None:
    async def main() -> None:
        base = free_port_pair()
        proc = await asyncio.create_subprocess_exec(
            "coap-server-openssl",
            *("-A", "127.0.0.1", "-p", str(base), "-k", KEY.decode(), "-h", "spmp-hint"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            cli = await connect_when_up(base + 1, KEY, retransmit_timeout=0.2, handshake_timeout=5.0)
            inbox = Inbox()
            cli.set_handler(inbox)
            assert cli.cipher in LWM2M_PSK_CIPHERS
            # CON GET / with message id 0x1234 and token abcd; libcoap's default resource answers.
            cli.send(bytes([0x42, 0x01, 0x12, 0x34, 0xAB, 0xCD]), cli.peer)
            data, peer = await inbox.get()
            assert peer == cli.peer and peer.identity == "dev1"
            assert data[0] >> 6 == 1 and (data[0] >> 4) & 3 == 2  # version 1, ACK
            assert data[1] == 0x45  # 2.05 Content
            assert data[2:4] == b"\x12\x34" and data[4:6] == b"\xab\xcd"
            assert b"libcoap" in data
            await cli.close()

            # OpenSSL drops a Finished it cannot verify without an alert: the handshake still ends,
            # with an error that says the server answered but did not complete.
            with pytest.raises(DtlsHandshakeError, match="although the server answered") as caught:
                await connect_when_up(base + 1, WRONG_KEY, retransmit_timeout=0.2, handshake_timeout=1.0)
            assert f"127.0.0.1:{base + 1}" in str(caught.value)
        finally:
            proc.terminate()
            await proc.wait()

    run(main())


# --- our client against our server ----------------------------------------------------------------------


@pytest.mark.parametrize("cipher", LWM2M_PSK_CIPHERS)
def test_data_both_ways_and_server_initiated(cipher: str) -> None:
    async def main() -> None:
        srv = await server()
        srv_inbox = Inbox()
        srv.set_handler(srv_inbox)
        cli = await client(srv.local_address[1], ciphers=(cipher,))
        cli_inbox = Inbox()
        cli.set_handler(cli_inbox)
        try:
            assert cli.connected and cli.cipher == cipher
            cli.send(b"from client", cli.peer)
            data, peer = await srv_inbox.get()
            assert data == b"from client"
            assert peer == Peer("127.0.0.1", cli.local_address[1], "dev1")
            assert srv.session_identity(peer.address) == "dev1"

            srv.send(b"reply", peer)
            assert await cli_inbox.get() == (b"reply", Peer("127.0.0.1", srv.local_address[1], "dev1"))

            # The server opens an exchange on the client's session, as an LwM2M server does.
            (established,) = srv.established_peers()
            srv.send(b"server request", established)
            assert (await cli_inbox.get())[0] == b"server request"

            # Several datagrams in a row stay separate records.
            for i in range(5):
                cli.send(b"n%d" % i, cli.peer)
            assert [(await srv_inbox.get())[0] for _ in range(5)] == [b"n%d" % i for i in range(5)]
            assert srv.stats.sessions_open == 1
        finally:
            await cli.close()
            await wait_until(lambda: srv.stats.sessions_open == 0)  # close_notify ended the server's side
            await srv.close()

    run(main())


def test_wrong_key_raises_handshake_error_from_the_servers_alert(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        srv = await server()
        loop = asyncio.get_running_loop()
        try:
            started = loop.time()
            with pytest.raises(DtlsHandshakeError, match="bad_record_mac") as caught:
                await client(srv.local_address[1], key=WRONG_KEY, handshake_timeout=30.0)
            # Refused by an alert, not by waiting out the handshake timeout.
            assert caught.value.alert == 20
            assert loop.time() - started < 15.0
            assert isinstance(caught.value, DtlsError) and isinstance(caught.value, CoapError)
            assert srv.stats.handshakes_failed == 1
            assert srv.stats.sessions_open == srv.stats.handshakes_in_progress == 0

            with pytest.raises(DtlsHandshakeError, match="unknown_psk_identity") as caught:
                await client(srv.local_address[1], identity="stranger")
            assert caught.value.alert == 115
            assert srv.stats.unknown_identity == 1
            assert srv.stats.handshakes_failed == 2

            # The refused peers left nothing behind, and a good client still gets in.
            good = await client(srv.local_address[1])
            await good.close()
            assert srv.stats.handshakes_ok == 1
        finally:
            await srv.close()

    run(main())
    assert KEY.decode() not in caplog.text and WRONG_KEY.decode() not in caplog.text


class LossyProxy(asyncio.DatagramProtocol):
    """Relays client <-> server datagrams, dropping the n-th of each direction as told (1-based)."""

    def __init__(self, server: tuple[str, int], drop_to_server: set[int], drop_to_client: set[int]) -> None:
        self.server = server
        self.drop = {"to_server": drop_to_server, "to_client": drop_to_client}
        self.count = {"to_server": 0, "to_client": 0}
        self.dropped = 0
        self.client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # a selector transport; not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        direction = "to_client" if addr == self.server else "to_server"
        if direction == "to_server":
            self.client = addr
        self.count[direction] += 1
        if self.count[direction] in self.drop[direction]:
            self.dropped += 1
            return
        target = self.client if direction == "to_client" else self.server
        if target is not None:
            self.transport.sendto(data, target)


@pytest.mark.parametrize(
    ("to_server", "to_client"),
    [
        ({1}, set()),  # the first ClientHello
        ({2}, set()),  # the ClientHello with the cookie
        (set(), {2}),  # the server's ServerHello…ServerHelloDone flight
        ({3}, set()),  # the client's ClientKeyExchange/ChangeCipherSpec/Finished flight
        (set(), {3}),  # the server's final ChangeCipherSpec/Finished flight
        ({1, 2}, {2, 3}),  # a bad minute
    ],
)
def test_lost_flights_are_retransmitted(to_server: set[int], to_client: set[int]) -> None:
    async def main() -> None:
        srv = await server()
        inbox = Inbox()
        srv.set_handler(inbox)
        loop = asyncio.get_running_loop()
        relay, proxy = await loop.create_datagram_endpoint(
            lambda: LossyProxy(srv.local_address, to_server, to_client), local_addr=("127.0.0.1", 0)
        )
        try:
            cli = await client(relay.get_extra_info("sockname")[1], retransmit_timeout=0.05)
            cli.send(b"made it", cli.peer)
            assert (await inbox.get())[0] == b"made it"
            await cli.close()
            assert proxy.dropped == len(to_server) + len(to_client)
            assert srv.stats.handshakes_ok == 1 and srv.stats.handshakes_failed == 0
        finally:
            relay.close()
            await srv.close()

    run(main())


def test_no_answer_times_out_with_a_clear_message() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        silent, counter = await loop.create_datagram_endpoint(Counter, local_addr=("127.0.0.1", 0))
        port = silent.get_extra_info("sockname")[1]
        try:
            with pytest.raises(DtlsHandshakeError) as caught:
                await client(port, retransmit_timeout=0.05, handshake_timeout=0.5)
        finally:
            silent.close()
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message
        assert "no answer within 0.5 s" in message
        assert counter.received >= 3  # the ClientHello was retransmitted on the way

    run(main())


class Counter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1


def test_port_unreachable_fails_at_once() -> None:
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises(DtlsHandshakeError, match="port unreachable"):
            await client(port, handshake_timeout=30.0)

    run(main())


def test_idle_session_is_evicted_and_client_reconnects() -> None:
    async def main() -> None:
        srv = await server(idle_timeout=0.2)
        inbox = Inbox()
        srv.set_handler(inbox)
        cli = await client(srv.local_address[1])
        try:
            await wait_until(lambda: srv.stats.evicted == 1)
            assert srv.stats.sessions_open == 0
            await wait_until(lambda: not cli.connected)  # the eviction's close_notify reached the client
            cli.send(b"lost", cli.peer)  # no session: dropped, like UDP
            assert cli.dropped_sends == 1

            await cli.reconnect()
            cli.send(b"back", cli.peer)
            assert (await inbox.get())[0] == b"back"
            assert srv.stats.handshakes_ok == 2
        finally:
            await cli.close()
            await srv.close()

    run(main())


def test_max_sessions_refuses_new_handshakes(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        srv = await server(max_sessions=1)
        srv.set_handler(Inbox())
        first = await client(srv.local_address[1])
        try:
            with pytest.raises(DtlsHandshakeError, match="internal_error"):
                await client(srv.local_address[1])
            assert srv.stats.refused_max_sessions == 1
            assert any(r.getMessage() == "dtls handshake refused" for r in caplog.records)
            assert first.connected  # the refused peer did not disturb the established one

            await first.close()
            await wait_until(lambda: srv.stats.sessions_open == 0)
            second = await client(srv.local_address[1])
            await second.close()
        finally:
            await first.close()
            await srv.close()

    run(main())


def test_garbage_is_dropped_and_other_sessions_carry_on() -> None:
    async def main() -> None:
        srv = await server()
        inbox = Inbox()
        srv.set_handler(inbox)
        cli = await client(srv.local_address[1])
        loop = asyncio.get_running_loop()
        raw, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        try:
            target = srv.local_address
            raw.sendto(b"\x00not dtls at all", target)
            raw.sendto(bytes.fromhex("17fefd0001000000000005000400") + b"junk", target)  # app data, no session
            # A ClientHello header with a body mbedtls cannot parse.
            raw.sendto(bytes.fromhex("16fefd000000000000000000100100000c0000000000000c") + b"\xff" * 16, target)
            await wait_until(lambda: srv.stats.dropped_datagrams >= 3)
            assert srv.stats.handshakes_in_progress == 0  # no state was created for any of it

            cli.send(b"still fine", cli.peer)
            assert (await inbox.get())[0] == b"still fine"
            assert srv.stats.sessions_open == 1
        finally:
            raw.close()
            await cli.close()
            await srv.close()

    run(main())


def test_client_restarting_from_the_same_address_gets_a_new_session() -> None:
    async def main() -> None:
        srv = await server()
        inbox = Inbox()
        srv.set_handler(inbox)
        old = await client(srv.local_address[1])
        address = old.local_address
        await old.abort()  # power loss: no close_notify, the server still holds the session
        assert srv.stats.sessions_open == 1
        new = await client(srv.local_address[1], local_address=address)
        try:
            new.send(b"rebooted", new.peer)
            data, peer = await inbox.get()
            assert data == b"rebooted" and peer.address == address
            assert srv.stats.sessions_open == 1
            assert srv.stats.handshakes_ok == 2
        finally:
            await new.close()
            await srv.close()

    run(main())


def test_client_restarting_mid_handshake_is_not_stuck_behind_its_half_open_session() -> None:
    async def main() -> None:
        srv = await server(handshake_timeout=30.0)
        inbox = Inbox()
        srv.set_handler(inbox)
        loop = asyncio.get_running_loop()
        # Through the proxy both attempts come from the same address, as a rebooted device's would.
        relay, proxy = await loop.create_datagram_endpoint(
            lambda: LossyProxy(srv.local_address, set(), set(range(2, 1000))), local_addr=("127.0.0.1", 0)
        )
        port = relay.get_extra_info("sockname")[1]
        try:
            with pytest.raises(DtlsHandshakeError):
                await client(port, handshake_timeout=0.3)  # the server's flights never arrive
            assert srv.stats.handshakes_in_progress == 1
            proxy.drop["to_client"] = set()
            retry = await client(port, handshake_timeout=5.0)
            retry.send(b"second try", retry.peer)
            assert (await inbox.get())[0] == b"second try"
            assert srv.stats.handshakes_in_progress == 0 and srv.stats.sessions_open == 1
            await retry.close()
        finally:
            relay.close()
            await srv.close()

    run(main())


def test_send_without_a_session_or_to_another_identity_is_dropped() -> None:
    async def main() -> None:
        srv = await server(InMemoryPskStore({"dev1": KEY, "dev2": b"other-key"}))
        inbox = Inbox()
        srv.set_handler(inbox)
        cli = await client(srv.local_address[1])
        cli_inbox = Inbox()
        cli.set_handler(cli_inbox)
        try:
            srv.send(b"nobody there", Peer("127.0.0.1", 9, "dev1"))
            srv.send(b"wrong device", Peer("127.0.0.1", cli.local_address[1], "dev2"))
            assert srv.stats.dropped_sends == 2
            srv.send(b"right device", Peer("127.0.0.1", cli.local_address[1], "dev1"))
            assert (await cli_inbox.get())[0] == b"right device"
            with pytest.raises(ValueError, match="only talks to"):
                cli.send(b"x", Peer("127.0.0.1", 9))
        finally:
            await cli.close()
            await srv.close()

    run(main())


def test_server_close_sends_close_notify() -> None:
    async def main() -> None:
        srv = await server()
        cli = await client(srv.local_address[1])
        try:
            await srv.close()
            await wait_until(lambda: not cli.connected)
        finally:
            await cli.close()

    run(main())


def test_psk_store_errors_are_logged_and_refused(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def lookup(self, identity: str) -> bytes | None:
            raise RuntimeError("database away")

    async def main() -> None:
        srv = await DtlsServerTransport.bind("127.0.0.1", 0, Broken(), retransmit_timeout=0.1)
        try:
            with pytest.raises(DtlsHandshakeError):
                await client(srv.local_address[1])
            assert srv.stats.handshakes_failed == 1
        finally:
            await srv.close()

    run(main())
    assert any(r.getMessage() == "psk store lookup failed" and r.exc_info for r in caplog.records)
    (record,) = failures(caplog)
    assert record.__dict__["reason"] == "PSK store error"


def test_handshake_timeout_frees_half_open_sessions() -> None:
    async def main() -> None:
        srv = await server(handshake_timeout=0.3)
        loop = asyncio.get_running_loop()
        # A proxy that lets the client's flights through but never returns the server's second flight:
        # the server holds a half-open session until its handshake timeout.
        relay, _ = await loop.create_datagram_endpoint(
            lambda: LossyProxy(srv.local_address, set(), set(range(2, 100))), local_addr=("127.0.0.1", 0)
        )
        try:
            with pytest.raises(DtlsHandshakeError):
                await client(relay.get_extra_info("sockname")[1], handshake_timeout=0.5)
            # The client's retransmitted hellos may have opened another half-open session; all expire.
            await wait_until(lambda: srv.stats.handshakes_in_progress == 0)
            assert srv.stats.handshake_timeouts >= 1
            assert srv.stats.handshakes_failed == srv.stats.handshake_timeouts
            assert srv.stats.handshakes_ok == 0
        finally:
            relay.close()
            await srv.close()

    run(main())


# --- small parts ------------------------------------------------------------------------------------------


def test_in_memory_store_never_shows_keys() -> None:
    store = InMemoryPskStore({"dev1": KEY})
    store.set("dev2", b"k2")
    store.remove("dev1")
    assert store.lookup("dev1") is None and store.lookup("dev2") == b"k2"
    assert "dev2" in store and len(store) == 1
    assert "k2" not in repr(store)
    with pytest.raises(ValueError, match="empty"):
        store.set("dev3", b"")


def test_split_datagrams_keeps_records_whole() -> None:
    def record(length: int) -> bytes:
        return bytes.fromhex("16fefd0000000000000000") + length.to_bytes(2, "big") + b"x" * length

    stream = record(100) + record(100) + record(1000)
    assert split_datagrams(stream, 300) == [record(100) + record(100), record(1000)]
    assert split_datagrams(b"\x16\xfe", 300) == [b"\x16\xfe"]
