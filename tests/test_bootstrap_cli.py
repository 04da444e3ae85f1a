"""`spmp bootstrap config|psk` against a real SQLite data directory (the server itself: test_bootstrap_server)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from spmp.cli import app
from spmp.store import SecurityMode, SecurityScope, SqliteStore


def test_config_set_list_show_export_delete(cli_runner: CliRunner, tmp_path: Path) -> None:
    data = ["--data", str(tmp_path)]
    result = cli_runner.invoke(
        app,
        [
            "bootstrap",
            "config",
            "set",
            "--endpoint",
            "*",
            "--server",
            "coaps://telco:5684",
            "--server",
            "coap://cloud",
            *data,
        ],
    )
    assert result.exit_code == 0, result.output
    result = cli_runner.invoke(
        app, ["bootstrap", "config", "set", "--endpoint", "ch-1", "--server", "coaps://t", "--ssid", "7", *data]
    )
    assert result.exit_code == 0 and "generated" in result.output
    listing = cli_runner.invoke(app, ["bootstrap", "config", "list", *data]).output
    assert "101 coaps://telco:5684 (PSK)" in listing and "102 coap://cloud (NO_SEC)" in listing
    shown = json.loads(cli_runner.invoke(app, ["bootstrap", "config", "show", "--endpoint", "other", *data]).output)
    assert shown["endpoint"] == "*" and shown["servers"][0]["psk"] == "per endpoint"

    async def stored() -> bytes:
        async with SqliteStore(tmp_path / "spmp.db") as store:
            config = await store.get_bootstrap_config("ch-1")
            assert config is not None and config.servers[0].security_mode is SecurityMode.PSK
            info = await store.get_security("ch-1", SecurityScope.SERVER)
            assert info is not None and info.psk_identity == "ch-1"
            return info.psk_key

    key = asyncio.run(stored())
    assert key.hex() not in listing
    exported = json.loads(cli_runner.invoke(app, ["bootstrap", "config", "export", "--endpoint", "ch-1", *data]).stdout)
    assert exported["server_psks"] == [{"endpoint": "ch-1", "identity": "ch-1", "key": key.hex()}]

    assert cli_runner.invoke(app, ["bootstrap", "config", "delete", "--endpoint", "ch-1", *data]).exit_code == 0
    missing = cli_runner.invoke(app, ["bootstrap", "config", "delete", "--endpoint", "ch-1", *data])
    assert missing.exit_code == 2


def test_psk_add_list_never_prints_keys(cli_runner: CliRunner, tmp_path: Path) -> None:
    data = ["--data", str(tmp_path)]
    added = cli_runner.invoke(
        app, ["bootstrap", "psk", "add", "--endpoint", "e", "--identity", "f", "--key", "c0ffee00", *data]
    )
    assert added.exit_code == 0 and "c0ffee00" not in added.output
    listing = cli_runner.invoke(app, ["bootstrap", "psk", "list", *data]).output
    assert "4 bytes" in listing and "c0ffee00" not in listing
    bad = cli_runner.invoke(
        app, ["bootstrap", "psk", "add", "--endpoint", "e", "--identity", "f", "--key", "zz", *data]
    )
    assert bad.exit_code == 2
