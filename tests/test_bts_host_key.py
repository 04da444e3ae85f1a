"""The charger checks the BTS's SSH host key before logging in: trust on first use, or a pinned fingerprint.

Real BTS NETCONF servers over SSH on loopback; a mismatch (the BTS re-keyed, or someone else answering on
its address) is refused before any password is sent, with a clear error, and raises Smart Load Fault.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path as FilePath

import paramiko
import pytest
from typer.testing import CliRunner

from spmp.bts import BtsDevice, BtsNetconfServer, load_or_create_host_key
from spmp.charger.clock import SimClock
from spmp.charger.device import ChargerDevice, SiteSource
from spmp.charger.netconf.client import NetconfClient, NetconfHostKeyError
from spmp.charger.netconf.hostkeys import (
    HostKeyMismatchError,
    HostKeyPolicy,
    fingerprint,
    normalize_fingerprint,
    probe_host_key,
)
from spmp.charger.netconf.scenario import scenario_site
from spmp.charger.runner import BtsLink, ChargerRunner
from spmp.cli import app
from spmp.client.accounts import ServerSpec, direct_servers
from spmp.lwm2m.node import SingleResource
from spmp.lwm2m.objects import default_registry, ids
from spmp.lwm2m.objects.alerts import AlertsResource
from spmp.lwm2m.path import Path

REGISTRY = default_registry()
USER, PASSWORD = "charger", "hostkey-secret"


class Bts:
    """A BTS NETCONF server whose host key comes from ``key_dir``; ``restart`` keeps the port."""

    def __init__(self, data: FilePath, key_dir: FilePath) -> None:
        self.device = BtsDevice(data)
        self.key = load_or_create_host_key(key_dir)
        self.logins: list[str] = []
        self.server = self._serve(0)

    def _serve(self, port: int) -> BtsNetconfServer:
        server = BtsNetconfServer(self.device, host_key=self.key, port=port, users={USER: PASSWORD})
        server.start()
        return server

    @property
    def port(self) -> int:
        return self.server.port

    def rekey(self, key_dir: FilePath) -> None:
        """The BTS comes back on the same port with another host key (replaced, or an impostor)."""
        port = self.server.port
        self.server.close()
        self.key = load_or_create_host_key(key_dir)
        self.server = self._serve(port)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def bts(tmp_path: FilePath) -> Iterator[Bts]:
    b = Bts(tmp_path / "bts", tmp_path / "key-a")
    yield b
    b.close()


def _client(port: int, policy: HostKeyPolicy, password: str = PASSWORD) -> NetconfClient:
    return NetconfClient("127.0.0.1", port, username=USER, password=password, host_keys=policy, backoff_initial=0.01)


def test_fingerprints_are_openssh_sha256(bts: Bts) -> None:
    key = probe_host_key("127.0.0.1", bts.port, timeout=5)
    assert key.asbytes() == bts.key.asbytes()
    fp = fingerprint(key)
    assert fp.startswith("SHA256:") and len(fp) == 7 + 43  # 32 bytes, unpadded base64
    assert normalize_fingerprint(fp + "=") == fp
    for bad in ("MD5:aa:bb", "SHA256:not-base64!", "SHA256:AAAA", "aa:bb:cc"):
        with pytest.raises(ValueError, match="fingerprint"):
            normalize_fingerprint(bad)


def test_trust_on_first_use_then_a_changed_key_is_refused(bts: Bts, tmp_path: FilePath) -> None:
    known_hosts = tmp_path / "charger" / "known_hosts"
    client = _client(bts.port, HostKeyPolicy(known_hosts=known_hosts))
    try:
        client.get_sync()  # first use: recorded
        recorded = paramiko.HostKeys(str(known_hosts))
        entry = recorded.lookup(f"[127.0.0.1]:{bts.port}")
        assert entry is not None and entry[bts.key.get_name()].asbytes() == bts.key.asbytes()
        client.close_sync()
        again = _client(bts.port, HostKeyPolicy(known_hosts=known_hosts))
        again.get_sync()  # the same key: accepted
        again.close_sync()

        bts.rekey(tmp_path / "key-b")
        refused = _client(bts.port, HostKeyPolicy(known_hosts=known_hosts))
        with pytest.raises(NetconfHostKeyError) as caught:
            refused.get_sync()
        message = str(caught.value)
        assert "host key mismatch" in message and fingerprint(bts.key) in message and str(known_hosts) in message
        assert refused.connects == 0 and refused.last_error == message
        # The file still holds the first key only: a mismatch never overwrites it.
        assert paramiko.HostKeys(str(known_hosts)).lookup(f"[127.0.0.1]:{bts.port}") == entry
        refused.close_sync()
    finally:
        client.close_sync()


def test_a_pinned_fingerprint_wins_over_first_use(bts: Bts, tmp_path: FilePath) -> None:
    other = load_or_create_host_key(tmp_path / "key-other")
    wrong = _client(bts.port, HostKeyPolicy(pinned=fingerprint(other)))
    with pytest.raises(NetconfHostKeyError, match="pinned fingerprint"):
        wrong.get_sync()
    wrong.close_sync()
    right = _client(bts.port, HostKeyPolicy(known_hosts=tmp_path / "kh", pinned=fingerprint(bts.key)))
    right.get_sync()
    right.close_sync()
    assert not (tmp_path / "kh").exists()  # pinned: nothing recorded
    with pytest.raises(HostKeyMismatchError):
        HostKeyPolicy(pinned=fingerprint(other)).check("127.0.0.1", bts.port, bts.key)


def test_no_password_reaches_a_bts_with_the_wrong_key(bts: Bts, tmp_path: FilePath) -> None:
    # A wrong password would be refused by the BTS with an authentication error: a host-key refusal
    # comes first, before authentication is attempted at all.
    bad = _client(bts.port, HostKeyPolicy(pinned=fingerprint(load_or_create_host_key(tmp_path / "x"))), "wrong")
    with pytest.raises(NetconfHostKeyError):
        bad.get_sync()
    bad.close_sync()


def test_the_charger_refuses_a_rekeyed_bts_and_raises_smart_load_fault(bts: Bts, tmp_path: FilePath) -> None:
    data = tmp_path / "charger"

    async def scenario() -> None:
        first = _runner(bts.port, data)
        assert first.bridge is not None
        try:
            await first.device.step()
            assert await first.bridge.refresh()
            assert not first.smart_load_fault()
        finally:
            await first.stop()
        assert (data / "known_hosts").exists()
        bts.rekey(tmp_path / "key-b")
        second = _runner(bts.port, data)
        assert second.bridge is not None
        try:
            await second.device.step()
            assert not await second.bridge.refresh()
            assert second.bridge.unreachable and "host key mismatch" in (second.bridge.last_error or "")
            assert second.smart_load_fault()
            port = second.device.port_index(second.bts_port or "")
            alert = second.tree.read(Path.of(ids.ALERTS, port, int(AlertsResource.SMART_LOAD_FAULT)))
            assert isinstance(alert, SingleResource) and alert.value is True
        finally:
            await second.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def _runner(port: int, data: FilePath) -> ChargerRunner:
    site = scenario_site(capacity_ah=200.0, soc=0.9)
    device = ChargerDevice(SiteSource(site), SimClock(site.now, manual=True), REGISTRY, adc_error=0.0)
    accounts = direct_servers([ServerSpec("coap://127.0.0.1:9")])
    link = BtsLink("127.0.0.1", port, username=USER, password=PASSWORD)
    return ChargerRunner("hostkey", device, accounts, REGISTRY, bts=link, data_dir=data)


def test_cli_checks_the_fingerprint_option(cli_runner: CliRunner) -> None:
    base = ["charger", "--server", "coap://127.0.0.1:9", "--insecure", "--duration", "0"]
    result = cli_runner.invoke(app, [*base, "--bts", "127.0.0.1:1", "--bts-host-key-fingerprint", "MD5:aa"])
    assert result.exit_code != 0 and "SHA256" in result.output
    result = cli_runner.invoke(app, [*base, "--bts-host-key-fingerprint", "SHA256:" + "A" * 43])
    assert result.exit_code != 0 and "needs --bts" in result.output


def test_a_peer_dropping_its_connection_is_not_an_error_on_the_bts() -> None:
    # The charger's host-key probe drops its TCP connection after the key exchange; paramiko logs that
    # as an ERROR on the server side, which the BTS turns into DEBUG. Real transport errors stay errors.
    from spmp.bts.server import _RoutineDisconnects

    routine = logging.LogRecord(
        "paramiko.transport", logging.ERROR, __file__, 1, "Socket exception: Connection reset by peer (104)", None, None
    )
    real = logging.LogRecord("paramiko.transport", logging.ERROR, __file__, 1, "Unknown exception: boom", None, None)
    quiet = _RoutineDisconnects()
    assert quiet.filter(routine) is logging.getLogger("paramiko.transport").isEnabledFor(logging.DEBUG)
    assert routine.levelno == logging.DEBUG and routine.levelname == "DEBUG"
    assert quiet.filter(real) and real.levelno == logging.ERROR
    assert any(isinstance(f, _RoutineDisconnects) for f in logging.getLogger("paramiko.transport").filters)
