"""The `spmp server` and `spmp psk` commands: PSKs in the data directory's store (keys never printed),
and a real server process that libcoap registers with over DTLS, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path as FilePath

from typer.testing import CliRunner

from _server_helpers import needs_libcoap
from spmp.cli import app


def test_psk_add_and_list(cli_runner: CliRunner, tmp_path: FilePath) -> None:
    data = tmp_path / "data"
    result = cli_runner.invoke(
        app, ["psk", "add", "--endpoint", "dev1", "--identity", "id1", "--key", "73656372657431", "--data", str(data)]
    )
    assert result.exit_code == 0, result.output
    assert "dev1" in result.output
    result = cli_runner.invoke(app, ["psk", "list", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "dev1" in result.output and "id1" in result.output and "7 bytes" in result.output
    assert "73656372657431" not in result.output and "secret1" not in result.output
    result = cli_runner.invoke(
        app, ["psk", "add", "--endpoint", "dev1", "--identity", "id1", "--key", "not-hex", "--data", str(data)]
    )
    assert result.exit_code == 2
    assert (data / "spmp.db").exists()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@needs_libcoap
def test_server_command_serves_dtls_and_stops_on_sigterm(tmp_path: FilePath, cli_runner: CliRunner) -> None:
    data = tmp_path / "data"
    result = cli_runner.invoke(
        app, ["psk", "add", "--endpoint", "site7", "--identity", "site7-id", "--key", "6b65792d37", "--data", str(data)]
    )
    assert result.exit_code == 0
    coaps = _free_udp_port()
    api = _free_tcp_port()
    env = dict(os.environ, SPMP_LOG_LEVEL="INFO")
    env.pop("SPMP_API_TOKEN", None)
    cmd = [sys.executable, "-m", "spmp.cli", "server", "--coaps-port", str(coaps), "--api-port", str(api)]
    proc = subprocess.Popen([*cmd, "--data", str(data)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        out = ""
        while time.monotonic() < deadline:
            client = subprocess.run(
                ["coap-client-openssl", "-v", "6", "-B", "5", "-m", "post", "-t", "40", "-e", "</3/0>",
                 "-u", "site7-id", "-k", "key-7", f"coaps://127.0.0.1:{coaps}/rd?ep=site7&lt=60&lwm2m=1.1"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            out = client.stdout + client.stderr
            if "c:2.01" in out:
                break
            time.sleep(0.5)
        assert "c:2.01" in out, out
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    text = stderr.decode()
    assert proc.returncode == 0, text
    assert "client registered" in text
    assert "6b65792d37" not in text and "key-7" not in text
    assert (data / "api-token").exists() or "API not available" in text
