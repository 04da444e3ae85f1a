"""Keys out of ``ps`` and shell history: ``--key-file`` (``spmp psk add``, ``spmp bootstrap psk add``)
and ``--psk-key-file`` (``spmp client``, ``spmp charger``), from a file or from stdin (``-``)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spmp.cli import app
from spmp.lwm2m.objects import default_registry
from spmp.server import ManagementServer
from spmp.store import MemoryStore, SecurityInfo, SecurityScope, SqliteStore
from test_cli_errors import assert_clean_error

KEY = bytes.fromhex("0123456789abcdef0011223344556677")


async def stored_key(data: Path, endpoint: str, scope: SecurityScope = SecurityScope.SERVER) -> bytes | None:
    async with SqliteStore(data / "spmp.db") as store:
        info = await store.get_security(endpoint, scope)
    return None if info is None else info.psk_key


@pytest.mark.parametrize("command", [["psk", "add"], ["bootstrap", "psk", "add"]])
def test_psk_add_reads_the_key_from_a_file_or_stdin(cli_runner: CliRunner, tmp_path: Path, command: list[str]) -> None:
    scope = SecurityScope.BOOTSTRAP if command[0] == "bootstrap" else SecurityScope.SERVER
    data = tmp_path / "data"
    key_file = tmp_path / "dev1.hex"
    key_file.write_text(KEY.hex(" ") + "\n")  # spaces and the newline are ignored
    base = [*command, "--data", str(data)]
    result = cli_runner.invoke(app, [*base, "--endpoint", "dev1", "--identity", "id1", "--key-file", str(key_file)])
    assert result.exit_code == 0, result.output
    assert KEY.hex() not in result.output and "16-byte key" in result.output
    result = cli_runner.invoke(
        app, [*base, "--endpoint", "dev2", "--identity", "id2", "--key-file", "-"], input=KEY.hex() + "\n"
    )
    assert result.exit_code == 0, result.output
    assert asyncio.run(stored_key(data, "dev1", scope)) == KEY
    assert asyncio.run(stored_key(data, "dev2", scope)) == KEY


@pytest.mark.parametrize("command", [["psk", "add"], ["bootstrap", "psk", "add"]])
def test_psk_add_key_mistakes_are_clean_errors(cli_runner: CliRunner, tmp_path: Path, command: list[str]) -> None:
    base = [*command, "--endpoint", "e", "--identity", "i", "--data", str(tmp_path)]
    assert_clean_error(cli_runner.invoke(app, base), "--key-file")
    assert_clean_error(cli_runner.invoke(app, [*base, "--key-file", str(tmp_path / "absent")]), "absent")
    assert_clean_error(cli_runner.invoke(app, [*base, "--key", "00", "--key-file", "-"]), "not both")
    assert_clean_error(cli_runner.invoke(app, [*base, "--key-file", "-"], input="not hex\n"), "hexadecimal")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    assert_clean_error(cli_runner.invoke(app, [*base, "--key-file", str(tmp_path / "binary")]), "not text")
    help_text = cli_runner.invoke(app, [*command, "--help"]).stdout
    assert "--key-file" in help_text and "stdin" in help_text


@pytest.mark.parametrize("command", ["client", "charger"])
def test_client_and_charger_psk_key_file_mistakes(cli_runner: CliRunner, tmp_path: Path, command: str) -> None:
    base = [command, "--endpoint", "e", "--server", "coaps://127.0.0.1:9", "--psk-identity", "i"]
    assert_clean_error(cli_runner.invoke(app, [*base, "--psk-key-file", str(tmp_path / "absent")]), "--psk-key-file")
    assert_clean_error(cli_runner.invoke(app, [*base, "--psk-key", "00", "--psk-key-file", "-"]), "not both")
    assert_clean_error(cli_runner.invoke(app, [*base, "--psk-key-file", "-"], input="xyz"), "hexadecimal")
    assert "--psk-key-file" in cli_runner.invoke(app, [command, "--help"]).stdout


def test_client_registers_over_dtls_with_the_key_from_stdin() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            await store.put_security(SecurityInfo("keyfile-dev", "keyfile-id", KEY))
            server = ManagementServer(store, default_registry(), coap_port=0, coaps_port=0)
            await server.start()
            assert server.coaps_address is not None
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "spmp.cli", "client", "--endpoint", "keyfile-dev",
                "--server", f"coaps://127.0.0.1:{server.coaps_address[1]}",
                "--psk-identity", "keyfile-id", "--psk-key-file", "-",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                assert process.stdin is not None
                process.stdin.write(KEY.hex().encode() + b"\n")
                process.stdin.close()
                deadline = asyncio.get_running_loop().time() + 30
                while server.registration("keyfile-dev") is None:
                    assert asyncio.get_running_loop().time() < deadline, "the client did not register"
                    assert process.returncode is None, await process.communicate()
                    await asyncio.sleep(0.1)
                process.send_signal(signal.SIGINT)
                _, err = await asyncio.wait_for(process.communicate(), 20)
                assert process.returncode == 0, err.decode()
                assert KEY.hex() not in err.decode()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
