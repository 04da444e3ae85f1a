"""Registration interface of the management server against real peers: libcoap's command-line clients
over CoAP and CoAP/DTLS (PSK), and raw datagrams for floods and garbage. Ephemeral ports on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path as FilePath

from _server_helpers import coap_client, location, make_server, needs_libcoap, response_line, run
from spmp.coap.message import Code, Message, Option, Type, decode, encode
from spmp.store import MemoryStore, SecurityInfo, SqliteStore

pytestmark = needs_libcoap

LINKS = "</3/0>,</1/0>,</3201/0>"


def rd(port: int, query: str, scheme: str = "coap") -> str:
    return f"{scheme}://127.0.0.1:{port}/rd?{query}"


def test_register_update_deregister_with_libcoap() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            server = make_server(store)
            await server.start()
            events = server.events.subscribe()
            try:
                assert server.coap_address is not None
                port = server.coap_address[1]
                out = await coap_client("-m", "post", "-t", "40", "-e", LINKS, rd(port, "ep=dev1&lt=60&lwm2m=1.1&b=U"))
                assert "c:2.01" in response_line(out)
                loc = location(out)
                assert loc.startswith("rd/")
                registration = server.registration("dev1")
                assert registration is not None
                assert registration.registration_id == loc[3:]
                assert registration.lifetime == 60
                assert registration.instances == ("/1/0", "/3/0", "/3201/0")
                stored = await store.get_registration("dev1")
                assert stored is not None and stored.registration_id == registration.registration_id
                event = await events.get(5)
                assert (event.kind, event.endpoint) == ("registered", "dev1")

                out = await coap_client("-m", "post", f"coap://127.0.0.1:{port}/{loc}?lt=120")
                assert "c:2.04" in response_line(out)
                assert (await events.get(5)).kind == "updated"
                stored = await store.get_registration("dev1")
                assert stored is not None and stored.lifetime == 120

                out = await coap_client("-m", "post", f"coap://127.0.0.1:{port}/rd/nosuchid")
                assert "c:4.04" in response_line(out)

                out = await coap_client("-m", "delete", f"coap://127.0.0.1:{port}/{loc}")
                assert "c:2.02" in response_line(out)
                assert (await events.get(5)).kind == "deregistered"
                assert server.registration("dev1") is None
                assert await store.get_registration("dev1") is None
                out = await coap_client("-m", "delete", f"coap://127.0.0.1:{port}/{loc}")
                assert "c:4.04" in response_line(out)
            finally:
                events.close()
                await server.stop()

    run(main())


def test_bad_registrations_get_diagnostics() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            server = make_server(store)
            await server.start()
            try:
                assert server.coap_address is not None
                port = server.coap_address[1]
                out = await coap_client("-m", "post", "-t", "40", "-e", LINKS, rd(port, "lt=60&lwm2m=1.1"))
                assert "c:4.00" in response_line(out)
                assert "endpoint name" in out
                out = await coap_client("-m", "post", "-t", "40", "-e", LINKS, rd(port, "ep=x&lt=soon"))
                assert "c:4.00" in response_line(out)
                out = await coap_client("-m", "post", "-t", "40", "-e", LINKS, rd(port, "ep=x&lwm2m=9.9"))
                assert "c:4.12" in response_line(out)
                out = await coap_client("-m", "post", "-t", "40", "-e", "</3/0", rd(port, "ep=x"))
                assert "c:4.00" in response_line(out)
                out = await coap_client("-m", "put", f"coap://127.0.0.1:{port}/rd")
                assert "c:4.05" in response_line(out)
                out = await coap_client("-m", "get", f"coap://127.0.0.1:{port}/elsewhere")
                assert "c:4.04" in response_line(out)
                assert server.registrations() == []
                assert server.registrations_manager.stats.bad_requests == 4
            finally:
                await server.stop()

    run(main())


def test_reregistration_replaces_the_old_one() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            server = make_server(store)
            await server.start()
            try:
                assert server.coap_address is not None
                port = server.coap_address[1]
                first = location(await coap_client("-m", "post", "-t", "40", "-e", LINKS, rd(port, "ep=dev1")))
                second = location(await coap_client("-m", "post", "-t", "40", "-e", "</3/0>", rd(port, "ep=dev1")))
                assert first != second
                registration = server.registration("dev1")
                assert registration is not None and registration.instances == ("/3/0",)
                out = await coap_client("-m", "post", f"coap://127.0.0.1:{port}/{first}")
                assert "c:4.04" in response_line(out)
                assert len(server.registrations()) == 1
            finally:
                await server.stop()

    run(main())


def test_lifetime_expiry_emits_expired() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            server = make_server(store)
            await server.start()
            events = server.events.subscribe(kinds={"expired"})
            try:
                assert server.coap_address is not None
                port = server.coap_address[1]
                out = await coap_client("-m", "post", "-t", "40", "-e", LINKS, rd(port, "ep=short&lt=1"))
                assert "c:2.01" in response_line(out)
                await coap_client("-m", "post", "-t", "40", "-e", LINKS, rd(port, "ep=long&lt=600"))
                event = await events.get(10)
                assert (event.kind, event.endpoint) == ("expired", "short")
                assert server.registration("short") is None
                assert await store.get_registration("short") is None
                assert server.registration("long") is not None
            finally:
                events.close()
                await server.stop()

    run(main())


def test_restart_with_sqlite_keeps_registrations(tmp_path: FilePath) -> None:
    async def main() -> None:
        db = tmp_path / "spmp.db"
        async with SqliteStore(db) as store:
            server = make_server(store)
            await server.start()
            try:
                assert server.coap_address is not None
                port = server.coap_address[1]
                await coap_client("-m", "post", "-t", "40", "-e", LINKS, rd(port, "ep=keep&lt=600"))
                await coap_client("-m", "post", "-t", "40", "-e", LINKS, rd(port, "ep=brief&lt=2"))
                before = server.registration("keep")
                assert before is not None
            finally:
                await server.stop()
        async with SqliteStore(db) as store:
            server = make_server(store)
            await server.start()
            events = server.events.subscribe(kinds={"expired"})
            try:
                after = server.registration("keep")
                assert after == before
                # The short one still expires at its own deadline, after the restart.
                event = await events.get(10)
                assert event.endpoint == "brief"
                assert server.registration("keep") is not None
                # And the restored registration still takes updates.
                assert server.coap_address is not None
                port = server.coap_address[1]
                out = await coap_client("-m", "post", f"coap://127.0.0.1:{port}/rd/{after.registration_id}")
                assert "c:2.04" in response_line(out)
            finally:
                events.close()
                await server.stop()

    run(main())


def _register_datagram(mid: int, endpoint: str) -> bytes:
    options = [
        (Option.URI_PATH, b"rd"),
        (Option.CONTENT_FORMAT, bytes([40])),
        (Option.URI_QUERY, f"ep={endpoint}".encode()),
    ]
    return encode(Message(Type.CON, Code.POST, mid, mid.to_bytes(2, "big"), options, b"</3/0>"))


def test_registration_flood_is_rate_limited_per_address() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            server = make_server(store, registration_rate=0.5, registration_burst=3)
            await server.start()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            try:
                assert server.coap_address is not None
                port = server.coap_address[1]
                codes: list[int] = []
                max_age: int | None = None
                for i in range(10):
                    await loop.sock_sendto(sock, _register_datagram(i + 1, f"flood{i}"), ("127.0.0.1", port))
                    reply = decode(await asyncio.wait_for(loop.sock_recv(sock, 2048), 5))
                    codes.append(reply.code)
                    if reply.code == Code.SERVICE_UNAVAILABLE:
                        max_age = reply.max_age
                assert codes.count(Code.CREATED) == 3
                assert codes.count(Code.SERVICE_UNAVAILABLE) == 7
                assert max_age is not None and max_age >= 1
                assert server.registrations_manager.stats.rate_limited == 7
                # Another source address is not affected (the whole 127/8 is loopback on Linux).
                out = await coap_client("-a", "127.0.0.2", "-m", "post", "-t", "40", "-e", LINKS, rd(port, "ep=other"))
                assert "c:2.01" in response_line(out)
                assert server.registration("other") is not None
            finally:
                sock.close()
                await server.stop()

    run(main())


def test_malformed_datagrams_do_not_disturb_others() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            server = make_server(store)
            await server.start()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                assert server.coap_address is not None
                port = server.coap_address[1]
                garbage = [b"", b"\xff", b"\x40\x02\x00", b"\x48\x02\x00\x01abc", b"\x40\x02\x00\x01\xff"]
                garbage.append(bytes(range(256)))
                for data in garbage:
                    sock.sendto(data, ("127.0.0.1", port))
                # Options out of any sane shape, a huge payload, an unknown critical option:
                sock.sendto(_register_datagram(7, "x")[:-3] + b"\xd9\xff", ("127.0.0.1", port))
                sock.sendto(_register_datagram(8, "big") + b"A" * 60000, ("127.0.0.1", port))
                out = await coap_client("-m", "post", "-t", "40", "-e", LINKS, rd(port, "ep=good"))
                assert "c:2.01" in response_line(out)
                assert server.registration("good") is not None
                assert server.registration("big") is None
                assert server.stats()["coap"]["malformed"] >= 3
            finally:
                sock.close()
                await server.stop()

    run(main())


def test_dtls_psk_registration_and_refusals() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            await store.put_security(SecurityInfo("secure1", "id-secure1", b"secret-key-1"))
            await store.put_security(SecurityInfo("secure2", "id-secure2", b"secret-key-2"))
            server = make_server(store)
            await server.start()
            try:
                assert server.coaps_address is not None and server.coap_address is not None
                sport = server.coaps_address[1]
                out = await coap_client(
                    "-m", "post", "-t", "40", "-e", LINKS, "-u", "id-secure1", "-k", "secret-key-1",
                    rd(sport, "ep=secure1&lt=60&lwm2m=1.1", "coaps"), secure=True,
                )  # fmt: skip
                assert "c:2.01" in response_line(out)
                registration = server.registration("secure1")
                assert registration is not None and registration.dtls_identity == "id-secure1"

                # A wrong key never gets a session: the handshake fails, visibly in the server's counters.
                failed = server.stats()["dtls"]["handshakes_failed"]
                out = await coap_client(
                    "-m", "post", "-t", "40", "-e", LINKS, "-u", "id-secure2", "-k", "wrong-key",
                    rd(sport, "ep=secure2", "coaps"), secure=True,
                )  # fmt: skip
                assert "c:2.01" not in out
                assert server.stats()["dtls"]["handshakes_failed"] > failed
                assert server.registration("secure2") is None

                # Another endpoint's identity: authenticated, but not as this endpoint.
                out = await coap_client(
                    "-m", "post", "-t", "40", "-e", LINKS, "-u", "id-secure1", "-k", "secret-key-1",
                    rd(sport, "ep=secure2", "coaps"), secure=True,
                )  # fmt: skip
                assert "c:4.03" in response_line(out)
                # An endpoint with credentials may not register over plain CoAP.
                out = await coap_client("-m", "post", "-t", "40", "-e", LINKS, rd(server.coap_address[1], "ep=secure1"))
                assert "c:4.03" in response_line(out)
                assert server.registrations_manager.stats.forbidden == 2
                current = server.registration("secure1")
                assert current is not None and current.registration_id == registration.registration_id
            finally:
                await server.stop()

    run(main())


def test_insecure_port_is_off_unless_asked() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            server = make_server(store, insecure=False)
            await server.start()
            try:
                assert server.coap_address is None
                assert server.coaps_address is not None
            finally:
                await server.stop()

    run(main())
