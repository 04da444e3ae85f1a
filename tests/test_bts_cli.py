"""``spmp bts`` as a process: it listens, generates a password, serves ncclient, and stops on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ncclient import manager
from ncclient.transport import session as nc_session


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_spmp_bts_serves_netconf_until_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nc_session, "TICK", 0.005)  # ncclient polls every 0.1 s by default
    port, data = _free_port(), tmp_path / "bts"
    cmd = [sys.executable, "-m", "spmp.cli", "bts", "--port", str(port), "--data", str(data), "--user", "op"]
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            lines = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "NETCONF over SSH" not in "".join(lines):
                line = proc.stderr.readline()
                if not line:
                    break
                lines.append(line)
            assert f"127.0.0.1:{port}" in "".join(lines), lines
            password = (data / "bts-password").read_text().strip()
            assert (data / "bts-password").stat().st_mode & 0o077 == 0
            with manager.connect(
                host="127.0.0.1",
                port=port,
                username="op",
                password=password,
                hostkey_verify=False,
                allow_agent=False,
                look_for_keys=False,
                timeout=10,
                manager_params={"timeout": 10},
            ) as m:
                reply = m.get(filter=("subtree", '<bts xmlns="urn:spmp:bts"><state><on-air/></state></bts>'))
                assert "<on-air>true</on-air>" in reply.data_xml
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert (data / "running.xml").exists() and (data / "ssh_host_ecdsa_key").exists()
