"""Refused input is visible: counted, in ``GET /api/stats``, and in rate-limited WARNING lines (issue 3).

Real UDP and DTLS on 127.0.0.1: wrong keys, unknown identities, garbage on the DTLS port, malformed
CoAP, an oversized registration (4.13 with Size1) and an oversized Send.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path as FilePath

import httpx
import pytest

from _server_helpers import FAST, make_server
from spmp.api import create_app
from spmp.coap.dtls import DtlsHandshakeError
from spmp.coap.dtls_client import DtlsClientTransport
from spmp.coap.endpoint import Endpoint
from spmp.coap.message import Code, Message, Request, decode, encode
from spmp.coap.transport import Peer
from spmp.coap.udp import UdpTransport
from spmp.server.registrations import MAX_REGISTRATION_PAYLOAD
from spmp.server.server import MAX_UPLINK_PAYLOAD
from spmp.store import SecurityInfo, SqliteStore

TOKEN = "stats-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEY = b"stats-key-000001"


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message and r.levelno == logging.WARNING]


async def _raw_exchange(data: bytes, address: tuple[str, int], timeout: float = 3.0) -> Message:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect(address)
        sock.send(data)
        reply = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 70000), timeout)
    finally:
        sock.close()
    return decode(reply)


def _send_garbage(data: bytes, address: tuple[str, int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(data, address)


def test_malformed_coap_gets_one_warning_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="spmp.coap.endpoint")
    monkeypatch.setattr("spmp.coap.endpoint.MALFORMED_LOG_INTERVAL", 0.5)

    async def main() -> None:
        server = Endpoint(await UdpTransport.bind("127.0.0.1", 0), params=FAST)
        address = server.transport.local_address
        try:
            for junk in (b"\x01", bytes.fromhex("80010001"), b"\x02\x03"):
                _send_garbage(junk, address)
            await _until(lambda: server.stats.malformed == 3)
            warnings = _records(caplog, "malformed CoAP datagrams")
            assert len(warnings) == 1
            first = warnings[0]
            assert first.count == 1 and first.peer.startswith("127.0.0.1:") and first.reason  # type: ignore[attr-defined]
            await asyncio.sleep(0.6)  # the interval is over: the next one is a WARNING again, with the count
            _send_garbage(b"\x04", address)
            await _until(lambda: len(_records(caplog, "malformed CoAP datagrams")) == 2)
            assert _records(caplog, "malformed CoAP datagrams")[1].count == 3  # type: ignore[attr-defined]
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_refusals_are_counted_in_the_stats_api_and_summarised_in_the_log(
    tmp_path: FilePath, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def main() -> None:
        async with SqliteStore(str(tmp_path / "spmp.db")) as store:
            await store.put_security(SecurityInfo("dev-s", "dev-s", KEY))
            server = make_server(store, insecure=True)
            server.refusal_check_interval = 0.05
            server.refusal_log_interval = 3600.0  # one summary line in this test, however much comes after
            await server.start()
            try:
                transport = httpx.ASGITransport(app=create_app(server, store, TOKEN))
                async with httpx.AsyncClient(transport=transport, base_url="http://spmp") as http:
                    assert (await http.get("/api/stats")).status_code == 401
                    before = (await http.get("/api/stats", headers=AUTH)).json()
                    assert before["refusals"]["dtls_handshakes_failed"] == 0
                    assert not _records(caplog, "input refused")

                    coap, coaps = server.coap_address, server.coaps_address
                    assert coap is not None and coaps is not None
                    # A wrong key and an unknown identity: refused with an alert, counted.
                    for identity, key in (("dev-s", b"wrong-key-000001"), ("nobody", KEY)):
                        with pytest.raises(DtlsHandshakeError):
                            await DtlsClientTransport.connect(*coaps, identity, key, handshake_timeout=5.0)
                    # Garbage on the DTLS port, malformed CoAP on the CoAP port.
                    _send_garbage(b"GET / HTTP/1.0\r\n\r\n", coaps)
                    _send_garbage(b"\x01", coap)
                    # A 60 KB registration in one datagram: 4.13 with the limit in Size1.
                    links = ",".join("</3/0>" for _ in range(60_000 // 7)).encode()
                    register = Request(Code.POST, "rd", query=["ep=big", "lt=60"], payload=links, content_format=40)
                    message = Message(0, register.method, 0x4242, b"tk", register.options, register.payload)
                    reply = await _raw_exchange(encode(message), coap)
                    assert reply.code == Code.REQUEST_ENTITY_TOO_LARGE
                    assert reply.get_option(60) == MAX_REGISTRATION_PAYLOAD.to_bytes(2, "big")  # Size1
                    # An oversized Send (block-wise): 4.13 with Size1.
                    client = Endpoint(await UdpTransport.bind("127.0.0.1", 0), params=FAST)
                    try:
                        response = await client.request(
                            Peer(*coap), Request(Code.POST, "dp", payload=b"x" * (MAX_UPLINK_PAYLOAD + 1))
                        )
                    finally:
                        await client.close()
                    assert response.code == Code.REQUEST_ENTITY_TOO_LARGE and response.size1 == MAX_UPLINK_PAYLOAD

                    await _until(lambda: server.stats()["refusals"]["dtls_garbage"] == 1)
                    stats = (await http.get("/api/stats", headers=AUTH)).json()
                    refusals = stats["refusals"]
                    assert refusals["dtls_handshakes_failed"] == 2
                    assert refusals["dtls_unknown_identity"] == 1
                    assert refusals["coap_malformed"] == 1
                    assert refusals["registration_too_large"] == 1
                    assert refusals["uplink_too_large"] == 1
                    assert stats["dtls"]["handshakes_failed"] == 2 and stats["dtls"]["sessions_open"] == 0
                    assert stats["coap"]["malformed"] == 1
                    assert stats["registration"]["too_large"] == 1
                    assert {"notifications", "sends", "points", "written", "write_failures"} <= set(stats["telemetry"])

                    garbage = _records(caplog, "dtls: garbage datagrams dropped")
                    assert len(garbage) == 1 and garbage[0].reason == "not a DTLS record"  # type: ignore[attr-defined]
                    await _until(lambda: bool(_records(caplog, "input refused")))
                    await asyncio.sleep(0.3)  # more checks go by: still one line (the interval is an hour)
                    _send_garbage(b"\x01", coap)
                    await asyncio.sleep(0.3)
                    summaries = _records(caplog, "input refused")
                    assert len(summaries) == 1
                    # The line came at the first check after the first refusal: it counts what had come by then.
                    line = summaries[0]
                    counts = {kind: getattr(line, kind) for kind in refusals if hasattr(line, kind)}
                    assert counts and all(0 < n <= refusals[kind] for kind, n in counts.items()), counts
                    assert "registration_rate_limited" not in counts  # only what happened is listed
            finally:
                await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
