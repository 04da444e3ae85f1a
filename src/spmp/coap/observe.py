"""Observe (RFC 7641) state for both roles; the :class:`~spmp.coap.endpoint.Endpoint` drives the wire.

* :class:`Observation` — we observe a resource on a peer: an async iterator (and/or callback) of
  notifications, with the §3.4 reordering rule (24-bit sequence numbers, 128 s freshness).
* :class:`ServedObservation` — a peer observes one of our resources: the owner keeps it and calls
  :meth:`ServedObservation.notify`; ``on_cancel`` tells the owner when the observer went away
  (RST, deregistration, unacknowledged confirmable notification, endpoint closed).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from spmp.coap.errors import CoapError, TransportClosed
from spmp.coap.message import Request, Response
from spmp.coap.transport import Peer

if TYPE_CHECKING:
    from spmp.coap.endpoint import Endpoint

log = logging.getLogger(__name__)

SEQ_MODULUS = 1 << 24
FRESHNESS = 128.0
"""Seconds after which any notification counts as newer, whatever its number (RFC 7641 §3.4)."""


def is_newer(v1: int, t1: float, v2: int, t2: float) -> bool:
    """RFC 7641 §3.4: is a notification (v2 received at t2) newer than the last one (v1 at t1)?"""
    return (v1 < v2 and v2 - v1 < 1 << 23) or (v1 > v2 and v1 - v2 > 1 << 23) or t2 > t1 + FRESHNESS


NotificationCallback = Callable[[Response], None]


class RawNotificationCallback(Protocol):
    """A :data:`NotificationCallback` that can also take a notification as its raw fields.

    The endpoint's fast path (plain 2.xx notifications with Observe and at most Content-Format, ETag and
    Max-Age options, not block-wise) calls ``raw(code, seq, content_format, payload)`` instead of building
    a :class:`Response`, after the §3.4 freshness check. Returning False means "not taken": nothing may
    have changed, and the notification is then delivered as a Response the usual way. A notification
    taken this way does not reach the iterator/queue nor :attr:`Observation.response`.
    """

    def __call__(self, response: Response, /) -> None: ...

    def raw(self, code: int, seq: int, content_format: int | None, payload: bytes, /) -> bool: ...


class Observation:
    """Our observation of a resource on ``peer``: iterate with ``async for`` or pass a callback.

    ``response`` is the latest accepted response (the initial one first). Iteration yields every
    notification *after* the initial response and stops when the observation ends: the server sent a
    final (non-2.xx or Observe-less) response — which is yielded — or we cancelled, or the endpoint
    closed. If the consumer is slow only the newest ``queue_size`` notifications are kept:
    notifications carry state, so old ones are the ones worth losing.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        peer: Peer,
        request: Request,
        callback: NotificationCallback | None = None,
        queue_size: int = 64,
    ) -> None:
        self.peer = peer
        self.request = request
        self.token = b""
        self.response: Response | None = None
        self.active = False
        self.error: CoapError | None = None
        self._endpoint = endpoint
        self._callback = callback
        self._queue: deque[Response] = deque(maxlen=queue_size)
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._seq = -1
        self._seq_time = 0.0
        self._raw: Callable[[int, int, int | None, bytes], bool] | None = getattr(callback, "raw", None)

    # -- driven by the endpoint -----------------------------------------------------------------------

    def _start(self, response: Response, now: float) -> None:
        self.response = response
        seq = response.observe
        if seq is None or not response.is_success:
            self._finish(None)
            return
        self.active = True
        self._seq, self._seq_time = seq, now

    def _notify(self, response: Response, now: float) -> bool:
        """Deliver a notification; False if it was stale (older than the last one) and dropped."""
        if self._ended:
            return False
        seq = response.observe
        if seq is not None and response.is_success:
            if self._seq >= 0 and not is_newer(self._seq, self._seq_time, seq, now):
                return False
            self._seq, self._seq_time = seq, now
        self.response = response
        self._queue.append(response)
        if self._callback is not None:
            try:
                self._callback(response)
            except Exception:
                log.exception("observation callback failed for %s", self.peer)
        if seq is None or not response.is_success:
            self._finish(None)
        self._wake()
        return True

    def _take_raw(self, code: int, seq: int, content_format: int | None, payload: bytes, now: float) -> bool:
        """The endpoint's fast path for a 2.xx notification with Observe ``seq``: True when taken (given to
        the raw callback, or stale and dropped), False when it must be delivered as a Response."""
        raw = self._raw
        if raw is None or self._ended:
            return False
        if self._seq >= 0 and not is_newer(self._seq, self._seq_time, seq, now):
            return True
        if not raw(code, seq, content_format, payload):
            return False
        self._seq, self._seq_time = seq, now
        return True

    def _finish(self, error: CoapError | None) -> None:
        if self._ended:
            return
        self._ended = True
        self.active = False
        self.error = error
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- public ---------------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Passive cancel: forget the observation; the next notification is answered with RST."""
        self._endpoint._forget_observation(self)
        self._finish(None)

    async def deregister(self) -> Response:
        """Active cancel: a GET with Observe=1 and the same token; returns the server's response."""
        self._endpoint._forget_observation(self)
        self._finish(None)
        request = self.request.copy()
        request.observe = 1
        return await self._endpoint._request_with_token(self.peer, request, self.token)

    def __aiter__(self) -> Observation:
        return self

    async def __anext__(self) -> Response:
        while not self._queue:
            if self._ended:
                if self.error is not None and not isinstance(self.error, TransportClosed):
                    raise self.error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def __repr__(self) -> str:
        state = "active" if self.active else "ended"
        return f"<Observation {self.peer} {self.request!r} token={self.token.hex()} {state}>"


CancelCallback = Callable[["ServedObservation", str], None]
"""Called as ``on_cancel(observation, reason)`` when an observer goes away."""


class ServedObservation:
    """A peer's observation of one of our resources (created by ``Endpoint.accept_observation``)."""

    def __init__(self, endpoint: Endpoint, request: Request, on_cancel: CancelCallback | None) -> None:
        assert request.peer is not None
        self.peer: Peer = request.peer
        self.token = request.token
        self.request = request
        self.active = False
        self.block_szx: int | None = None
        block2 = request.block2
        if block2 is not None:
            self.block_szx = block2.szx
        self._endpoint = endpoint
        self._on_cancel = on_cancel
        self._inflight: object | None = None  # the endpoint's pending CON notification, if any

    def notify(self, response: Response, *, confirmable: bool = False) -> None:
        """Send ``response`` as a notification (the endpoint adds the Observe number).

        A non-2.xx response ends the observation (RFC 7641 §3.2). Never blocks; a confirmable
        notification that is never acknowledged cancels the observation through ``on_cancel``.
        """
        if self.active:
            self._endpoint._send_notification(self, response, confirmable)

    def cancel(self) -> None:
        """Stop serving this observation silently (the observer notices by max-age / re-registers)."""
        self._endpoint._drop_served(self)
        self.active = False

    def _cancelled(self, reason: str) -> None:
        if not self.active:
            return
        self.active = False
        if self._on_cancel is not None:
            try:
                self._on_cancel(self, reason)
            except Exception:
                log.exception("on_cancel callback failed for %s", self.peer)

    def __repr__(self) -> str:
        state = "active" if self.active else "inactive"
        return f"<ServedObservation {self.peer} /{'/'.join(self.request.path)} token={self.token.hex()} {state}>"
