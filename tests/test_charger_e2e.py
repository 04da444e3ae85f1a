"""The charger end to end, with the real servers: bootstrap → register → observe → switch → calibrate.

One simulated charger (48 V site, clock at 600× so five minutes of device time pass in half a
second) starts from factory settings (bootstrap URI + PSK), bootstraps over DTLS with the real
bootstrap server, registers over DTLS with the real management server, and is then driven through
the real REST API (httpx's ASGI transport). A second test runs ``spmp charger --modbus`` as a
process against the Modbus engineer's pymodbus simulator.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path as FilePath

import httpx

from _server_helpers import FAST
from spmp.api import create_app
from spmp.bootstrap.server import BootstrapServer
from spmp.charger.runner import ChargerRunner, simulated_charger
from spmp.client.accounts import factory_bootstrap
from spmp.client.registration import ClientOptions
from spmp.lwm2m.objects import default_registry
from spmp.server import ManagementServer
from spmp.store import BootstrapConfig, MemoryStore, SecurityInfo, SecurityMode, SecurityScope, ServerAccount, Store

REGISTRY = default_registry()
TOKEN = "charger-e2e-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BS_KEY = b"charger-factory1"
OPTIONS = ClientOptions(
    coap=FAST, local_host="127.0.0.1", retry_initial=0.1, retry_max=0.5, bootstrap_timeout=10.0, deregister_timeout=1.0
)
EP = "charger-e2e"
LOAD1 = 2  # instance id of port LOAD1 in every per-port object (PV 0, BATT 1, LOAD1 2, LOAD2 3)


async def eventually(check: object, timeout: float = 20.0, interval: float = 0.05) -> None:
    """Wait until ``await check()`` is truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await check():  # type: ignore[operator]
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {check}")
        await asyncio.sleep(interval)


async def distinct_timestamps(store: Store, path: str) -> list[datetime]:
    """The distinct values of a Time resource in the telemetry (stored as Unix seconds)."""
    points = await store.query_telemetry(EP, path, limit=10000)
    return sorted({datetime.fromtimestamp(p.value, UTC) for p in points if isinstance(p.value, int)})


def test_factory_bootstrap_observe_port_status_switch_and_calibration_backup() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            server = ManagementServer(store, REGISTRY, coap_port=0, coaps_port=0, params=FAST, psk_refresh=0.2)
            bootstrap = BootstrapServer(store, REGISTRY, coap_port=0, coaps_port=0, coap_params=FAST, step_timeout=5)
            await server.start()
            await bootstrap.start()
            runner: ChargerRunner | None = None
            http = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(server, store, TOKEN)), base_url="http://api"
            )
            try:
                uri = f"coaps://127.0.0.1:{server.coaps_address[1]}"  # type: ignore[index]
                await store.put_bootstrap_config(
                    BootstrapConfig("*", (ServerAccount(101, uri, SecurityMode.PSK, lifetime=60),))
                )
                await store.put_security(SecurityInfo(EP, "charger-e2e-factory", BS_KEY), SecurityScope.BOOTSTRAP)
                await bootstrap.psks.load()
                start = datetime(2024, 3, 20, 9, 0, tzinfo=UTC)
                device = simulated_charger(REGISTRY, seed=3, speed=600, start=start, sample_interval=10, serial=EP)
                bs_uri = f"coaps://127.0.0.1:{bootstrap.coaps_address[1]}"  # type: ignore[index]
                accounts = factory_bootstrap(bs_uri, "charger-e2e-factory", BS_KEY)
                runner = ChargerRunner(EP, device, accounts, REGISTRY, options=OPTIONS)
                await runner.start()
                await runner.client.wait_registered(timeout=20)
                assert runner.client.bootstraps == 1
                registration = (await http.get(f"/api/clients/{EP}", headers=AUTH)).json()
                assert registration["secure"] is True and registration["pskIdentity"] == EP

                # -- calibration backup, taken by the server at registration
                async def backed_up() -> bool:
                    return len(await store.list_calibration_backups(EP)) == 8  # 4 ports x (V, I)

                await eventually(backed_up)
                listed = (await http.get(f"/api/clients/{EP}/calibration", headers=AUTH)).json()
                by_path = {b["path"]: b["value"] for b in listed["backups"]}
                factory = device.voltage_sensors[LOAD1].calibration
                assert by_path[f"/3316/{LOAD1}/5821"] == factory and factory != 1.0

                # -- observe Port Status of LOAD1, then set its Length to five minutes
                observed = await http.post(f"/api/clients/{EP}/26242/{LOAD1}/observe", headers=AUTH)
                assert observed.status_code == 200, observed.text
                assert observed.json()["value"]["kind"] == "instance"
                # The device restarts the window at the device time it applies the write. At 600x a
                # millisecond of wall time is 0.6 s of device time, so that instant is taken from the
                # device (restarts), bounded by the device clock read around the PUT: never from when
                # the test happens to run again.
                window = device.windows[LOAD1]
                restart = window.restart
                restarts: list[tuple[datetime, int | None]] = []

                def recording_restart(start: datetime, length_s: int | None = None) -> None:
                    restarts.append((start, length_s))
                    restart(start, length_s)

                window.restart = recording_restart  # type: ignore[method-assign]
                before_write = device.clock.now()
                written = await http.put(f"/api/clients/{EP}/26242/{LOAD1}/3", json={"value": 300}, headers=AUTH)
                after_write = device.clock.now()
                assert written.status_code == 200, written.text
                # (a retransmitted PUT may be applied twice: PUT is idempotent; the last one counts)
                assert restarts and all(length == 300 for _, length in restarts), restarts
                assert all(before_write <= at <= after_write for at, _ in restarts), (before_write, restarts)
                length_set_at = restarts[-1][0]
                path = f"/26242/{LOAD1}/5518"

                async def four_windows() -> bool:
                    stamps = await distinct_timestamps(store, path)
                    return len([t for t in stamps if t > length_set_at]) >= 4

                await eventually(four_windows, timeout=30)
                stamps = [t for t in await distinct_timestamps(store, path) if t > length_set_at]
                gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
                assert all(abs(gap - 300) <= 1 for gap in gaps), gaps  # device time: one per Length
                # the first window ends one Length after the write (Timestamp drops the microseconds)
                assert abs((stamps[0] - length_set_at).total_seconds() - 300) <= 1, (stamps[0], length_set_at)
                averages = await store.query_telemetry(EP, f"/26242/{LOAD1}/2", limit=10000)
                assert averages and all(0.5 < p.value < 3.0 for p in averages)  # type: ignore[operator]

                # -- switch LOAD1 off through the REST API: its current drops to zero
                before = (await http.get(f"/api/clients/{EP}/3317/{LOAD1}/5700", headers=AUTH)).json()
                assert before["value"] > 0.5
                off = await http.put(f"/api/clients/{EP}/3201/{LOAD1}/5550", json={"value": False}, headers=AUTH)
                assert off.status_code == 200, off.text
                after = (await http.get(f"/api/clients/{EP}/3317/{LOAD1}/5700", headers=AUTH)).json()
                assert after["value"] == 0.0
                samples = device.samples

                async def more_samples() -> bool:  # more simulated minutes: still off
                    return device.samples >= samples + 5

                await eventually(more_samples)
                again = (await http.get(f"/api/clients/{EP}/3317/{LOAD1}/5700", headers=AUTH)).json()
                assert again["value"] == 0.0
                assert device.source.site.ports["LOAD1"].switch_on is False  # type: ignore[attr-defined]

                # -- calibration lost (reset to 1.0), then restored with one call
                reset = await http.put(f"/api/clients/{EP}/3316/{LOAD1}/5821", json={"value": 1.0}, headers=AUTH)
                assert reset.status_code == 200
                assert device.voltage_sensors[LOAD1].calibration == 1.0
                restored = await http.post(f"/api/clients/{EP}/calibration/restore", headers=AUTH)
                assert restored.status_code == 200, restored.text
                assert len(restored.json()["restored"]) == 8 and restored.json()["failed"] == {}
                now = (await http.get(f"/api/clients/{EP}/3316/{LOAD1}/5821", headers=AUTH)).json()
                assert now["value"] == factory and device.voltage_sensors[LOAD1].calibration == factory
                # a later registration does not overwrite the first backup
                assert len(await store.list_calibration_backups(EP)) == 8
                missing = await http.post("/api/clients/nobody/calibration/restore", headers=AUTH)
                assert missing.status_code == 404
            finally:
                await http.aclose()
                if runner is not None:
                    await runner.stop()
                await bootstrap.stop()
                await server.stop()

    asyncio.run(asyncio.wait_for(main(), 90))


