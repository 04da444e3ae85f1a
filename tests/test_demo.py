"""`spmp demo` as a user runs it: a real process, on loopback, with a fresh data directory."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rich.console import Console

from spmp.cli.demo import _demo_table

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
        row = next(line for line in done.stdout.splitlines() if line.startswith(f"{site} "))
        assert "…" not in row.split()[3], row  # the server received its battery state (SOC %)
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


def _fake_runner(endpoint: str, serial: str) -> Any:
    ports = [
        SimpleNamespace(name="pv", kind=SimpleNamespace(value="pv")),
        SimpleNamespace(name="battery", kind=SimpleNamespace(value="battery")),
        SimpleNamespace(name="load-1", kind=SimpleNamespace(value="load")),
    ]
    return SimpleNamespace(endpoint=endpoint, device=SimpleNamespace(serial=serial, ports=ports), bridge=None)


def test_demo_table_fits_80_columns_and_cuts_only_the_site_name() -> None:
    runners = [_fake_runner("demo-site-4", "Kathmandu"), _fake_runner("demo-site-with-a-long-name", "Somewhere")]
    site = {
        "/26242/0/1": 60.5,  # PV port: voltage, current (negative: into the charger)
        "/26242/0/2": -20.25,
        "/26242/2/1": 52.0,  # load port
        "/26242/2/2": 19.5,
        "/26242/0/5518": 1718000000,
        "/26246/0/26": 100,
        "/26246/0/16": 53.61,
        "/26246/0/13": 5,
        "/26243/2/3": True,  # load-1 LVD
        "/26243/2/2": True,  # load-1 over-current
    }
    latest = {"demo-site-4": site, "demo-site-with-a-long-name": site}
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(_demo_table(runners, latest, 60.0))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80, lines
    start = next(line for line in lines if line.startswith("site ")).index("time")  # where the site column ends
    rows = [(line[:start], line[start:]) for line in lines if line.startswith("demo-")]
    assert [name for name, _ in rows] == [
        "demo-site-4 (Kathm… ",  # only the site name is cut, and only when the terminal is narrow
        "demo-site-with-a-l… ",
    ]
    for _, cells in rows:  # every other cell whole: time, SOC, volts, PV W, load W, stage, BTS, rules
        assert cells.split()[:8] == ["06:13", "100", "53.6", "1225", "1014", "dischg", "-", "-"], cells
    assert "LVD" in out.getvalue() and "over-current" in out.getvalue()  # alerts wrap in their column, never cut
