"""Post-registration work in the background (spmp.server.background): Discover and the calibration
backup never hold up a Register, happen eventually, at the configured rate, and skip replaced
registrations; the queue is bounded."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from _server_helpers import make_server, run
from spmp.fleet import Fleet, FleetConfig
from spmp.server.background import BackgroundWork
from spmp.store import MemoryStore


class _Session:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint


def test_jobs_run_at_the_rate_skip_stale_and_the_queue_is_bounded() -> None:
    async def body() -> None:
        current = {"a", "b", "c", "d"}
        work = BackgroundWork(lambda s: s.endpoint in current, rate=20.0, concurrency=2, limit=4)
        done: list[tuple[str, float]] = []

        async def job(session: Any) -> None:
            done.append((session.endpoint, time.monotonic()))

        async def failing(session: Any) -> None:
            raise RuntimeError("device went away")

        for name in ("a", "b", "gone", "c"):
            assert work.submit(_Session(name), job)  # type: ignore[arg-type]
        assert not work.submit(_Session("d"), job)  # type: ignore[arg-type]  # beyond the limit: dropped
        assert work.stats.dropped == 1 and work.queued == 4
        work.start()
        assert await work.idle(5.0)
        assert work.submit(_Session("d"), failing)  # type: ignore[arg-type]
        assert await work.idle(5.0)
        await work.stop()
        assert [name for name, _ in done] == ["a", "b", "c"]
        assert work.stats.skipped == 1 and work.stats.failed == 1 and work.stats.done == 3
        # Three jobs started at most 20/s: the third no sooner than ~0.1 s after the first.
        assert done[-1][1] - done[0][1] >= 0.09

    run(body())


def test_register_does_not_wait_for_discovery_which_happens_eventually() -> None:
    async def body() -> None:
        async with MemoryStore() as store:
            # 2 jobs per device (Discover, calibration backup of the Voltage object), 10 jobs/s.
            server = make_server(store, discover_on_register=True, background_rate=10.0, background_concurrency=2)
            async with server:
                assert server.coap_address is not None
                fleet = Fleet(FleetConfig(8, f"coap://127.0.0.1:{server.coap_address[1]}", period=1e9))
                try:
                    started = time.monotonic()
                    await fleet.start()
                    assert fleet.stats.registered == 8
                    registered_in = time.monotonic() - started
                    # 16 jobs at 10/s take 1.5 s or more: the registrations did not wait for them.
                    assert registered_in < 1.5
                    undiscovered = [r for r in server.registrations() if r.discovered is None]
                    assert len(undiscovered) >= 4
                    assert server.stats()["deferred"]["submitted"] == 16
                    assert await server.background.idle(20.0)
                    for registration in server.registrations():
                        assert registration.discovered is not None and "</3316/0/5700>" in registration.discovered
                        stored = await store.get_registration(registration.endpoint)
                        assert stored is not None and stored.discovered == registration.discovered
                    stats = server.stats()["deferred"]
                    assert stats["done"] == 16 and stats["failed"] == 0 and stats["dropped"] == 0
                finally:
                    await fleet.stop()
                await asyncio.sleep(0)

    run(body(), timeout=60)