def test_spmp_charger_modbus_reports_the_battery_voltage_the_controller_serves() -> None:
    from spmp.charger.modbus.simulator import ChargerSimulator

    async def main() -> None:
        async with MemoryStore() as store:
            server = ManagementServer(store, REGISTRY, coap_port=0, coaps_port=0, params=FAST, insecure=True)
            await server.start()
            simulator = ChargerSimulator()
            await simulator.start()
            process: asyncio.subprocess.Process | None = None
            try:
                simulator.update({"battery_voltage": 51.7, "battery_current": -2.5, "charge_state": "NIGHT"})
                executable = FilePath(sys.executable).with_name("spmp")
                process = await asyncio.create_subprocess_exec(
                    str(executable),
                    "charger",
                    "--endpoint",
                    "modbus-e2e",
                    "--server",
                    f"coap://127.0.0.1:{server.coap_address[1]}",  # type: ignore[index]
                    "--insecure",
                    "--modbus",
                    f"127.0.0.1:{simulator.port}",
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env={**os.environ, "SPMP_LOG_LEVEL": "WARNING"},
                )

                async def registered() -> bool:
                    return server.registration("modbus-e2e") is not None

                await eventually(registered, timeout=30)
                result = await server.read("modbus-e2e", "/26246/0/16", timeout=10)
                assert abs(result.node.value - 51.7) < 0.01  # type: ignore[union-attr]
                voltage = await server.read("modbus-e2e", "/3316/1/5700", timeout=10)
                assert abs(voltage.node.value - 51.7) < 0.01  # type: ignore[union-attr]
                simulator.set("battery_voltage", 49.9)

                async def followed() -> bool:
                    now = await server.read("modbus-e2e", "/26246/0/16", timeout=10)
                    return abs(now.node.value - 49.9) < 0.01  # type: ignore[union-attr]

                await eventually(followed, timeout=15, interval=0.5)
                soc = await server.read("modbus-e2e", "/26246/0", timeout=10)
                assert soc.node.resource(26) is None  # type: ignore[union-attr]  # the controller has no SOC
                process.send_signal(signal.SIGINT)
                _, err = await asyncio.wait_for(process.communicate(), 20)
                assert process.returncode == 0, err.decode()

                async def gone() -> bool:
                    return server.registration("modbus-e2e") is None

                await eventually(gone, timeout=10)  # it de-registered on Ctrl-C
            finally:
                if process is not None and process.returncode is None:
                    process.kill()
                    await process.wait()
                await simulator.stop()
                await server.stop()

    asyncio.run(asyncio.wait_for(main(), 90))
