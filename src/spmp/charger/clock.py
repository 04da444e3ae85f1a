"""Simulation clock: simulated time that runs at a multiple of wall time, or only when told to.

A simulated site must live through days in minutes (a day in a minute is ``speed=1440``), and tests
must control time exactly. ``SimClock`` does both:

* running (the default): simulated time = start + speed × elapsed wall time, plus whatever
  ``advance`` skipped ahead; ``sleep_sim(s)`` sleeps s / speed seconds of wall time.
* manual (``manual=True``): time moves only through ``advance(dt)``; ``sleep_sim`` waits until
  ``advance`` has moved the clock past its deadline, so a test drives sleepers without real waits.

Simulated time is always a timezone-aware UTC ``datetime``, because the PV model needs the absolute
instant (the sun's position) and everything downstream (LwM2M Time, SNMP DateAndTime) is UTC.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["SimClock"]


class SimClock:
    """Simulated UTC time at ``speed`` × wall time (running) or moved only by ``advance`` (manual)."""

    def __init__(
        self,
        start: datetime,
        speed: float = 1.0,
        *,
        manual: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware (simulated time is UTC)")
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self._start = start.astimezone(UTC)
        self._speed = float(speed)
        self._manual = manual
        self._monotonic = monotonic
        self._wall0 = monotonic()
        self._offset = 0.0  # simulated seconds added by advance() (and by speed changes)
        # Manual mode: sleepers as (deadline in simulated seconds, sequence, future).
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def speed(self) -> float:
        """Simulated seconds per wall second (ignored in manual mode)."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        if value <= 0:
            raise ValueError(f"speed must be positive, got {value}")
        # Re-anchor so that changing speed does not make simulated time jump.
        self._offset = self.elapsed()
        self._wall0 = self._monotonic()
        self._speed = float(value)

    @property
    def manual(self) -> bool:
        return self._manual

    @property
    def start(self) -> datetime:
        return self._start

    def elapsed(self) -> float:
        """Simulated seconds since ``start``."""
        if self._manual:
            return self._offset
        return self._offset + (self._monotonic() - self._wall0) * self._speed

    def now(self) -> datetime:
        """The current simulated time (UTC)."""
        return self._start + timedelta(seconds=self.elapsed())

    def advance(self, dt: float | timedelta) -> datetime:
        """Move simulated time forward by ``dt`` (seconds or a timedelta); wake manual sleepers now due."""
        seconds = dt.total_seconds() if isinstance(dt, timedelta) else float(dt)
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._offset += seconds
        self._wake_due()
        return self.now()

    async def sleep_sim(self, seconds: float) -> None:
        """Sleep ``seconds`` of simulated time: seconds / speed of wall time, or until advanced past."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        if not self._manual:
            await asyncio.sleep(seconds / self._speed)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._offset + seconds, next(self._seq), future))
        await future

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._offset:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():  # a cancelled sleeper leaves a done future behind
                future.set_result(None)
