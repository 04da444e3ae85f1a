"""`spmp demo` as a user runs it: a real process, on loopback, with a fresh data directory."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

SPMP = str(Path(sys.executable).with_name("spmp"))
ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_runs_for_a_duration_and_registers_every_site(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = subprocess.run(
        [SPMP, "demo", "--sites", "2", "--duration", "5", "--data", str(data), "--api-port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr
    for site in ("demo-site-1", "demo-site-2"):
        assert f"site {site} registered" in done.stdout, done.stdout
        row = next(line for line in done.stdout.splitlines() if line.startswith(f"│ {site}"))
        assert "…" not in row.split("│")[3], row  # the server received its battery state (SOC %)
    assert "2 site(s) de-registered" in done.stdout
    assert "Traceback" not in done.stderr
    assert (data / "api-token").exists()
    with sqlite3.connect(data / "spmp.db") as db:
        identities = {row[0] for row in db.execute("SELECT endpoint FROM security")}
    assert {"demo-site-1", "demo-site-2"} <= identities


def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    async def main() -> None:
        process = await asyncio.create_subprocess_exec(
            SPMP,
            "demo",
            "--sites",
            "1",
            "--data",
            str(tmp_path / "data"),
            "--api-port",
            str(free_port()),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=ENV,
        )
        assert process.stdout is not None
        try:
            deadline = time.monotonic() + 60
            seen = ""
            while "site demo-site-1 registered" not in seen:
                assert time.monotonic() < deadline, seen
                seen += (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            process.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == 0, err.decode()
            assert "1 site(s) de-registered" in out.decode()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    asyncio.run(main())
