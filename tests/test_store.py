"""The Store contract, run against every engine, plus what only the SQLite store can show (files, errors)."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spmp.store import (
    BootstrapConfig,
    BootstrapWrite,
    CalibrationBackup,
    Conflict,
    MemoryStore,
    NotFound,
    Observation,
    Registration,
    SecurityInfo,
    SecurityMode,
    SecurityScope,
    ServerAccount,
    SqliteStore,
    Store,
    StoreError,
    TelemetryPoint,
    open_store,
)
from spmp.store.postgres import PostgresStore

T0 = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
StoreFactory = Callable[[], Store]


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite-inline", "sqlite-threaded", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory, so persistence tests can open the same database twice (memory: a fresh store).

    ``postgres`` runs against a real server (the session's ``pg_server``), a fresh database per test.
    """
    dsn = str(request.getfixturevalue("pg_dsn")) if request.param == "postgres" else ""

    def make() -> Store:
        if request.param == "memory":
            return MemoryStore()
        if request.param == "postgres":
            return PostgresStore(dsn, pool_max=4)
        return SqliteStore(tmp_path / "spmp.db", threaded=request.param == "sqlite-threaded")

    return make


def registration(endpoint: str = "charger-1", reg_id: str = "r1", **changes: object) -> Registration:
    fields: dict[str, object] = {
        "registration_id": reg_id,
        "endpoint": endpoint,
        "lifetime": 300,
        "lwm2m_version": "1.1",
        "binding": "UQ",
        "queue_mode": True,
        "sms_number": "+27123456789",
        "object_links": '</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3411>;ver=1.1,</3411/0>',
        "object_versions": {3411: "1.1"},
        "instances": ("/1/0", "/3/0", "/3411/0"),
        "content_formats": (110, 112),
        "host": "2001:db8::1",
        "port": 56830,
        "dtls_identity": "charger-1-id",
        "registered_at": T0,
        "last_update": T0,
        "node_id": "node-a",
        "discovered": "</3/0/1>,</3/0/2>",
    }
    fields.update(changes)
    return Registration(**fields)  # type: ignore[arg-type]


def point(path: str, value: object, type_name: str, at: datetime = T0, endpoint: str = "charger-1") -> TelemetryPoint:
    return TelemetryPoint(endpoint, path, at, value, type_name)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ contract


def test_registrations(make_store: StoreFactory) -> None:
    async def body() -> None:
        async with make_store() as store:
            first = registration()
            await store.save_registration(first)
            assert await store.get_registration("charger-1") == first
            assert await store.get_registration_by_id("r1") == first
            assert await store.get_registration("nobody") is None
            assert await store.get_registration_by_id("nope") is None

            # an update keeps the id and moves last_update
            updated = registration(last_update=T0 + timedelta(seconds=100), discovered=None)
            await store.save_registration(updated)
            assert await store.get_registration("charger-1") == updated
            assert updated.expires_at == T0 + timedelta(seconds=400)

            # registering again under a new id replaces the old registration and its observations
            await store.save_observation(Observation("charger-1", "r1", b"\x01", ("/3/0",)))
            again = registration(reg_id="r2")
            await store.save_registration(again)
            assert await store.get_registration_by_id("r1") is None
            assert await store.get_registration("charger-1") == again
            assert await store.list_observations("charger-1") == []

            with pytest.raises(Conflict, match="r2"):
                await store.save_registration(registration(endpoint="charger-2", reg_id="r2"))

            for n in range(5):
                await store.save_registration(registration(endpoint=f"site-{n}", reg_id=f"s{n}"))
            page = await store.list_registrations(offset=1, limit=3)
            assert [r.endpoint for r in page] == ["site-0", "site-1", "site-2"]
            assert len(await store.list_registrations()) == 6
            with pytest.raises(ValueError, match="negative"):
                await store.list_registrations(offset=-1)

            await store.save_observation(Observation("site-0", "s0", b"\x02", ("/3/0",)))
            await store.delete_registration("site-0")
            assert await store.get_registration("site-0") is None
            assert await store.list_observations("site-0") == []
            with pytest.raises(NotFound, match="site-0"):
                await store.delete_registration("site-0")

    run(body)


