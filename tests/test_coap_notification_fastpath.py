"""The endpoint's notification fast path (``Endpoint._fast_notification``) against the general path.

The same datagrams go to two observer endpoints: one whose observation callback takes raw notifications
(fast path) and one with a plain callback (general path). Both must acknowledge/reset the same way and
deliver the same notifications (dedup with the cached ACK, out-of-order sequence numbers dropped,
unknown tokens reset or adopted through the hook, anything unusual handed to the general path); and the
server's observation callback must store the same rows either way.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Coroutine
from typing import Any

import pytest

from spmp.coap.endpoint import Endpoint
from spmp.coap.message import Code, Request, Response
from spmp.coap.observe import Observation
from spmp.coap.transport import Peer
from spmp.coap.udp import UdpTransport
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.path import Path
from spmp.server.events import EventHub
from spmp.server.fastpath import TelemetryRow
from spmp.server.observations import ObservationManager, _Live

TOKEN = b"\x01\x02\x03\x04"
Delivery = tuple[int, int | None, int | None, bytes]


def run(coro: Coroutine[Any, Any, None], timeout: float = 20.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)

    asyncio.run(bounded())


def notification(
    mid: int,
    seq: int | None,
    payload: bytes = b"21.5",
    *,
    token: bytes = TOKEN,
    mtype: int = 0,
    code: int = Code.CONTENT,
    fmt: int | None = 0,
    extra: list[tuple[int, bytes]] | None = None,
) -> bytes:
    """A notification written by hand (options in number order, short deltas only)."""
    options: list[tuple[int, bytes]] = list(extra or [])
    if seq is not None:
        options.append((6, seq.to_bytes(3, "big").lstrip(b"\0")))
    if fmt is not None:
        options.append((12, fmt.to_bytes(2, "big").lstrip(b"\0")))
    options.sort(key=lambda o: o[0])
    out = bytearray(struct.pack("!BBH", 0x40 | (mtype << 4) | len(token), code, mid) + token)
    last = 0
    for number, value in options:
        delta = number - last
        assert delta < 13 and len(value) < 13
        out.append((delta << 4) | len(value))
        out += value
        last = number
    if payload:
        out += b"\xff" + payload
    return bytes(out)


class Recorder:
    """An observation callback; with ``raw`` it takes the fast path (declining payloads b"general")."""

    def __init__(self) -> None:
        self.delivered: list[Delivery] = []
        self.raw_count = 0

    def __call__(self, response: Response, /) -> None:
        self.delivered.append((response.code, response.observe, response.content_format, response.payload))


class RawRecorder(Recorder):
    def raw(self, code: int, seq: int, content_format: int | None, payload: bytes, /) -> bool:
        if payload == b"general":
            return False
        self.raw_count += 1
        self.delivered.append((code, seq, content_format, payload))
        return True


async def exchange(recorder: Recorder, datagrams: list[bytes], *, hook: bool = False) -> list[bytes]:
    """Send ``datagrams`` from a plain socket to an observer holding an observation of TOKEN; returns
    the replies, one per datagram (b"" when none came)."""
    transport = await UdpTransport.bind("127.0.0.1", 0)
    observer = Endpoint(transport)
    device = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    device.bind(("127.0.0.1", 0))
    device.setblocking(False)
    peer = Peer("127.0.0.1", device.getsockname()[1])
    request = Request(Code.GET, "/3303/0/5700")
    observer.adopt_observation(peer, TOKEN, request, callback=recorder)
    if hook:

        def adopt(p: Peer, token: bytes, response: Response) -> Observation | None:
            return observer.adopt_observation(p, token, request, callback=recorder) if token == b"\xaa" else None

        observer.on_unmatched_notification = adopt
    loop = asyncio.get_running_loop()
    replies: list[bytes] = []
    try:
        for data in datagrams:
            await loop.sock_sendto(device, data, transport.local_address)
            try:
                replies.append(await asyncio.wait_for(loop.sock_recv(device, 64), 0.5))
            except TimeoutError:
                replies.append(b"")
    finally:
        device.close()
        await observer.close()
    return replies


def ack(mid: int) -> bytes:
    return struct.pack("!BBH", 0x60, 0, mid)


def rst(mid: int) -> bytes:
    return struct.pack("!BBH", 0x70, 0, mid)


SEQUENCE = [
    notification(100, 5),  # the peer's first datagram (no dedup ring yet): general path
    notification(101, 6),  # fast path
    notification(101, 6),  # duplicate: the cached ACK again, not delivered twice
    notification(102, 4),  # older sequence number: acknowledged, dropped
    notification(103, 7, b"22", fmt=None, extra=[(4, b"\x09"), (14, b"\x3c")]),  # ETag, Max-Age, no format
    notification(104, 8, token=b"\x99"),  # unknown token: RST
    notification(105, 9, extra=[(8, b"x")]),  # another option (Location-Path): general path
    notification(106, 10, mtype=1),  # NON: general path, no reply
    notification(107, 11, b"general"),  # the raw callback declines: delivered as a Response
    notification(108, 12, b"", fmt=None),  # empty payload
    notification(109, 13, b"\xff\x00", fmt=ContentFormat.TLV),
    notification(110, None, b"gone"),  # no Observe: a final response ends the observation
    notification(111, 14),  # after the end: unknown token, RST
]
EXPECTED_REPLIES = [ack(100), ack(101), ack(101), ack(102), ack(103), rst(104), ack(105), b""]
EXPECTED_REPLIES += [ack(107), ack(108), ack(109), ack(110), rst(111)]


def test_fast_path_answers_and_delivers_like_the_general_path() -> None:
    async def main() -> None:
        general, fast = Recorder(), RawRecorder()
        general_replies = await exchange(general, SEQUENCE)
        fast_replies = await exchange(fast, SEQUENCE)
        assert general_replies == EXPECTED_REPLIES
        assert fast_replies == EXPECTED_REPLIES
        assert fast.delivered == general.delivered
        assert [d[1] for d in general.delivered] == [5, 6, 7, 9, 10, 11, 12, 13, None]
        assert fast.raw_count == 4  # 6, 7, 12, 13; the rest went the general way

    run(main())


def test_unknown_token_adopted_by_the_hook_then_fast() -> None:
    async def main() -> None:
        datagrams = [
            notification(200, 1),
            notification(201, 3, token=b"\xaa"),  # unknown: the hook adopts it
            notification(202, 4, token=b"\xaa"),  # now known: fast path
            notification(203, 2, token=b"\xaa"),  # older: dropped
            notification(204, 5, token=b"\xbb"),  # the hook declines: RST
        ]
        general, fast = Recorder(), RawRecorder()
        expected = [ack(200), ack(201), ack(202), ack(203), rst(204)]
        assert await exchange(general, datagrams, hook=True) == expected
        assert await exchange(fast, datagrams, hook=True) == expected
        assert fast.delivered == general.delivered
        assert [d[1] for d in fast.delivered] == [1, 3, 4]
        assert fast.raw_count == 1

    run(main())


@pytest.mark.parametrize(
    ("fmt", "payload"),
    [
        (None, b"21.5"),
        (ContentFormat.TEXT, b" 21.5"),  # whitespace: the general decoder decides
        (ContentFormat.TEXT, b"nan"),
        (ContentFormat.SENML_JSON, b'[{"n":"/3303/0/5700","v":21.5}]'),
        (ContentFormat.TEXT, b"not a number"),
    ],
)
def test_server_callback_stores_the_same_rows_either_way(
    fmt: int | None, payload: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ObservationManager's callback: raw fields (fast path) and the Response (general path) give the
    same rows; a raw notification it cannot take leaves no trace (it comes again as a Response)."""

    class Sink:
        def __init__(self) -> None:
            self.rows: list[TelemetryRow] = []

        def append_rows(self, rows: list[TelemetryRow]) -> None:
            self.rows.extend(rows)

    class Registration:
        registration_id = "r1"

    class Session:
        registration = Registration()
        model = default_registry()

    class Registrations:
        touched = 0

        def get(self, endpoint: str) -> object:
            return Session()

        def touch(self, session: object) -> None:
            self.touched += 1

    monkeypatch.setattr("spmp.server.observations.time.time_ns", lambda: 1_750_000_000_123_000_000)

    def rows_of(raw: bool) -> tuple[list[TelemetryRow], int, int]:
        sink, registrations = Sink(), Registrations()
        manager = ObservationManager(None, EventHub(), registrations, sink)  # type: ignore[arg-type]
        live = _Live("site", "r1", (Path.parse("/3303/0/5700"),), False, fmt)
        callback = manager.callback(live)
        taken = raw and callback.raw(Code.CONTENT, 7, fmt, payload)
        if not taken:
            if raw:
                assert (sink.rows, registrations.touched, manager.stats.notifications) == ([], 0, 0)
            callback(Response(Code.CONTENT, payload, content_format=fmt, observe=7))
        return sink.rows, registrations.touched, manager.stats.notifications

    async def main() -> None:
        assert rows_of(True) == rows_of(False)

    run(main())
