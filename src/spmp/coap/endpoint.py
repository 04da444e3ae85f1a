"""The CoAP endpoint: message layer + request/response layer on one datagram transport (RFC 7252).

The same class serves both LwM2M roles: the server sends requests to devices over the session each
device opened, and the device serves requests from servers. So an endpoint both sends requests
(:meth:`Endpoint.request`, :meth:`Endpoint.observe`) and answers them (``handler``).

Message layer: confirmable retransmission with exponential back-off, empty ACKs, RST, per-peer NSTART,
and deduplication of incoming CON/NON by (peer, message id). Deduplication uses a small ring of recent
message ids per peer that also caches the reply to a confirmable message, instead of a dict holding
every exchange for EXCHANGE_LIFETIME (at 10k messages/s that would be millions of entries).

Request/response layer: tokens, piggybacked and separate responses, handler errors rendered as
response codes, Observe (see :mod:`spmp.coap.observe`) and block-wise transfers (see
:mod:`spmp.coap.blockwise`; the client side of both Block1 and Block2 is here).

The datagram callback never raises: malformed input is counted and answered with RST when it was a
readable confirmable message, and dropped otherwise.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import random
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from spmp.coap.blockwise import Block1Assembler, Block2Cache, slice_block2, transfer_key
from spmp.coap.errors import (
    BlockwiseError,
    CoapError,
    CoapMessageError,
    PeerReset,
    RequestTimeout,
    ResponseError,
    TransportClosed,
)
from spmp.coap.message import (
    KNOWN_OPTIONS,
    Block,
    Code,
    Message,
    Option,
    Request,
    Response,
    decode,
    encode,
    size_to_szx,
    uint_bytes,
)
from spmp.coap.observe import CancelCallback, NotificationCallback, Observation, ServedObservation
from spmp.coap.transport import DatagramTransport, Peer

__all__ = ["CoapParameters", "Endpoint", "EndpointStats", "Handler", "UnmatchedNotificationHook"]

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]

UnmatchedNotificationHook = Callable[[Peer, bytes, Response], Observation | Awaitable[Observation | None] | None]
"""Asked ``hook(peer, token, notification)`` about a notification whose token no observation of ours holds
(typically one registered by a previous run of the process). Return an :class:`Observation` made with
:meth:`Endpoint.adopt_observation` to accept it (it is acknowledged and delivered to that observation, as
are the following ones), or None to reset it. May be a coroutine function: the notification waits for
the answer (a duplicate meanwhile is ignored), so keep it well below ACK_TIMEOUT."""

MALFORMED_LOG_INTERVAL = 60.0
"""At most one WARNING about malformed datagrams per this many seconds (with the count since the last)."""

_CON: Final = 0
_NON: Final = 1
_ACK: Final = 2
_RST: Final = 3
_OBSERVE: Final = 6
_EMPTY_HEADER: Final = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class CoapParameters:
    """Transmission parameters (RFC 7252 §4.8) and the endpoint's own limits."""

    ack_timeout: float = 2.0
    ack_random_factor: float = 1.5
    max_retransmit: int = 4
    nstart: int = 1
    """Outstanding requests per peer (RFC default 1; a server talking to many devices raises it)."""
    response_timeout: float | None = None
    """How long to wait for a NON request's response, or for a separate response after its empty ACK;
    None means MAX_TRANSMIT_WAIT."""
    dedup_size: int = 16
    """Recent message ids remembered per peer for deduplication."""
    exchange_lifetime: float = 247.0
    """A peer's dedup ring is dropped after this long without traffic."""
    block_size: int = 1024
    """Preferred block size for Block1 requests we send and Block2 responses we serve."""
    max_body_size: int = 1 << 20
    """Largest body reassembled from blocks, either direction (4.13 / BlockwiseError past it)."""

    @property
    def max_transmit_wait(self) -> float:
        return self.ack_timeout * ((1 << (self.max_retransmit + 1)) - 1) * self.ack_random_factor


@dataclass(slots=True)
class EndpointStats:
    """Counters for monitoring; cheap increments on the hot path."""

    received: int = 0
    malformed: int = 0
    duplicates: int = 0
    retransmissions: int = 0
    timeouts: int = 0
    rst_sent: int = 0
    rst_received: int = 0
    handler_errors: int = 0
    unmatched: int = 0
    adopted: int = 0
    """Observations taken over through the unmatched-notification hook."""


class _Ring:
    """The last few message ids a peer sent us, and what we answered to each (bytes, or the exchange
    still being served)."""

    __slots__ = ("last", "mids", "pos", "replies")

    def __init__(self, size: int) -> None:
        self.mids = [-1] * size
        self.replies: list[bytes | _Incoming | None] = [None] * size
        self.pos = 0
        self.last = 0.0


