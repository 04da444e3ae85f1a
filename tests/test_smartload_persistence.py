"""Smart-load state survives a charger restart: the state file, and a real charger restarting mid-shed.

The rules hold the BTS (over a real NETCONF session) and a load port; the charger stops; a new charger
process (a new runner, device and site) starts on the same data directory: it has the same rules, knows
which targets they hold and their original values, and when the voltage recovers it restores them.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path as FilePath

import pytest

from spmp.bts import BtsDevice, BtsNetconfServer, load_or_create_host_key
from spmp.bts.model import FACTORY_CONFIG
from spmp.charger.clock import SimClock
from spmp.charger.device import ChargerDevice, SiteSource
from spmp.charger.netconf.hostkeys import fingerprint
from spmp.charger.netconf.scenario import scenario_site
from spmp.charger.runner import BtsLink, ChargerRunner
from spmp.client.accounts import ServerSpec, direct_servers
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.path import Path
from spmp.smartload.rules import RuleEngine
from spmp.smartload.state_file import STATE_FILE_NAME, StateFile, rebase

REGISTRY = default_registry()
USER, PASSWORD = "charger", "persist-secret"
START = datetime(2024, 6, 1, 21, tzinfo=UTC)


def test_state_file_is_written_atomically_and_read_back(tmp_path: FilePath) -> None:
    state = StateFile(tmp_path / "charger" / STATE_FILE_NAME)
    assert state.load() is None
    snapshot = RuleEngine().snapshot()
    state.save(snapshot)
    state.save({**snapshot, "seq": 7})
    assert state.load() == {**snapshot, "seq": 7}
    assert os.listdir(tmp_path / "charger") == [STATE_FILE_NAME]  # no temporary file left behind


def test_an_unwritable_state_file_fails_loudly_and_keeps_the_old_one(tmp_path: FilePath) -> None:
    state = StateFile(tmp_path / STATE_FILE_NAME)
    state.save({"version": 1})
    with pytest.raises(TypeError):
        state.save({"version": object()})  # not JSON: nothing replaced
    assert state.load() == {"version": 1}


def test_a_corrupt_state_file_is_moved_aside(tmp_path: FilePath) -> None:
    path = tmp_path / STATE_FILE_NAME
    path.write_text('{"version": 1, "rules": [', encoding="utf-8")  # a torn write of some other tool
    assert StateFile(path).load() is None
    assert not path.exists() and (tmp_path / (STATE_FILE_NAME + ".corrupt")).exists()


def test_rebase_shifts_times_when_the_clock_went_back() -> None:
    snapshot = {
        "last_t": 1000.0,
        "rules": [{"id": 0, "since": 900.0, "pending_since": None}],
        "last_change": {"/26244/0/11": 900.0},
    }
    moved = rebase(snapshot, 100.0)
    assert moved["last_t"] == 100.0 and moved["rules"][0]["since"] == 0.0
    assert moved["rules"][0]["pending_since"] is None and moved["last_change"] == {"/26244/0/11": 0.0}
    assert rebase(snapshot, 2000.0) == snapshot  # a clock that moved on: untouched


def test_a_restarted_charger_restores_the_original_values(tmp_path: FilePath) -> None:
    bts_data = tmp_path / "bts"
    bts = BtsDevice(bts_data)
    key = load_or_create_host_key(bts_data)
    server = BtsNetconfServer(bts, host_key=key, port=0, users={USER: PASSWORD})
    server.start()
    try:
        asyncio.run(asyncio.wait_for(_restart(bts, server.port, tmp_path / "charger"), 60))
    finally:
        server.close()


def _runner(port: int, data: FilePath) -> ChargerRunner:
    site = scenario_site(capacity_ah=200.0, soc=0.9, start=START)
    clock = SimClock(site.now, manual=True)
    device = ChargerDevice(SiteSource(site), clock, REGISTRY, sample_interval=30.0, adc_error=0.0)
    accounts = direct_servers([ServerSpec("coap://127.0.0.1:9")])  # never started: no LwM2M traffic here
    link = BtsLink("127.0.0.1", port, username=USER, password=PASSWORD, refresh_interval=0.5)
    return ChargerRunner("persist", device, accounts, REGISTRY, bts=link, rules="default", data_dir=data)


async def _drive(runner: ChargerRunner, volts: float, seconds: int) -> None:
    """Feed the rules ``volts`` (not the site's voltage) every 30 s of the charger's clock."""
    clock = runner.device.clock
    executor = runner.smart_load.executor
    for _ in range(seconds // 30):
        clock.advance(timedelta(seconds=30))
        executor.sample(volts)
        await executor.settle()


async def _restart(bts: BtsDevice, port: int, data: FilePath) -> None:
    first = _runner(port, data)
    assert first.bridge is not None
    try:
        await first.device.step()
        assert await first.bridge.refresh()
        assert not first.rules_restored
        assert first.install_default_rules() == 6
        await _drive(first, 45.0, 600)  # every rule fires
        assert len(first.smart_load.engine.active_rules()) == 6
        assert [float(c.rf_power_output_dbm) for c in bts.config.chains] == [30.0, 30.0]
        assert bts.config.emergency_calls_only
        assert first.device.source.site.ports["LOAD2"].switch_on is False  # type: ignore[attr-defined]
        saved = json.loads((data / STATE_FILE_NAME).read_text(encoding="utf-8"))
        assert len(saved["rules"]) == 6 and all(rule["active"] for rule in saved["rules"])
    finally:
        await first.stop()  # the charger goes down while the rules hold the BTS

    second = _runner(port, data)  # a new process: new site, new device, a clock starting over
    assert second.bridge is not None
    smart = second.smart_load
    try:
        assert second.rules_restored  # so start() would not seed the defaults again
        await second.device.step()
        assert await second.bridge.refresh()
        assert len(smart.engine.rules()) == 6  # restored, not seeded a second time
        assert len(smart.engine.active_rules()) == 6
        rf = smart.engine.target(Path.parse("/26244/0/11"))
        assert rf is not None and rf.original == 33.0  # what to restore survived the restart
        await _drive(second, 52.0, 900)  # the battery recovered
        assert smart.engine.active_rules() == [] and smart.engine.targets() == []
        assert bts.config == FACTORY_CONFIG
        assert second.device.source.site.ports["LOAD2"].switch_on is True  # type: ignore[attr-defined]
        assert not smart.executor.alert
    finally:
        await second.stop()
    assert json.loads((data / STATE_FILE_NAME).read_text(encoding="utf-8"))["targets"] == []
    # The BTS's host key was recorded on first use and checked on the second connection.
    assert (data / "known_hosts").read_text(encoding="utf-8").count("\n") == 1
    assert second.bridge.client.connects == 1
    assert fingerprint(load_or_create_host_key(data.parent / "bts")) in _fingerprints(data / "known_hosts")


def _fingerprints(known_hosts: FilePath) -> list[str]:
    import paramiko

    keys = paramiko.HostKeys(str(known_hosts))
    return [fingerprint(key) for host in keys for key in keys[host].values()]