def test_expired_registrations(make_store: StoreFactory) -> None:
    async def body() -> None:
        async with make_store() as store:
            await store.save_registration(registration("a", "1", lifetime=60))
            await store.save_registration(registration("b", "2", lifetime=30))
            await store.save_registration(registration("c", "3", lifetime=3600))
            assert await store.expired_registrations(T0 + timedelta(seconds=29)) == []
            expired = await store.expired_registrations(T0 + timedelta(seconds=60))
            assert [r.endpoint for r in expired] == ["b", "a"]  # soonest expired first; expiry instant counts
            await store.save_registration(registration("a", "1", lifetime=60, last_update=T0 + timedelta(seconds=50)))
            assert [r.endpoint for r in await store.expired_registrations(T0 + timedelta(seconds=60))] == ["b"]

    run(body)


def test_observations(make_store: StoreFactory) -> None:
    async def body() -> None:
        async with make_store() as store:
            single = Observation("charger-1", "r1", b"\xaa\xbb", ("/3316/0/5700",), 112, T0)
            composite = Observation("charger-1", "r1", b"\xcc", ("/3316/0/5700", "/3317/0/5700"), 112, T0, True)
            other = Observation("charger-2", "r9", b"\xaa\xbb", ("/3/0",), None, T0 + timedelta(seconds=1))
            for o in (single, composite, other):
                await store.save_observation(o)
            assert await store.get_observation("charger-1", b"\xaa\xbb") == single
            assert await store.get_observation("charger-1", b"\xcc") == composite
            assert await store.get_observation("charger-1", b"\x00") is None
            assert await store.list_observations() == [single, composite, other]
            assert await store.list_observations("charger-2") == [other]

            await store.delete_observation("charger-1", b"\xcc")
            with pytest.raises(NotFound):
                await store.delete_observation("charger-1", b"\xcc")
            assert await store.delete_observations("charger-1") == 1
            assert await store.delete_observations("charger-1") == 0
            assert await store.list_observations() == [other]

    run(body)


def test_telemetry_values_round_trip(make_store: StoreFactory) -> None:
    values = [
        ("/3316/0/5700", 48.25, "Float"),
        ("/3316/0/5701", "V", "String"),
        ("/3/0/13", 1_740_830_400, "Time"),
        ("/3/0/9", -5, "Integer"),
        ("/3/0/21", 2**64 - 1, "Unsigned Integer"),  # beyond SQLite's int64
        ("/3201/0/5550", True, "Boolean"),
        ("/3201/1/5550", False, "Boolean"),
        ("/5/0/0", b"\x00\xff", "Opaque"),
        ("/3/0/22/0", "3:1", "Objlnk"),
        ("/3317/0/5700", float("inf"), "Float"),
    ]

    async def body() -> None:
        async with make_store() as store:
            await store.append_telemetry([point(p, v, t) for p, v, t in values])
            await store.append_telemetry([point("/3317/0/5701", math.nan, "Float")])
            latest = await store.latest_values("charger-1")
            for path, value, type_name in values:
                assert latest[path].value == value
                assert type(latest[path].value) is type(value)
                assert latest[path].type_name == type_name
                assert latest[path].timestamp == T0
            assert math.isnan(latest["/3317/0/5701"].value)  # type: ignore[arg-type]

    run(body)


def test_telemetry_queries(make_store: StoreFactory) -> None:
    async def body() -> None:
        async with make_store() as store:
            points = [point("/3316/0/5700", 48.0 + n, "Float", T0 + timedelta(seconds=n)) for n in range(10)]
            points += [point("/3316/01/5700", 1.0, "Float"), point("/3316/1/5700", 2.0, "Float")]
            points += [point("/3316/0/5700", 99.0, "Float", endpoint="charger-2")]
            await store.append_telemetry(points)

            series = await store.query_telemetry("charger-1", "/3316/0")
            assert [p.value for p in series] == [48.0 + n for n in range(10)]  # not /3316/01 nor charger-2
            assert len(await store.query_telemetry("charger-1", "/3316/0/5700/")) == 10
            assert len(await store.query_telemetry("charger-1")) == 12
            assert len(await store.query_telemetry("charger-1", "/3316")) == 12
            assert await store.query_telemetry("charger-1", "/3317") == []

            window = await store.query_telemetry(
                "charger-1", "/3316/0", since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=5)
            )
            assert [p.value for p in window] == [50.0, 51.0, 52.0]  # since inclusive, until exclusive
            assert [p.value for p in await store.query_telemetry("charger-1", "/3316/0", limit=2)] == [48.0, 49.0]
            newest = await store.query_telemetry("charger-1", "/3316/0", limit=2, descending=True)
            assert [p.value for p in newest] == [57.0, 56.0]
            # ordered by time, then path
            at_t0 = await store.query_telemetry("charger-1", until=T0 + timedelta(milliseconds=1))
            assert [p.path for p in at_t0] == ["/3316/0/5700", "/3316/01/5700", "/3316/1/5700"]

            # a second value in the same millisecond replaces the first
            await store.append_telemetry([point("/3316/0/5700", 7.5, "Float", T0 + timedelta(microseconds=400))])
            assert (await store.query_telemetry("charger-1", "/3316/0", limit=1))[0].value == 7.5

            latest = await store.latest_values("charger-1")
            assert sorted(latest) == ["/3316/0/5700", "/3316/01/5700", "/3316/1/5700"]
            assert latest["/3316/0/5700"].value == 57.0
            assert latest["/3316/0/5700"].timestamp == T0 + timedelta(seconds=9)
            assert await store.latest_values("nobody") == {}

    run(body)


