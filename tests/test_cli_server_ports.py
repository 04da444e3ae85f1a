"""``spmp server`` and ``spmp bootstrap`` ports: an API port in use is one red line (exit 2) before
any banner; with port 0 the banner shows the ports actually bound, and the API answers there."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

TOKEN = "ports-test-token-0123456789abcdef"


def spmp_process(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPMP_")}
    return subprocess.Popen(
        [sys.executable, "-m", "spmp.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def banner(process: subprocess.Popen[str], prefix: str, timeout: float = 30) -> str:
    """The first stderr line starting with ``prefix`` (the process keeps running)."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if line.startswith(prefix):
            return line
        assert line or process.poll() is None, f"exited {process.returncode} without a banner"
    raise AssertionError(f"no {prefix!r} line within {timeout} s")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    return err


def test_an_api_port_in_use_is_one_line_before_any_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = spmp_process("server", "--coaps-port", "0", "--api-port", str(port), "--data", str(tmp_path))
        out, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert err.strip().splitlines() == [
        f"error: cannot listen on the API port 127.0.0.1:{port} (--api-port): Address already in use"
    ]
    assert out == "" and "spmp server:" not in err and "Traceback" not in err


def test_server_banner_shows_the_ports_bound_for_port_0_and_the_api_answers_there(tmp_path: Path) -> None:
    process = spmp_process(
        "server", "--coaps-port", "0", "--coap-port", "0", "--insecure", "--api-port", "0",
        "--api-token", TOKEN, "--data", str(tmp_path),
    )  # fmt: skip
    try:
        line = banner(process, "spmp server:")
        found = re.search(r"coaps://127\.0\.0\.1:(\d+), coap://127\.0\.0\.1:(\d+), API http://127\.0\.0\.1:(\d+)", line)
        assert found is not None, line
        coaps, coap, api = (int(p) for p in found.groups())
        assert 0 not in (coaps, coap, api)
        answer = httpx.get(f"http://127.0.0.1:{api}/api/clients", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, answer.text
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", coaps))
            except OSError:
                pass  # taken: the server is listening there
            else:
                raise AssertionError(f"nothing listens on the CoAPS port {coaps} the banner shows")
    finally:
        if process.poll() is None:
            stop(process)


def test_bootstrap_banner_shows_the_ports_bound_for_port_0(tmp_path: Path) -> None:
    process = spmp_process("bootstrap", "--coaps-port", "0", "--coap-port", "0", "--insecure", "--data", str(tmp_path))
    try:
        line = banner(process, "spmp bootstrap:")
        found = re.search(r"coaps://127\.0\.0\.1:(\d+), coap://127\.0\.0\.1:(\d+)", line)
        assert found is not None and "0" not in found.groups(), line
    finally:
        if process.poll() is None:
            stop(process)
