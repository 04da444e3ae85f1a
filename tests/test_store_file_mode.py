"""The SQLite database file holds PSKs and token hashes: it is created private to its owner."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from spmp.store import SqliteStore, StoreError


def test_sqlite_database_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "private.db"

    async def run() -> None:
        async with SqliteStore(str(path)) as store:
            await store.put_api_token("ops", "secret-token")

    asyncio.run(run())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_directory_is_a_clear_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")

    async def run() -> None:
        async with SqliteStore(str(tmp_path / "file" / "spmp.db")):
            pass

    with pytest.raises(StoreError, match="cannot create the database"):
        asyncio.run(run())