def test_security(make_store: StoreFactory) -> None:
    async def body() -> None:
        async with make_store() as store:
            info = SecurityInfo("charger-1", "charger-1-id", b"\x01" * 16)
            await store.put_security(info)
            await store.put_security(SecurityInfo("charger-1", "bs-id", b"\x02" * 16), SecurityScope.BOOTSTRAP)
            assert await store.get_security("charger-1") == info
            assert await store.get_security_by_identity("charger-1-id") == info
            assert await store.get_security_by_identity("bs-id") is None  # scopes are apart
            bs = await store.get_security_by_identity("bs-id", SecurityScope.BOOTSTRAP)
            assert bs is not None and bs.psk_key == b"\x02" * 16

            with pytest.raises(Conflict, match="charger-1-id"):
                await store.put_security(SecurityInfo("charger-2", "charger-1-id", b"\x03" * 16))
            # re-keying an endpoint, identity included, is fine
            rekeyed = SecurityInfo("charger-1", "charger-1-v2", b"\x04" * 16)
            await store.put_security(rekeyed)
            assert await store.get_security_by_identity("charger-1-id") is None
            assert await store.get_security_by_identity("charger-1-v2") == rekeyed
            await store.put_security(SecurityInfo("charger-0", "zero", b"\x05"))
            assert [i.endpoint for i in await store.list_security()] == ["charger-0", "charger-1"]

            await store.delete_security("charger-1")
            assert await store.get_security("charger-1") is None
            with pytest.raises(NotFound):
                await store.delete_security("charger-1")
            assert len(await store.list_security(SecurityScope.BOOTSTRAP)) == 1

    run(body)
    text = repr(SecurityInfo("e", "id", b"supersecretkey!!"))
    assert "supersecret" not in text and "16 bytes hidden" in text


def bootstrap_config(endpoint: str, uri: str = "coaps://ms.example:5684") -> BootstrapConfig:
    servers = (
        ServerAccount(101, uri, SecurityMode.PSK, "ep-id", b"\x10" * 16, 600, 10, 300, "UQ", False),
        ServerAccount(102, "coap://backup.example:5683"),
    )
    writes = (BootstrapWrite("/3/0/14", "+02:00", "String"), BootstrapWrite("/5/0/0", b"\x01\x02", "Opaque"))
    return BootstrapConfig(endpoint, servers, delete_existing=False, writes=writes)


def test_bootstrap_configs(make_store: StoreFactory) -> None:
    async def body() -> None:
        async with make_store() as store:
            assert await store.get_bootstrap_config("charger-1") is None
            default = bootstrap_config("*", "coaps://default.example:5684")
            own = bootstrap_config("charger-1")
            await store.put_bootstrap_config(default)
            assert await store.get_bootstrap_config("charger-1") == default
            await store.put_bootstrap_config(own)
            assert await store.get_bootstrap_config("charger-1") == own
            assert await store.get_bootstrap_config("charger-9") == default
            assert [c.endpoint for c in await store.list_bootstrap_configs()] == ["*", "charger-1"]
            await store.delete_bootstrap_config("charger-1")
            assert await store.get_bootstrap_config("charger-1") == default
            with pytest.raises(NotFound):
                await store.delete_bootstrap_config("charger-1")

    run(body)
    assert "\\x10" not in repr(bootstrap_config("x")) and "16 bytes hidden" in repr(bootstrap_config("x"))
    with pytest.raises(ValueError, match="PSK"):
        ServerAccount(1, "coaps://x", SecurityMode.PSK, "identity-without-key")
    assert ServerAccount(1, "coaps://x", SecurityMode.PSK).psk_key is None  # the bootstrap server generates it
    with pytest.raises(ValueError, match="repeats"):
        BootstrapConfig("x", (ServerAccount(1, "coap://a"), ServerAccount(1, "coap://b")))