class _Incoming:
    """A request we are serving: where its reply must go and whether it became a separate response."""

    __slots__ = ("message", "peer", "ring", "separate", "slot")

    def __init__(self, message: Message, peer: Peer, ring: _Ring, slot: int) -> None:
        self.message = message
        self.peer = peer
        self.ring = ring
        self.slot = slot
        self.separate = False


_REQUEST, _NOTIFICATION, _SEPARATE = 0, 1, 2


class _Pending:
    """A message we sent and still track: a request awaiting its response, or a CON notification or
    separate response awaiting its ACK."""

    __slots__ = (
        "data",
        "future",
        "kind",
        "mid",
        "observation",
        "peer",
        "retransmits",
        "served",
        "started",
        "timeout",
        "timer",
        "token",
    )

    def __init__(self, kind: int, peer: Peer, mid: int, token: bytes, data: bytes, *, started: float) -> None:
        self.kind = kind
        self.peer = peer
        self.mid = mid
        self.token = token
        self.data = data
        self.started = started
        self.retransmits = 0
        self.timeout = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.future: asyncio.Future[Response] | None = None
        self.observation: Observation | None = None
        self.served: ServedObservation | None = None


async def _not_found(request: Request) -> Response:
    return Response(Code.NOT_FOUND, b"no handler")


