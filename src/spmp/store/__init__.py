"""Persistence for the bootstrap and management servers: one `Store` interface, several engines.

``open_store(url)`` picks the engine from a URL and returns it unopened; use it as
``async with open_store("sqlite:///spmp.db") as store: ...`` or call ``await store.open()``.
"""

from __future__ import annotations

from spmp.store.interface import (
    DEFAULT_ENDPOINT,
    BootstrapConfig,
    BootstrapWrite,
    CalibrationBackup,
    Conflict,
    Listener,
    NotFound,
    Notifier,
    Observation,
    Registration,
    SecurityInfo,
    SecurityMode,
    SecurityScope,
    ServerAccount,
    Store,
    StoreError,
    TelemetryPoint,
    TelemetryValue,
    hash_token,
)
from spmp.store.memory import MemoryStore
from spmp.store.postgres import PostgresStore
from spmp.store.sqlite import SqliteStore

SUPPORTED_URLS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite://:memory:, memory://, "
    "postgresql://user:password@host:port/database"
)


def open_store(url: str) -> Store:
    """The store a URL names, not yet opened.

    ``sqlite:///spmp.db`` is relative to the working directory and ``sqlite:////var/lib/spmp/spmp.db``
    absolute (the SQLAlchemy convention: three slashes, then the path); ``sqlite://:memory:`` is a
    private in-memory SQLite database; ``memory://`` is :class:`MemoryStore`;
    ``postgresql://user:password@host:port/database`` (or ``postgres://``, any libpq URL asyncpg takes)
    is :class:`PostgresStore` with its default pool and flush settings.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "memory" and rest == "":
        return MemoryStore()
    if sep and scheme == "sqlite":
        if rest == ":memory:":
            return SqliteStore(":memory:")
        if rest.startswith("/") and len(rest) > 1:
            return SqliteStore(rest[1:])
        raise StoreError(f"store URL {url!r} names no file: write sqlite:///relative.db or sqlite:////absolute.db")
    if sep and scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    raise StoreError(f"store URL {url!r} is not supported; use one of: {SUPPORTED_URLS}")


__all__ = [
    "DEFAULT_ENDPOINT",
    "SUPPORTED_URLS",
    "BootstrapConfig",
    "BootstrapWrite",
    "CalibrationBackup",
    "Conflict",
    "Listener",
    "MemoryStore",
    "NotFound",
    "Notifier",
    "Observation",
    "PostgresStore",
    "Registration",
    "SecurityInfo",
    "SecurityMode",
    "SecurityScope",
    "ServerAccount",
    "SqliteStore",
    "Store",
    "StoreError",
    "TelemetryPoint",
    "TelemetryValue",
    "hash_token",
    "open_store",
]