def test_api_tokens(make_store: StoreFactory) -> None:
    async def body() -> None:
        async with make_store() as store:
            await store.put_api_token("ops", "tok-ops-123")
            await store.put_api_token("ci", "tok-ci-456")
            assert await store.verify_api_token("tok-ops-123") == "ops"
            assert await store.verify_api_token("tok-ops-12") is None
            await store.put_api_token("ops", "tok-ops-789")  # rotation
            assert await store.verify_api_token("tok-ops-123") is None
            assert await store.verify_api_token("tok-ops-789") == "ops"
            with pytest.raises(Conflict):
                await store.put_api_token("other", "tok-ci-456")
            assert await store.list_api_tokens() == ["ci", "ops"]
            await store.delete_api_token("ci")
            assert await store.verify_api_token("tok-ci-456") is None
            with pytest.raises(NotFound):
                await store.delete_api_token("ci")

    run(body)


def test_calibration_backups(make_store: StoreFactory) -> None:
    async def body() -> None:
        async with make_store() as store:
            await store.put_calibration_backup(CalibrationBackup("charger-1", "/3316/0/5821", 1.02, T0))
            await store.put_calibration_backup(CalibrationBackup("charger-1", "/3317/0/5821", 0.5, T0))
            await store.put_calibration_backup(CalibrationBackup("charger-2", "/3316/0/5821", 9.0, T0))
            newer = CalibrationBackup("charger-1", "/3316/0/5821", 1.05, T0 + timedelta(hours=1))
            await store.put_calibration_backup(newer)
            backups = await store.list_calibration_backups("charger-1")
            assert backups == [newer, CalibrationBackup("charger-1", "/3317/0/5821", 0.5, T0)]
            assert await store.list_calibration_backups("nobody") == []

    run(body)


def test_closed_store_refuses_work(make_store: StoreFactory) -> None:
    async def body() -> None:
        store = make_store()
        with pytest.raises(StoreError, match="open"):
            await store.get_registration("x")
        async with store:
            pass
        await store.close()  # twice is harmless
        with pytest.raises(StoreError, match="open"):
            await store.append_telemetry([point("/1/0/1", 1, "Integer")])

    run(body)


def test_records_normalise_time() -> None:
    with pytest.raises(ValueError, match="timezone"):
        point("/1/0/1", 1, "Integer", at=datetime(2025, 1, 1))  # naive on purpose
    local = datetime(2025, 1, 1, 14, 0, 0, 999999, tzinfo=UTC).astimezone()
    assert point("/1/0/1", 1, "Integer", at=local).timestamp == datetime(2025, 1, 1, 14, 0, 0, 999000, tzinfo=UTC)


# ------------------------------------------------------------------------------------- sqlite only


def test_sqlite_persists_across_reopen(tmp_path: Path) -> None:
    db = tmp_path / "spmp.db"

    async def body() -> None:
        async with SqliteStore(db, threaded=False) as store:
            await store.save_registration(registration())
            await store.save_observation(Observation("charger-1", "r1", b"\x01", ("/3/0", "/4/0"), 112, T0, True))
            await store.append_telemetry([point("/3316/0/5700", 48.5, "Float")])
            await store.put_security(SecurityInfo("charger-1", "id", b"k" * 16))
            await store.put_bootstrap_config(bootstrap_config("*"))
            await store.put_api_token("ops", "secret-token")
            await store.put_calibration_backup(CalibrationBackup("charger-1", "/3316/0/5821", 1.0, T0))
        async with SqliteStore(db, threaded=True) as store:
            assert await store.get_registration("charger-1") == registration()
            assert (await store.list_observations())[0].composite
            assert (await store.latest_values("charger-1"))["/3316/0/5700"].value == 48.5
            assert await store.get_security_by_identity("id") == SecurityInfo("charger-1", "id", b"k" * 16)
            assert await store.get_bootstrap_config("x") == bootstrap_config("*")
            assert await store.verify_api_token("secret-token") == "ops"
            assert len(await store.list_calibration_backups("charger-1")) == 1

    run(body)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (1,)
    conn.close()


def test_sqlite_stores_only_the_token_hash(tmp_path: Path) -> None:
    db = tmp_path / "spmp.db"
    token = "raw-token-4a7f1c9e2b"

    async def body() -> None:
        async with SqliteStore(db) as store:
            await store.put_api_token("ops", token)

    run(body)
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())  # the db and any -wal left behind
    assert token.encode() not in data
    assert b"ops" in data