class Endpoint:
    """CoAP over one :class:`DatagramTransport`; see the module docstring."""

    def __init__(
        self,
        transport: DatagramTransport,
        handler: Handler | None = None,
        *,
        params: CoapParameters | None = None,
        on_unmatched_notification: UnmatchedNotificationHook | None = None,
    ) -> None:
        self.transport = transport
        self.handler: Handler = handler if handler is not None else _not_found
        self.on_unmatched_notification = on_unmatched_notification
        """See :data:`UnmatchedNotificationHook`; None resets every unmatched notification."""
        self.params = params if params is not None else CoapParameters()
        self.stats = EndpointStats()
        self._loop = asyncio.get_running_loop()
        self._mid = random.getrandbits(16)
        self._rings: dict[Peer, _Ring] = {}
        self._by_mid: dict[tuple[Peer, int], _Pending] = {}
        self._by_token: dict[tuple[Peer, bytes], _Pending] = {}
        self._non_sent: dict[tuple[Peer, int], ServedObservation] = {}
        self._observations: dict[tuple[Peer, bytes], Observation] = {}
        self._served: dict[tuple[Peer, bytes], ServedObservation] = {}
        self._inflight: dict[Peer, int] = {}
        self._nstart_waiters: dict[Peer, deque[asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._block1 = Block1Assembler(self.params.max_body_size)
        self._block2 = Block2Cache()
        self._szx = size_to_szx(self.params.block_size)
        self._obs_seq = random.getrandbits(24)
        self._closed = False
        self._malformed_logged = 0
        self._malformed_quiet_until = 0.0
        self._sweeper = self._loop.call_later(self.params.exchange_lifetime, self._sweep)
        transport.set_handler(self._on_datagram)

    # ------------------------------------------------------------------------------------------------
    # Public API

    async def request(self, peer: Peer, request: Request) -> Response:
        """Send ``request`` and return the response, doing Block1/Block2 transfers transparently.

        Raises :class:`RequestTimeout`, :class:`PeerReset`, :class:`BlockwiseError` or
        :class:`TransportClosed`. Error response codes (4.xx/5.xx) are returned, not raised.
        """
        if len(request.payload) > self.params.block_size:
            response = await self._send_block1(peer, request)
        else:
            response = await self._request_with_token(peer, request, None)
        block2 = response.block2
        if block2 is not None and block2.more:
            response = await self._fetch_block2(peer, request, response)
        return response

    async def observe(
        self,
        peer: Peer,
        request: Request,
        *,
        callback: NotificationCallback | None = None,
        queue_size: int = 64,
    ) -> Observation:
        """Register an observation (GET with Observe=0). Returns once the initial response arrived;
        ``observation.active`` tells whether the server accepted it."""
        req = request.copy()
        req.observe = 0
        observation = Observation(self, peer, req, callback, queue_size)
        response = await self._request_with_token(peer, req, None, observation)
        block2 = response.block2
        if block2 is not None and block2.more:
            response = await self._fetch_block2(peer, req, response)
        observation._start(response, self._loop.time())
        if not observation.active:
            self._forget_observation(observation)
        return observation

    def adopt_observation(
        self,
        peer: Peer,
        token: bytes,
        request: Request,
        *,
        callback: NotificationCallback | None = None,
        queue_size: int = 64,
    ) -> Observation:
        """Take over an observation registered earlier under ``token`` (by a previous run, say).

        ``request`` is the original observe request (GET or FETCH; used to cancel it actively and to
        fetch the rest of block-wise notifications). From now on notifications from ``peer`` with
        ``token`` reach the returned observation, as if :meth:`observe` had registered it. Call it from
        an :data:`UnmatchedNotificationHook`, or beforehand. If an active observation already holds
        ``token`` (adopted a moment ago), that one is returned.
        """
        current = self._observations.get((peer, token))
        if current is not None and current.active:
            return current
        req = request.copy()
        req.observe = 0
        observation = Observation(self, peer, req, callback, queue_size)
        observation.token = token
        observation.active = True
        if current is not None:
            current._finish(None)
        self._observations[(peer, token)] = observation
        self.stats.adopted += 1
        return observation

    def accept_observation(self, request: Request, on_cancel: CancelCallback | None = None) -> ServedObservation:
        """Called by a handler serving a GET with Observe=0 to accept the observation.

        The observation becomes active when the handler's response is a 2.xx (the endpoint adds the
        Observe number); keep the returned object and call its ``notify`` on changes.
        """
        if request.peer is None:
            raise ValueError("accept_observation needs a received request")
        served = ServedObservation(self, request, on_cancel)
        old = self._served.get((served.peer, served.token))
        if old is not None and old is not served:
            old._cancelled("re-registered")
        self._served[(served.peer, served.token)] = served
        return served

    @property
    def served_observations(self) -> int:
        return len(self._served)

    async def close(self) -> None:
        """Fail everything pending with :class:`TransportClosed`, stop handlers, close the transport."""
        if self._closed:
            return
        self._closed = True
        self._sweeper.cancel()
        closed = TransportClosed("endpoint closed")
        for pending in list(self._by_mid.values()) + list(self._by_token.values()):
            self._finish(pending, error=closed)
        for observation in list(self._observations.values()):
            observation._finish(closed)
        self._observations.clear()
        for served in list(self._served.values()):
            served._cancelled("endpoint closed")
        self._served.clear()
        for waiters in self._nstart_waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(closed)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.transport.close()

    async def __aenter__(self) -> Endpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------------------------------------
    # Sending requests

    def _next_mid(self) -> int:
        self._mid = mid = (self._mid + 1) & 0xFFFF
        return mid

    def _new_token(self, peer: Peer) -> bytes:
        # 32 random bits (RFC 7252 §5.3.1 asks for unguessable tokens on unsecured transports).
        while True:
            token = os.urandom(4)
            if (peer, token) not in self._by_token and (peer, token) not in self._observations:
                return token

    async def _acquire(self, peer: Peer) -> None:
        count = self._inflight.get(peer, 0)
        if count < self.params.nstart and peer not in self._nstart_waiters:
            self._inflight[peer] = count + 1
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._nstart_waiters.setdefault(peer, deque()).append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release(peer)  # the slot was handed to us just as we were cancelled
            raise

    def _release(self, peer: Peer) -> None:
        waiters = self._nstart_waiters.get(peer)
        if waiters is not None:
            while waiters:
                fut = waiters.popleft()
                if not fut.done():
                    fut.set_result(None)  # hand our slot straight to the next waiter
                    if not waiters:
                        del self._nstart_waiters[peer]
                    return
            del self._nstart_waiters[peer]
        count = self._inflight.get(peer, 0) - 1
        if count > 0:
            self._inflight[peer] = count
        else:
            self._inflight.pop(peer, None)

    async def _request_with_token(
        self,
        peer: Peer,
        request: Request,
        token: bytes | None,
        observation: Observation | None = None,
    ) -> Response:
        """One request/response exchange (no block-wise logic)."""
        if self._closed:
            raise TransportClosed("endpoint closed")
        await self._acquire(peer)
        pending: _Pending | None = None
        try:
            if token is None:
                token = self._new_token(peer)
            mid = self._next_mid()
            confirmable = request.confirmable
            data = encode(
                Message(_CON if confirmable else _NON, request.method, mid, token, request.options, request.payload)
            )
            now = self._loop.time()
            pending = _Pending(_REQUEST, peer, mid, token, data, started=now)
            future: asyncio.Future[Response] = self._loop.create_future()
            pending.future = future
            pending.observation = observation
            if observation is not None:
                observation.token = token
            self._by_mid[(peer, mid)] = pending
            self._by_token[(peer, token)] = pending
            self.transport.send(data, peer)
            p = self.params
            if confirmable:
                pending.timeout = p.ack_timeout * (1.0 + random.random() * (p.ack_random_factor - 1.0))
                pending.timer = self._loop.call_later(pending.timeout, self._retransmit, pending)
            else:
                wait = p.response_timeout if p.response_timeout is not None else p.max_transmit_wait
                pending.timer = self._loop.call_later(wait, self._response_timeout, pending)
            return await future
        finally:
            if pending is not None:
                self._unregister(pending)
            self._release(peer)

    def _unregister(self, pending: _Pending) -> None:
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None
        key = (pending.peer, pending.mid)
        if self._by_mid.get(key) is pending:
            del self._by_mid[key]
        tkey = (pending.peer, pending.token)
        if pending.kind == _REQUEST and self._by_token.get(tkey) is pending:
            del self._by_token[tkey]

    def _finish(self, pending: _Pending, response: Response | None = None, error: CoapError | None = None) -> None:
        """Complete a tracked message: resolve a request, or settle a notification/separate response."""
        self._unregister(pending)
        if pending.kind == _REQUEST:
            fut = pending.future
            if fut is not None and not fut.done():
                if error is not None:
                    fut.set_exception(error)
                else:
                    assert response is not None
                    fut.set_result(response)
        elif pending.kind == _NOTIFICATION:
            served = pending.served
            if served is not None:
                if served._inflight is pending:
                    served._inflight = None
                if error is not None:
                    self._drop_served(served)
                    reason = "reset" if isinstance(error, PeerReset) else "timeout"
                    served._cancelled("closed" if isinstance(error, TransportClosed) else reason)

    def _retransmit(self, pending: _Pending) -> None:
        if pending.retransmits >= self.params.max_retransmit:
            self.stats.timeouts += 1
            elapsed = self._loop.time() - pending.started
            self._finish(pending, error=RequestTimeout(pending.peer, elapsed, f"{pending.retransmits} retransmissions"))
            return
        pending.retransmits += 1
        pending.timeout *= 2
        self.stats.retransmissions += 1
        try:
            self.transport.send(pending.data, pending.peer)
        except CoapError as exc:
            self._finish(pending, error=exc)
            return
        pending.timer = self._loop.call_later(pending.timeout, self._retransmit, pending)

    def _response_timeout(self, pending: _Pending) -> None:
        self.stats.timeouts += 1
        elapsed = self._loop.time() - pending.started
        self._finish(pending, error=RequestTimeout(pending.peer, elapsed, "no response"))

    # -- block-wise, client side -------------------------------------------------------------------

    async def _send_block1(self, peer: Peer, request: Request) -> Response:
        payload = request.payload
        total = len(payload)
        szx = self._szx
        offset = 0
        while True:
            size = 1 << (szx + 4)
            more = offset + size < total
            part = request.copy()
            part.payload = payload[offset : offset + size]
            part.block1 = Block(offset >> (szx + 4), more, szx)
            if offset == 0:
                part.size1 = total
            response = await self._request_with_token(peer, part, None)
            if not more or response.code != Code.CONTINUE:
                return response
            echoed = response.block1
            if echoed is not None and echoed.szx < szx:
                szx = echoed.szx  # the server asked for smaller blocks (RFC 7959 §2.5)
            offset += size

    async def _fetch_block2(self, peer: Peer, request: Request, first: Response) -> Response:
        block = first.block2
        assert block is not None
        body = bytearray(first.payload)
        etag = first.etag
        cap = self.params.max_body_size
        while block is not None and block.more:
            if len(body) > cap:
                raise BlockwiseError(f"response from {peer} exceeds {cap} bytes")
            follow = request.copy()
            follow.observe = None
            follow.block1 = None
            # Later blocks are asked for without the body (RFC 7959 §3.3), except FETCH, whose body
            # is the query itself.
            follow.payload = request.payload if request.method == Code.FETCH else b""
            follow.block2 = Block(len(body) >> (block.szx + 4), False, block.szx)
            response = await self._request_with_token(peer, follow, None)
            if not response.is_success:
                return response
            block = response.block2
            if block is None:
                return response  # the server sent the whole representation after all
            if block.offset != len(body):
                raise BlockwiseError(f"block {block.num} from {peer} does not continue at byte {len(body)}")
            if response.etag != etag:
                raise BlockwiseError(f"representation at {peer} changed during the block-wise transfer")
            body += response.payload
        if len(body) > cap:
            raise BlockwiseError(f"response from {peer} exceeds {cap} bytes")
        whole = first.copy()
        whole.payload = bytes(body)
        whole.block2 = None
        return whole

    # ------------------------------------------------------------------------------------------------
    # Receiving

    def _on_datagram(self, data: bytes, peer: Peer) -> None:
        self.stats.received += 1
        # CON 2.xx: maybe a notification of one of our observations, taken without a Message.
        if len(data) > 5 and (data[0] & 0xF0) == 0x40 and 64 <= data[1] < 96 and self._observations:
            try:
                if self._fast_notification(data, peer):
                    return
            except Exception:
                log.exception("error handling a notification from %s", peer)
                return
        try:
            msg = decode(data)
        except CoapMessageError as exc:
            self.stats.malformed += 1
            self._log_malformed(peer, exc.reason)
            if exc.message_type == _CON and exc.mid is not None:
                self._send_empty(_RST, exc.mid, peer)
            return
        try:
            mtype = msg.type
            code = msg.code
            if mtype >= _ACK:
                self._on_ack_or_rst(msg, peer)
            elif code == 0:
                self._send_empty(_RST, msg.mid, peer)  # CoAP ping (CON, Empty): answer with RST
            elif code < 32:
                self._on_request(msg, peer)
            elif code >= 64:
                self._on_response(msg, peer)
            elif mtype == _CON:
                self._send_empty(_RST, msg.mid, peer)  # reserved code classes 1..
        except Exception:
            log.exception("error handling a message from %s", peer)

    def _log_malformed(self, peer: Peer, reason: str) -> None:
        """Malformed input (already counted): a WARNING naming the peer and the reason, then nothing but
        DEBUG for :data:`MALFORMED_LOG_INTERVAL` seconds; the next WARNING says how many came meanwhile."""
        now = self._loop.time()
        if now < self._malformed_quiet_until:
            log.debug("malformed datagram from %s: %s", peer, reason)
            return
        count = self.stats.malformed - self._malformed_logged
        self._malformed_logged = self.stats.malformed
        self._malformed_quiet_until = now + MALFORMED_LOG_INTERVAL
        log.warning(
            "malformed CoAP datagrams",
            extra={"peer": str(peer), "reason": reason, "count": count, "total": self.stats.malformed},
        )

    def _fast_notification(self, data: bytes, peer: Peer) -> bool:
        """The notification fast path: a CON 2.xx with Observe for an observation whose callback takes raw
        notifications (see :class:`~spmp.coap.observe.RawNotificationCallback`), with no option but
        Observe, Content-Format, ETag and Max-Age (each once), from a peer with a dedup ring, not a
        duplicate. Parsed from the bytes, acknowledged with a 4-byte empty ACK (cached in the ring like
        the general path's), delivered without a Message or Response. Anything else returns False
        before changing any state, and the general path handles it (duplicates, unknown tokens and the
        adoption hook, block-wise notifications, malformed messages)."""
        tkl = data[0] & 0x0F
        end = 4 + tkl
        size = len(data)
        if tkl > 8 or size < end:
            return False
        observation = self._observations.get((peer, data[4:end]))
        if observation is None or observation._raw is None:
            return False
        ring = self._rings.get(peer)
        if ring is None:
            return False
        mid = (data[2] << 8) | data[3]
        mids = ring.mids
        if mid in mids:
            return False  # a duplicate: the general path replays the cached reply
        pos = end
        number = 0
        seq = -1
        fmt: int | None = None
        while pos < size:
            byte = data[pos]
            pos += 1
            if byte == 0xFF:
                if pos == size:
                    return False  # payload marker without payload: malformed
                break
            delta = byte >> 4
            length = byte & 0x0F
            if delta == 0 or delta > 12 or length > 12:
                return False  # a repeated option, extended delta/length (not one of ours), or malformed
            number += delta
            value_end = pos + length
            if value_end > size:
                return False
            if number == _OBSERVE:
                if length > 3:
                    return False
                seq = int.from_bytes(data[pos:value_end], "big")
            elif number == 12:  # Content-Format
                if length > 2:
                    return False
                fmt = int.from_bytes(data[pos:value_end], "big")
            elif number not in {4, 14}:  # ETag, Max-Age: nothing to do
                return False
            pos = value_end
        if seq < 0:
            return False  # no Observe: a final response, the general path ends the observation
        now = self._loop.time()
        if not observation._take_raw(data[1], seq, fmt, data[pos:], now):
            return False
        ring.last = now
        slot = ring.pos
        mids[slot] = mid
        ring.pos = (slot + 1) % len(mids)
        ring.replies[slot] = ack = _EMPTY_HEADER.pack(0x60, 0, mid)  # empty ACK
        self._send(ack, peer)
        return True

    def _send_empty(self, mtype: int, mid: int, peer: Peer) -> bytes:
        data = _EMPTY_HEADER.pack(0x40 | (mtype << 4), 0, mid)  # 4 bytes; no Message needed
        if mtype == _RST:
            self.stats.rst_sent += 1
        self._send(data, peer)
        return data

    def _send(self, data: bytes, peer: Peer) -> None:
        try:
            self.transport.send(data, peer)
        except CoapError as exc:
            log.debug("could not send to %s: %s", peer, exc)

    def _ring_check(self, msg: Message, peer: Peer) -> tuple[_Ring, int, bool]:
        """Find or record ``msg.mid`` in the peer's ring: (ring, slot, is_duplicate)."""
        ring = self._rings.get(peer)
        if ring is None:
            ring = self._rings[peer] = _Ring(self.params.dedup_size)
        ring.last = self._loop.time()
        mids = ring.mids
        mid = msg.mid
        if mid in mids:
            return ring, mids.index(mid), True
        slot = ring.pos
        mids[slot] = mid
        ring.replies[slot] = None
        ring.pos = (slot + 1) % len(mids)
        return ring, slot, False

    def _sweep(self) -> None:
        """Drop dedup rings of peers that went quiet for EXCHANGE_LIFETIME."""
        horizon = self._loop.time() - self.params.exchange_lifetime
        rings = self._rings
        for peer in [p for p, r in rings.items() if r.last < horizon]:
            del rings[peer]
        self._sweeper = self._loop.call_later(self.params.exchange_lifetime, self._sweep)

    def _on_ack_or_rst(self, msg: Message, peer: Peer) -> None:
        key = (peer, msg.mid)
        pending = self._by_mid.get(key)
        if msg.type == _RST:
            self.stats.rst_received += 1
            if pending is not None:
                self._finish(pending, error=PeerReset(peer))
                return
            served = self._non_sent.pop(key, None)
            if served is not None:
                self._drop_served(served)
                served._cancelled("reset")
            return
        if pending is None:
            return  # an ACK we no longer wait for (duplicate, or late): ignore
        if pending.kind != _REQUEST:
            self._finish(pending)  # notification or separate response acknowledged
            return
        if msg.code == 0:
            # Empty ACK: the response will come separately. Stop retransmitting and wait for it.
            del self._by_mid[key]
            if pending.timer is not None:
                pending.timer.cancel()
            p = self.params
            wait = p.response_timeout if p.response_timeout is not None else p.max_transmit_wait
            pending.timer = self._loop.call_later(wait, self._response_timeout, pending)
            return
        if msg.token != pending.token:
            self.stats.unmatched += 1
            return
        self._deliver(pending, msg, peer)

    def _deliver(self, pending: _Pending, msg: Message, peer: Peer) -> None:
        response = Response.from_message(msg, peer)
        observation = pending.observation
        if observation is not None and response.is_success and msg.get_option(_OBSERVE) is not None:
            # Registered before the caller resumes, so an early notification already finds it.
            self._observations[(peer, pending.token)] = observation
        self._finish(pending, response)

    def _on_response(self, msg: Message, peer: Peer) -> None:
        ring, slot, duplicate = self._ring_check(msg, peer)
        confirmable = msg.type == _CON
        if duplicate:
            self.stats.duplicates += 1
            reply = ring.replies[slot]
            if confirmable and isinstance(reply, bytes):
                self._send(reply, peer)
            return
        tkey = (peer, msg.token)
        pending = self._by_token.get(tkey)
        if pending is not None:
            if confirmable:
                ring.replies[slot] = self._send_empty(_ACK, msg.mid, peer)
            self._deliver(pending, msg, peer)
            return
        observation = self._observations.get(tkey)
        if observation is not None:
            if confirmable:
                ring.replies[slot] = self._send_empty(_ACK, msg.mid, peer)
            response = Response.from_message(msg, peer)
            block2 = response.block2
            if block2 is not None and block2.more:
                self._spawn(self._complete_notification(observation, response))
                return
            self._notify_observation(observation, response)
            return
        hook = self.on_unmatched_notification
        if hook is not None and msg.get_option(_OBSERVE) is not None and 64 <= msg.code < 96:
            self._ask_hook(hook, msg, peer, ring, slot)
            return
        # Nobody asked for this (e.g. a notification for an observation we cancelled): reject it.
        self.stats.unmatched += 1
        ring.replies[slot] = self._send_empty(_RST, msg.mid, peer)

    def _ask_hook(self, hook: UnmatchedNotificationHook, msg: Message, peer: Peer, ring: _Ring, slot: int) -> None:
        """Let the owner adopt a notification with an unknown token (see :data:`UnmatchedNotificationHook`)."""
        response = Response.from_message(msg, peer)
        try:
            answer = hook(peer, msg.token, response)
        except Exception:
            log.exception("unmatched-notification hook failed for %s", peer)
            answer = None
        if inspect.isawaitable(answer):
            self._spawn(self._await_hook(answer, msg, peer, ring=ring, slot=slot, response=response))
        else:
            self._adopted(answer, msg, peer, ring=ring, slot=slot, response=response)

    async def _await_hook(
        self,
        answer: Awaitable[Observation | None],
        msg: Message,
        peer: Peer,
        *,
        ring: _Ring,
        slot: int,
        response: Response,
    ) -> None:
        try:
            observation = await answer
        except Exception:
            log.exception("unmatched-notification hook failed for %s", peer)
            observation = None
        if not self._closed:
            self._adopted(observation, msg, peer, ring=ring, slot=slot, response=response)

    def _adopted(
        self,
        observation: Observation | None,
        msg: Message,
        peer: Peer,
        *,
        ring: _Ring,
        slot: int,
        response: Response,
    ) -> None:
        reply_here = ring.mids[slot] == msg.mid
        if observation is None:
            self.stats.unmatched += 1
            rst = self._send_empty(_RST, msg.mid, peer)
            if reply_here:
                ring.replies[slot] = rst
            return
        registered = self._observations.get((peer, msg.token))
        if registered is not None and registered.active:
            observation = registered  # adopted meanwhile (a second notification asked the hook too)
        else:
            self._observations[(peer, msg.token)] = observation
        if msg.type == _CON:
            ack = self._send_empty(_ACK, msg.mid, peer)
            if reply_here:
                ring.replies[slot] = ack
        block2 = response.block2
        if block2 is not None and block2.more:
            self._spawn(self._complete_notification(observation, response))
            return
        self._notify_observation(observation, response)

    def _notify_observation(self, observation: Observation, response: Response) -> None:
        observation._notify(response, self._loop.time())
        if not observation.active:
            self._forget_observation(observation)

    async def _complete_notification(self, observation: Observation, first: Response) -> None:
        try:
            whole = await self._fetch_block2(observation.peer, observation.request, first)
        except CoapError as exc:
            log.debug("could not complete a block-wise notification from %s: %s", observation.peer, exc)
            return
        self._notify_observation(observation, whole)

    def _forget_observation(self, observation: Observation) -> None:
        key = (observation.peer, observation.token)
        if self._observations.get(key) is observation:
            del self._observations[key]

    # ------------------------------------------------------------------------------------------------
    # Serving requests

    def _on_request(self, msg: Message, peer: Peer) -> None:
        ring, slot, duplicate = self._ring_check(msg, peer)
        if duplicate:
            self.stats.duplicates += 1
            if msg.type != _CON:
                return
            reply = ring.replies[slot]
            if isinstance(reply, bytes):
                self._send(reply, peer)  # the cached ACK/response of the first copy
            elif isinstance(reply, _Incoming):
                # Still being served and the client is retransmitting: acknowledge now and send the
                # response separately when the handler is done (RFC 7252 §5.2.2).
                reply.separate = True
                ring.replies[slot] = self._send_empty(_ACK, msg.mid, peer)
            return
        incoming = _Incoming(msg, peer, ring, slot)
        ring.replies[slot] = incoming
        self._spawn(self._serve(incoming))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, incoming: _Incoming) -> None:
        msg = incoming.message
        peer = incoming.peer
        request = Request.from_message(msg, peer)
        block1: Block | None = None
        try:
            for number, _ in msg.options:
                if number & 1 and number not in KNOWN_OPTIONS:
                    raise ResponseError(Code.BAD_OPTION, f"unknown critical option {number}")
            if msg.get_option(_OBSERVE) is not None and request.observe == 1:
                served = self._served.get((peer, msg.token))
                if served is not None:
                    self._drop_served(served)
                    served._cancelled("deregistered")
            block1 = request.block1
            block2 = request.block2
            response: Response | None = None
            if block1 is not None:
                assembled = self._block1.feed(request, block1)
                if isinstance(assembled, Response):
                    response = assembled
                else:
                    request.options = [o for o in msg.options if o[0] != Option.BLOCK1]
                    request.payload = assembled
            elif block2 is not None and block2.num > 0:
                response = self._block2.get(transfer_key(request))
            if response is None:
                response = await self.handler(request)
        except ResponseError as exc:
            response = Response(exc.code, exc.message.encode())
        except CoapMessageError as exc:
            response = Response(Code.BAD_REQUEST, exc.reason.encode())
        except Exception:
            self.stats.handler_errors += 1
            log.exception("handler failed on %r from %s", request, peer)
            response = Response(Code.INTERNAL_SERVER_ERROR, b"internal server error")
        self._respond(incoming, request, response, block1)

    def _respond(self, incoming: _Incoming, request: Request, response: Response, block1: Block | None) -> None:
        msg = incoming.message
        peer = incoming.peer
        served = self._served.get((peer, msg.token)) if msg.get_option(_OBSERVE) is not None else None
        if served is not None and not served.active and served.request is not request:
            served = None  # an older observation with a recycled token; not accepted by this handler run
        options = response.options
        payload = response.payload
        if served is not None and not served.active:
            if 64 <= response.code < 96:
                served.active = True
                options = _with_observe(options, self._next_obs_seq())
            else:
                self._drop_served(served)
        elif response.get_option(_OBSERVE) is not None:
            options = [o for o in options if o[0] != _OBSERVE]  # not accepted via accept_observation()
        if block1 is not None and response.code not in (Code.CONTINUE, Code.REQUEST_ENTITY_TOO_LARGE):
            options = [o for o in options if o[0] != Option.BLOCK1]
            options.append((Option.BLOCK1, Block(block1.num, False, block1.szx).encode()))
            options.sort(key=_number)
        if 64 <= response.code < 96 and (len(payload) > self.params.block_size or request.block2 is not None):
            sliced = self._slice_response(request, response, options)
            if sliced is None:
                options, payload = [], b"block number out of range"
                response = Response(Code.BAD_OPTION)
            else:
                options, payload = sliced.options, sliced.payload
        if incoming.separate or msg.type == _NON:
            mid = self._next_mid()
            mtype = _NON if msg.type == _NON else _CON
        else:
            mid = msg.mid
            mtype = _ACK
        data = encode(Message(mtype, response.code, mid, msg.token, options, payload))
        ring = incoming.ring
        if mtype == _ACK and ring.mids[incoming.slot] == msg.mid:
            ring.replies[incoming.slot] = data  # replayed if the client retransmits this request
        self._send(data, peer)
        if mtype == _CON:
            pending = _Pending(_SEPARATE, peer, mid, msg.token, data, started=self._loop.time())
            self._track_con(pending)

    def _slice_response(
        self, request: Request, response: Response, options: list[tuple[int, bytes]]
    ) -> Response | None:
        block2 = request.block2
        szx = self._szx
        num = 0
        if block2 is not None:
            szx = min(szx, block2.szx)
            num = block2.offset >> (szx + 4)
        full = response.copy()
        full.options = options
        if num > 0:
            full.set_option(_OBSERVE, None)
        part = slice_block2(full, num, szx)
        if part is not None and part.block2 is not None and part.block2.more:
            self._block2.put(transfer_key(request), full)
        return part

    def _track_con(self, pending: _Pending) -> None:
        p = self.params
        pending.timeout = p.ack_timeout * (1.0 + random.random() * (p.ack_random_factor - 1.0))
        self._by_mid[(pending.peer, pending.mid)] = pending
        pending.timer = self._loop.call_later(pending.timeout, self._retransmit, pending)

    # -- Observe, resource side --------------------------------------------------------------------

    def _next_obs_seq(self) -> int:
        # One counter for all observations: always increasing per observation too, and it survives
        # re-registrations with the same token.
        self._obs_seq = seq = (self._obs_seq + 1) & 0xFFFFFF
        return seq

    def _send_notification(self, served: ServedObservation, response: Response, confirmable: bool) -> None:
        if self._closed:
            return
        peer = served.peer
        final = not (64 <= response.code < 96)
        options = response.options
        options = [o for o in options if o[0] != _OBSERVE] if final else _with_observe(options, self._next_obs_seq())
        payload = response.payload
        szx = self._szx if served.block_szx is None else min(self._szx, served.block_szx)
        if not final and len(payload) > (1 << (szx + 4)):
            full = response.copy()
            full.options = options
            part = slice_block2(full, 0, szx)
            assert part is not None
            cache_request = served.request.copy()
            cache_request.options = [o for o in cache_request.options if o[0] != _OBSERVE]
            self._block2.put(transfer_key(cache_request), full)
            options, payload = part.options, part.payload
        mid = self._next_mid()
        data = encode(Message(_CON if confirmable else _NON, response.code, mid, served.token, options, payload))
        self._send(data, peer)
        if final:
            self._drop_served(served)
            served.active = False
        if confirmable:
            inflight = served._inflight
            if isinstance(inflight, _Pending) and inflight.timer is not None:
                # RFC 7641 §4.5.2: a newer notification replaces the one in transit and continues
                # its retransmission schedule.
                if self._by_mid.get((peer, inflight.mid)) is inflight:
                    del self._by_mid[(peer, inflight.mid)]
                inflight.mid = mid
                inflight.data = data
                self._by_mid[(peer, mid)] = inflight
                return
            pending = _Pending(_NOTIFICATION, peer, mid, served.token, data, started=self._loop.time())
            pending.served = served
            served._inflight = pending
            self._track_con(pending)
        else:
            non_sent = self._non_sent
            if len(non_sent) >= 4096:
                del non_sent[next(iter(non_sent))]  # only recent NONs can still draw a RST
            non_sent[(peer, mid)] = served

    def _drop_served(self, served: ServedObservation) -> None:
        key = (served.peer, served.token)
        if self._served.get(key) is served:
            del self._served[key]


def _number(option: tuple[int, bytes]) -> int:
    return option[0]


def _with_observe(options: list[tuple[int, bytes]], seq: int) -> list[tuple[int, bytes]]:
    """A copy of ``options`` with Observe set to ``seq`` (inserted in number order)."""
    out = [o for o in options if o[0] != _OBSERVE]
    i = 0
    while i < len(out) and out[i][0] < _OBSERVE:
        i += 1
    out.insert(i, (_OBSERVE, uint_bytes(seq)))
    return out
