"""Server events for the REST API, the dashboard and later the SNMP/EMAN layers.

:class:`EventHub` fans every event out to its subscribers. Publishing never blocks and never
fails: each subscriber has a bounded queue and, when it falls behind, loses its *oldest* events
(counted in :attr:`Subscription.dropped`), so one slow consumer cannot slow the server down.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["registered", "updated", "deregistered", "expired", "notification", "send", "observation-cancelled"]


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a client; ``time`` is Unix seconds, ``data`` is JSON-friendly."""

    kind: EventKind
    endpoint: str
    time: float
    data: dict[str, Any] = field(default_factory=dict)


class Subscription:
    """One subscriber's queue: ``async for event in subscription`` until :meth:`close`."""

    def __init__(self, hub: EventHub, maxsize: int, kinds: frozenset[str] | None) -> None:
        self._hub = hub
        self._queue: deque[Event] = deque(maxlen=maxsize)
        self._kinds = kinds
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = 0
        """Events lost because this subscriber fell behind."""

    def _put(self, event: Event) -> None:
        if self._kinds is not None and event.kind not in self._kinds:
            return
        queue = self._queue
        if len(queue) == queue.maxlen:
            self.dropped += 1  # the deque drops the oldest on append
        queue.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> Event | None:
        return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hub._subscribers.discard(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; raises TimeoutError after ``timeout`` seconds, StopAsyncIteration if closed."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """Publish/subscribe for :class:`Event`; see the module docstring."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self.published = 0

    def subscribe(
        self, *, kinds: frozenset[str] | set[str] | None = None, queue_size: int | None = None
    ) -> Subscription:
        """A new subscription (to every kind, or only ``kinds``); close it when done."""
        sub = Subscription(self, queue_size or self.queue_size, frozenset(kinds) if kinds is not None else None)
        self._subscribers.add(sub)
        return sub

    def publish(self, kind: EventKind, endpoint: str, data: dict[str, Any] | None = None) -> None:
        self.published += 1
        if not self._subscribers:
            return  # the common case on a quiet server: build nothing
        event = Event(kind, endpoint, time.time(), data if data is not None else {})
        for sub in self._subscribers:
            sub._put(event)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """End every subscription (their iterators stop)."""
        for sub in list(self._subscribers):
            sub.close()
