"""The telemetry write queue both SQL engines share: points wait in memory and go out in batches.

A background task writes every ``flush_interval`` seconds, an append writes once ``flush_points``
are waiting, and a failed batch goes back in front of the queue (order matters: two values of one
path in the same millisecond, the later wins), so nothing is lost while the database is away. The
engine supplies how a batch is written (:meth:`_write_batch`) and how it names itself in logs.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from spmp.store.interface import StoreError

Item = TypeVar("Item")


class TelemetryQueue(ABC, Generic[Item]):
    """Mixin: call :meth:`_init_queue` in ``__init__``; run :meth:`_flush_periodically` as a task."""

    flush_interval: float
    flush_points: int
    max_pending: int
    _pending: list[Item]
    _flush_lock: asyncio.Lock
    _flush_failing: bool
    _flusher: asyncio.Task[None] | None

    def _init_queue(self, flush_interval: float, flush_points: int, max_pending: int) -> None:
        self.flush_interval = flush_interval
        self.flush_points = flush_points
        self.max_pending = max_pending
        self._pending = []
        self._flush_lock = asyncio.Lock()
        self._flush_failing = False
        self._flusher = None

    def _start_flusher(self, name: str) -> None:
        """Start the background writer (call from ``open``, inside the running loop)."""
        self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically(), name=name)

    async def _drain_queue(self) -> None:
        """For ``close``: stop the background writer, write what waits, log what could not be written.

        Raises the final flush's error, after logging how many points are lost with it.
        """
        if self._flusher is not None:
            self._flusher.cancel()
            # The flusher may be mid-write; wait for it so the final flush below sees a settled queue.
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        try:
            await self.flush()
        finally:
            if self._pending:
                logging.getLogger(type(self).__module__).error(
                    "%s: closing with %d telemetry points not written", self._queue_name, len(self._pending)
                )

    @abstractmethod
    async def _write_batch(self, batch: list[Item]) -> None:
        """Write one batch; raise StoreError when it could not be written."""

    @property
    @abstractmethod
    def _queue_name(self) -> str:
        """How log lines name this store (a file path, ``PostgreSQL user@host/db``)."""

    async def flush(self) -> None:
        async with self._flush_lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            try:
                await self._write_batch(batch)
                self._flush_failing = False
            except BaseException:
                # Put them back in front of what arrived meanwhile: order matters when a path
                # gets two values in the same millisecond (the later one wins).
                self._pending[:0] = batch
                raise

    async def _flush_logging_errors(self) -> None:
        """Flush for the background paths: a failure is logged (once per streak), the points stay queued."""
        # Log under the engine's own module (spmp.store.sqlite / .postgres), as before the split.
        log = logging.getLogger(type(self).__module__)
        was_failing = self._flush_failing
        try:
            await self.flush()
        except StoreError as exc:
            if not was_failing:
                log.error("telemetry flush failed, %d points kept queued for retry: %s", len(self._pending), exc)
            self._flush_failing = True
        else:
            if was_failing:
                log.info("%s: telemetry flush works again", self._queue_name)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            if self._pending:
                await self._flush_logging_errors()
