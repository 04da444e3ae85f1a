"""Post-registration work in the background: a bounded queue, a start rate and a few workers.

After a Register the server Discovers what the client has and backs up its calibration (a Read).
Doing that inline (or one task each) makes a registration storm cost four round trips and several
store writes per device while devices wait for their 2.01, so those jobs go here instead:

* :meth:`BackgroundWork.submit` queues ``job(session)`` and returns at once (the Register response
  never waits); beyond ``limit`` queued jobs new ones are dropped, counted and logged once per streak
  (the data they would have fetched stays available on demand: ``discover``, calibration backup);
* ``concurrency`` worker tasks (not one task per registration) start at most ``rate`` jobs per second;
* a job whose registration was replaced or ended meanwhile is skipped.

So with discovery enabled a 10k-device storm registers as fast as without it, and its discoveries
lag behind it: at ``rate`` jobs/s, N devices with two jobs each settle in about ``2 N / rate`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spmp.server.registrations import ClientSession

__all__ = ["BackgroundStats", "BackgroundWork", "Job"]

log = logging.getLogger(__name__)

Job = Callable[["ClientSession"], Awaitable[Any]]


@dataclass(slots=True)
class BackgroundStats:
    submitted: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    """Jobs whose registration had been replaced or had ended by the time their turn came."""
    dropped: int = 0
    """Jobs refused because ``limit`` jobs were already waiting."""


class BackgroundWork:
    """See the module docstring. ``start()`` in a running loop, ``await stop()`` at the end."""

    def __init__(
        self,
        is_current: Callable[[ClientSession], bool],
        *,
        rate: float = 200.0,
        concurrency: int = 16,
        limit: int = 200_000,
    ) -> None:
        if rate <= 0 or concurrency < 1 or limit < 1:
            raise ValueError("background work needs rate > 0, concurrency >= 1 and limit >= 1")
        self.is_current = is_current
        self.rate = rate
        self.concurrency = concurrency
        self.limit = limit
        self.stats = BackgroundStats()
        self.running = 0
        self._queue: deque[tuple[ClientSession, Job]] = deque()
        self._ready: asyncio.Event | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._next_start = 0.0
        self._dropping = False

    @property
    def queued(self) -> int:
        return len(self._queue)

    def as_dict(self) -> dict[str, Any]:
        return {
            "queued": len(self._queue),
            "running": self.running,
            "rate": self.rate,
            "concurrency": self.concurrency,
            "submitted": self.stats.submitted,
            "done": self.stats.done,
            "failed": self.stats.failed,
            "skipped": self.stats.skipped,
            "dropped": self.stats.dropped,
        }

    def submit(self, session: ClientSession, job: Job) -> bool:
        """Queue ``job(session)``; False (and counted) when ``limit`` jobs are already waiting."""
        if len(self._queue) >= self.limit:
            self.stats.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.warning("background queue full: post-registration work dropped", extra={"limit": self.limit})
            return False
        self._dropping = False
        self._queue.append((session, job))
        self.stats.submitted += 1
        if self._ready is not None:
            self._ready.set()
        return True

    def start(self) -> None:
        if self._workers:
            return
        loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        if self._queue:
            self._ready.set()
        self._workers = [loop.create_task(self._work(), name=f"spmp-background-{i}") for i in range(self.concurrency)]

    async def stop(self) -> None:
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._queue.clear()
        self._ready = None

    async def idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or running (tests, benchmarks); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._queue or self.running:
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def _work(self) -> None:
        ready = self._ready
        assert ready is not None
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            if not queue:
                ready.clear()
                await ready.wait()
                continue
            session, job = queue.popleft()
            if not self.is_current(session):
                self.stats.skipped += 1
                continue
            now = loop.time()
            start = max(now, self._next_start)
            self._next_start = start + 1.0 / self.rate
            self.running += 1
            try:
                if start > now:
                    await asyncio.sleep(start - now)
                if self.is_current(session):
                    await job(session)
                    self.stats.done += 1
                else:
                    self.stats.skipped += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.failed += 1
                log.exception("background job failed", extra={"endpoint": session.endpoint})
            finally:
                self.running -= 1
