"""``spmp client`` as a process: option checks, and register → Ctrl-C → de-register against the test peer."""

from __future__ import annotations

import asyncio
import signal
import sys

from typer.testing import CliRunner

from _client_peer import TestServer
from spmp.cli import app
from test_client_engine import run


def test_nosec_needs_insecure_and_coaps_needs_psk(cli_runner: CliRunner) -> None:
    result = cli_runner.invoke(app, ["client", "--endpoint", "x", "--server", "coap://127.0.0.1:5999"])
    assert result.exit_code == 2 and "--insecure" in result.output
    result = cli_runner.invoke(app, ["client", "--endpoint", "x", "--server", "coaps://127.0.0.1:5999"])
    assert result.exit_code == 2 and "--psk-identity" in result.output
    result = cli_runner.invoke(app, ["client", "--endpoint", "x"])
    assert result.exit_code == 2


def test_client_process_registers_and_deregisters_on_ctrl_c() -> None:
    async def main() -> None:
        server = await TestServer.start()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "spmp.cli",
            "client",
            "--endpoint",
            "cli-dev",
            "--server",
            server.uri,
            "--insecure",
            "--lifetime",
            "60",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await server.wait_for(lambda: len(server.seen.registers) == 1, timeout=15)
            assert "ep=cli-dev" in server.seen.registers[0].query
            assert "</3/0>" in server.seen.registers[0].payload
            process.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(process.communicate(), 15)
            assert b"NoSec" in stderr
            assert server.seen.deregisters == ["rd/1"]
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await server.close()

    run(main())