def count_rows(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM telemetry").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("threaded", [False, True])
def test_sqlite_telemetry_batching(tmp_path: Path, threaded: bool) -> None:
    db = tmp_path / "spmp.db"
    points = [point("/3316/0/5700", float(n), "Float", T0 + timedelta(milliseconds=n)) for n in range(10_000)]

    async def body() -> None:
        store = SqliteStore(db, threaded=threaded, flush_interval=3600, flush_points=4000)
        await store.open()
        await store.append_telemetry(points[:100])
        assert count_rows(db) == 0  # queued, not written
        await store.flush()
        assert count_rows(db) == 100
        await store.append_telemetry(points[100:4500])  # crosses flush_points: written at once
        assert count_rows(db) == 4500
        await store.append_telemetry(points[4500:7000])
        assert count_rows(db) == 4500
        await store.append_telemetry(points[7000:])  # 5500 waiting: written
        assert count_rows(db) == 10_000
        await store.append_telemetry([point("/3316/0/5701", 1.0, "Float")])
        await store.close()  # writes the rest
        assert count_rows(db) == 10_001

        # the background task writes without being asked
        async with SqliteStore(db, threaded=threaded, flush_interval=0.01) as store:
            await store.append_telemetry([point("/3316/0/5700", 1.0, "Float", T0 - timedelta(days=1))])
            for _ in range(200):
                if count_rows(db) == 10_002:
                    break
                await asyncio.sleep(0.01)
            assert count_rows(db) == 10_002

    run(body)


def test_sqlite_full_disk_keeps_points(tmp_path: Path) -> None:
    db = tmp_path / "spmp.db"

    async def body() -> None:
        async with SqliteStore(db, threaded=False, flush_interval=3600) as store:
            assert store._conn is not None
            # Simulate a full disk: cap the file at its current size.
            pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
            store._conn.execute(f"PRAGMA max_page_count={pages}")
            points = [point(f"/3316/0/{n}", float(n), "Float") for n in range(5000)]
            await store.append_telemetry(points[:100])
            with pytest.raises(StoreError) as caught:
                await store.flush()
            message = str(caught.value)
            assert str(db) in message and "full" in message and "free space" in message
            assert not isinstance(caught.value.__cause__, StoreError)
            await store.append_telemetry(points[100:])  # still accepted, queued
            store._conn.execute("PRAGMA max_page_count=1073741823")
        assert count_rows(db) == 5000  # close wrote every one of them

    run(body)


def test_sqlite_unwritable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")

    async def body() -> None:
        store = SqliteStore(blocker / "spmp.db")
        with pytest.raises(StoreError) as caught:
            await store.open()
        assert "not-a-dir" in str(caught.value) and "directory" in str(caught.value)
        await store.close()

    run(body)


def test_sqlite_locked_database(tmp_path: Path) -> None:
    db = tmp_path / "spmp.db"

    async def body() -> None:
        async with SqliteStore(db, busy_timeout=0.05) as store:
            other = sqlite3.connect(db, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                with pytest.raises(StoreError, match="lock"):
                    await store.put_api_token("ops", "t")
                other.execute("ROLLBACK")
            finally:
                other.close()
            await store.put_api_token("ops", "t")

    run(body)


def test_sqlite_newer_schema_refused(tmp_path: Path) -> None:
    db = tmp_path / "spmp.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (99)")
    conn.commit()
    conn.close()

    async def body() -> None:
        with pytest.raises(StoreError, match="upgrade SPMP"):
            await SqliteStore(db).open()

    run(body)


# ----------------------------------------------------------------------------------------- open_store


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert isinstance(open_store("memory://"), MemoryStore)
    relative = open_store("sqlite:///rel.db")
    assert isinstance(relative, SqliteStore) and relative.path == "rel.db"
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db")
    assert isinstance(absolute, SqliteStore) and absolute.path == f"{tmp_path}/abs.db"
    in_memory = open_store("sqlite://:memory:")
    assert isinstance(in_memory, SqliteStore) and in_memory.path == ":memory:"

    async def body() -> None:
        async with in_memory as store:
            await store.append_telemetry([point("/1/0/1", 1, "Integer")])
            assert len(await store.query_telemetry("charger-1")) == 1

    run(body)
    pg = open_store("postgresql://spmp:s3cret@db.example:5433/fleet")
    assert isinstance(pg, PostgresStore) and pg.where == "spmp@db.example:5433/fleet"
    assert "s3cret" not in repr(pg)
    assert isinstance(open_store("postgres://db.example/fleet"), PostgresStore)
    with pytest.raises(StoreError, match=r"memory://"):
        open_store("redis://x")
    with pytest.raises(StoreError, match="names no file"):
        open_store("sqlite://")
