"""What only the PostgreSQL store can show: several servers on one database, NOTIFY, batching, errors.

The Store contract itself runs against PostgreSQL in test_store.py; these tests use the same real
server (the session's ``pg_server`` fixture), a fresh database each.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import asyncpg
import pytest

from pg_server import PgServer, free_port
from spmp.store import Conflict, Notifier, Observation, SecurityInfo, StoreError, open_store
from spmp.store.postgres import COPY_MIN_POINTS, MIGRATIONS, PostgresStore
from test_store import T0, point, registration, run


async def scalar(dsn: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def test_two_servers_share_one_database(pg_dsn: str) -> None:
    async def body() -> None:
        async with (
            PostgresStore(pg_dsn, node_id="node-a", flush_interval=0.02) as a,
            PostgresStore(pg_dsn, node_id="node-b", flush_interval=3600) as b,
        ):
            await a.save_registration(registration("charger-1", "r1", node_id="node-a"))
            await b.save_registration(registration("charger-2", "r2", node_id="node-b"))
            assert [r.endpoint for r in await a.list_registrations()] == ["charger-1", "charger-2"]
            assert await b.get_registration("charger-1") == registration("charger-1", "r1", node_id="node-a")
            assert [r.endpoint for r in await a.registrations_on_node()] == ["charger-1"]
            assert [r.endpoint for r in await a.registrations_on_node("node-b")] == ["charger-2"]

            # the device moves to node b: it registers there again (new id), a's observation goes with the old one
            await a.save_observation(Observation("charger-1", "r1", b"\x01", ("/3/0",)))
            await b.save_registration(registration("charger-1", "r3", node_id="node-b"))
            assert (await a.get_registration("charger-1")).node_id == "node-b"  # type: ignore[union-attr]
            assert await a.list_observations("charger-1") == []

            # uniqueness holds across servers
            with pytest.raises(Conflict, match="r3"):
                await a.save_registration(registration("charger-9", "r3"))
            await a.put_security(SecurityInfo("charger-1", "id-1", b"k" * 16))
            with pytest.raises(Conflict, match="id-1"):
                await b.put_security(SecurityInfo("charger-2", "id-1", b"j" * 16))
            assert await b.get_security_by_identity("id-1") == SecurityInfo("charger-1", "id-1", b"k" * 16)

            # telemetry: a's background task writes without being asked; b reads it
            await a.append_telemetry([point("/3316/0/5700", 48.5, "Float")])
            for _ in range(200):
                if await b.query_telemetry("charger-1"):
                    break
                await asyncio.sleep(0.01)
            assert [p.value for p in await b.query_telemetry("charger-1")] == [48.5]
            # b's own points wait in b until flushed: a sees them only then
            await b.append_telemetry([point("/3316/0/5700", 49.0, "Float", T0 + timedelta(seconds=1))])
            assert len(await a.query_telemetry("charger-1")) == 1
            await b.flush()
            assert [p.value for p in await a.query_telemetry("charger-1")] == [48.5, 49.0]

    run(body)


def test_concurrent_schema_creation(pg_dsn: str) -> None:
    async def body() -> None:
        stores = [PostgresStore(pg_dsn, pool_min=1, pool_max=2, node_id=f"n{i}") for i in range(6)]
        try:
            await asyncio.gather(*(s.open() for s in stores))
            await asyncio.gather(*(s.put_api_token(f"t{i}", f"token-{i}") for i, s in enumerate(stores)))
            assert await stores[0].list_api_tokens() == [f"t{i}" for i in range(6)]
        finally:
            await asyncio.gather(*(s.close() for s in stores))
        assert await scalar(pg_dsn, "SELECT count(*) FROM schema_version") == len(MIGRATIONS)
        # and opening again later migrates nothing
        async with PostgresStore(pg_dsn):
            pass
        assert await scalar(pg_dsn, "SELECT count(*) FROM schema_version") == len(MIGRATIONS)

    run(body)


def test_newer_schema_refused(pg_dsn: str) -> None:
    async def body() -> None:
        async with PostgresStore(pg_dsn):
            pass
        await scalar(pg_dsn, "INSERT INTO schema_version VALUES (99) RETURNING version")
        with pytest.raises(StoreError, match="upgrade SPMP"):
            await PostgresStore(pg_dsn).open()

    run(body)


def test_listen_notify_between_servers(pg_dsn: str) -> None:
    async def body() -> None:
        async with PostgresStore(pg_dsn, node_id="a") as a, PostgresStore(pg_dsn, node_id="b") as b:
            assert isinstance(a, Notifier)
            async with a.listen("spmp.registrations") as messages, a.listen("Other Channel") as other:
                await b.notify("spmp.registrations", "charger-1")
                await b.notify("spmp.registrations", "charger-2")
                await b.notify("Other Channel", "x")
                await a.notify("spmp.registrations", "from-a")  # a listener hears its own store too
                got = [await asyncio.wait_for(anext(messages), 5) for _ in range(3)]
                assert got == ["charger-1", "charger-2", "from-a"]
                assert await asyncio.wait_for(anext(other), 5) == "x"
            # unsubscribed: the iterator has ended, and nothing more arrives
            with pytest.raises(StopAsyncIteration):
                await anext(messages)
            await b.notify("spmp.registrations", "late")

            # two listeners of one channel each get every message; iterating subscribes on its own
            first, second = b.listen("fan"), b.listen("fan")
            await first.start()
            await second.start()
            await a.notify("fan", "hello")
            assert await asyncio.wait_for(anext(first), 5) == "hello"
            assert await asyncio.wait_for(anext(second), 5) == "hello"
            await first.aclose()
            await a.notify("fan", "again")
            assert await asyncio.wait_for(anext(second), 5) == "again"
            # closing the store ends the listeners still open
        with pytest.raises(StopAsyncIteration):
            await anext(second)

    run(body)


def test_listener_learns_of_a_lost_connection(pg_dsn: str) -> None:
    async def body() -> None:
        async with PostgresStore(pg_dsn, node_id="a") as a:
            async with a.listen("ch") as messages:
                await a.notify("ch", "before")
                assert await asyncio.wait_for(anext(messages), 5) == "before"
                kill = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1"
                assert await scalar(pg_dsn, kill, "spmp a listen") == 1
                with pytest.raises(StoreError, match="may have been missed"):
                    await asyncio.wait_for(anext(messages), 5)
            # listening again works (a new connection)
            async with a.listen("ch") as again:
                await a.notify("ch", "after")
                assert await asyncio.wait_for(anext(again), 5) == "after"

    run(body)


def test_telemetry_batches_copy_and_close(pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    points = [point("/3316/0/5700", float(n), "Float", T0 + timedelta(milliseconds=n)) for n in range(10_000)]

    async def count() -> object:
        return await scalar(pg_dsn, "SELECT count(*) FROM telemetry")

    async def body() -> None:
        store = PostgresStore(pg_dsn, flush_interval=3600, flush_points=4000)
        await store.open()
        await store.append_telemetry(points[:100])
        assert await count() == 0  # queued, not written
        await store.flush()
        assert await count() == 100
        await store.append_telemetry(points[100:4500])  # crosses flush_points: written at once (COPY)
        assert await count() == 4500
        await store.append_telemetry(points[4500:7000])
        assert await count() == 4500
        # a batch repeating keys: the later point of a (endpoint, path, ms) wins, in COPY and executemany alike
        again = [point("/3316/0/5700", -1.0, "Float", T0), point("/3316/0/5700", -2.0, "Float", T0)]
        await store.append_telemetry(again)
        with caplog.at_level(logging.DEBUG, logger="spmp.store.postgres"):
            await store.append_telemetry(points[7000:])  # COPY meets a stored key: rolled back, upserted
        assert await count() == 10_000
        assert [r.getMessage() for r in caplog.records] == [
            "telemetry batch of 5501 points repeats stored ones: upserting"
        ]
        await store.append_telemetry([point("/3316/0/5701", 1.0, "Float")])
        await store.close()  # writes the rest
        assert await count() == 10_001
        async with PostgresStore(pg_dsn) as store:
            assert (await store.query_telemetry("charger-1", "/3316/0/5700", limit=1))[0].value == -2.0
            small = [point("/1/0/1", n, "Integer") for n in range(3)]  # below COPY_MIN_POINTS, same key
            assert len(small) < COPY_MIN_POINTS
            await store.append_telemetry(small)
            assert [p.value for p in await store.query_telemetry("charger-1", "/1")] == [2]

    run(body)


def test_failed_writes_keep_points(pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        store = PostgresStore(pg_dsn, flush_interval=0.02, command_timeout=0.3)
        await store.open()
        blocker = await asyncpg.connect(pg_dsn)
        try:
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE")
            await store.append_telemetry([point(f"/3316/0/{n}", float(n), "Float") for n in range(500)])
            with pytest.raises(StoreError) as caught:
                await store.flush()
            message = str(caught.value)
            assert "cannot write 500 telemetry points" in message and "127.0.0.1" in message
            # the background task fails too (while the lock is held), logs once, keeps the points
            deadline = asyncio.get_running_loop().time() + 20.0
            while not any("kept queued for retry" in r.getMessage() for r in caplog.records):
                assert asyncio.get_running_loop().time() < deadline, "the background flush never failed"
                await asyncio.sleep(0.05)
            await store.append_telemetry([point("/3316/1/0", 1.0, "Float")])
            await tx.rollback()
        finally:
            await blocker.close()
        await store.close()
        assert await scalar(pg_dsn, "SELECT count(*) FROM telemetry") == 501

    with caplog.at_level(logging.ERROR, logger="spmp.store.postgres"):
        run(body)
    assert any("kept queued for retry" in r.getMessage() for r in caplog.records)


def test_pool_recovers_after_connections_are_killed(pg_dsn: str) -> None:
    kill = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'spmp victim'"

    async def body() -> None:
        async with PostgresStore(pg_dsn, node_id="victim", pool_min=2, pool_max=2) as store:
            await store.put_api_token("ops", "t1")
            assert await scalar(pg_dsn, kill) == 2  # as in a server restart: every pooled connection dies
            assert await store.verify_api_token("t1") == "ops"  # a read retries once on fresh connections
            assert await store.verify_api_token("t1") == "ops"
            await store.put_api_token("ci", "t2")  # and writes work again
            assert await scalar(pg_dsn, kill) == 2
            try:  # a write is not retried (it may have committed): it fails clearly, or meets a fresh connection
                await store.put_api_token("x", "t3")
            except StoreError as exc:
                assert "connection" in str(exc) and "PostgreSQL is running" in str(exc)
            assert await store.list_api_tokens() in (["ci", "ops"], ["ci", "ops", "x"])


def test_wrong_password(pg_server: PgServer, pg_dsn: str) -> None:
    wrong = pg_dsn.replace(f":{pg_server.password}@", ":Wr0ng-Secret@")
    assert wrong != pg_dsn

    async def body() -> None:
        store = PostgresStore(wrong, connect_timeout=5)
        with pytest.raises(StoreError) as caught:
            await store.open()
        message = str(caught.value)
        assert "password" in message and pg_server.user in message and f"127.0.0.1:{pg_server.port}" in message
        assert "Wr0ng-Secret" not in message and "Wr0ng-Secret" not in repr(store)
        assert "Wr0ng-Secret" not in str(caught.value.__cause__)
        await store.close()  # never opened: harmless

    run(body)


def test_server_down_and_missing_database(pg_server: PgServer) -> None:
    port = free_port()  # nothing listens there

    async def body() -> None:
        store = PostgresStore(f"postgresql://spmp:Pa55word@127.0.0.1:{port}/fleet", connect_timeout=5)
        with pytest.raises(StoreError) as caught:
            await store.open()
        message = str(caught.value)
        assert f"spmp@127.0.0.1:{port}/fleet" in message and "is running" in message
        assert "Pa55word" not in message
        with pytest.raises(StoreError, match="not open"):
            await store.get_registration("x")

        missing = pg_server.dsn("no_such_db")
        with pytest.raises(StoreError, match="does not exist.*createdb"):
            await PostgresStore(missing).open()

    run(body)


def test_open_store_gives_a_working_postgres_store(pg_dsn: str) -> None:
    async def body() -> None:
        async with open_store(pg_dsn) as store:
            assert isinstance(store, PostgresStore)
            await store.save_registration(registration())
            assert await store.get_registration("charger-1") == registration()

    run(body)
