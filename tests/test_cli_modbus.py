"""``spmp charger --modbus --modbus-map FILE --modbus-unit N`` (another controller is another file) and
``spmp modbus-sim`` (a simulated controller to try ``--modbus`` with), as real processes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from typer.testing import CliRunner

from _server_helpers import FAST
from spmp.charger.modbus import ChargerSimulator, ModbusSource, load_map
from spmp.cli import app
from spmp.lwm2m.objects import default_registry
from spmp.server import ManagementServer
from spmp.store import MemoryStore
from test_cli_errors import assert_clean_error

# A controller unlike the TriStar: input registers, other addresses, plain fixed-point scaling.
OTHER_MAP = """
[device]
name = "Other controller"

[measurements.vbat]
quantity = "battery_voltage"
kind = "input"
address = 100
type = "u16"
scale = "raw * 0.01"
unit = "V"

[measurements.ibat]
quantity = "battery_current"
kind = "input"
address = 101
type = "s16"
scale = "raw * 0.1"
unit = "A"
"""


def other_map(tmp_path: Path) -> Path:
    path = tmp_path / "other.toml"
    path.write_text(OTHER_MAP)
    return path


async def spmp(*args: str, cwd: Path | None = None) -> asyncio.subprocess.Process:
    """``spmp ARGS`` as a process (in ``cwd``: where default data directories would go)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPMP_")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spmp.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd,
    )  # fmt: skip


async def stop(process: asyncio.subprocess.Process) -> str:
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 20)
    return err.decode()


def test_charger_reads_another_controller_through_its_map_file_and_unit(tmp_path: Path) -> None:
    map_file = other_map(tmp_path)

    async def main() -> None:
        async with MemoryStore() as store:
            server = ManagementServer(store, default_registry(), coap_port=0, coaps_port=0, params=FAST, insecure=True)
            await server.start()
            simulator = ChargerSimulator(load_map(map_file), unit_id=7)
            await simulator.start()
            simulator.update({"battery_voltage": 26.45, "battery_current": -1.5})
            assert server.coap_address is not None
            process = await spmp(
                "charger", "--endpoint", "other-ctl", "--server", f"coap://127.0.0.1:{server.coap_address[1]}",
                "--insecure", "--modbus", f"127.0.0.1:{simulator.port}", "--modbus-map", str(map_file),
                "--modbus-unit", "7", cwd=tmp_path,
            )  # fmt: skip
            try:
                deadline = asyncio.get_running_loop().time() + 30
                while server.registration("other-ctl") is None:
                    assert asyncio.get_running_loop().time() < deadline, "the charger did not register"
                    assert process.returncode is None, await stop(process)
                    await asyncio.sleep(0.1)
                result = await server.read("other-ctl", "/26246/0/16", timeout=10)
                assert abs(result.node.value - 26.45) < 0.01  # type: ignore[union-attr]
                assert {r.kind.value for r in simulator.requests} == {"input"}
                err = await stop(process)
                assert process.returncode == 0, err
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                await simulator.stop()
                await server.stop()

    asyncio.run(asyncio.wait_for(main(), 90))


def test_charger_modbus_option_mistakes_are_clean_errors(cli_runner: CliRunner, tmp_path: Path) -> None:
    base = ["charger", "--server", "coap://127.0.0.1:9", "--insecure"]
    assert_clean_error(cli_runner.invoke(app, [*base, "--modbus-map", str(other_map(tmp_path))]), "need --modbus")
    assert_clean_error(cli_runner.invoke(app, [*base, "--modbus-unit", "3"]), "need --modbus")
    assert_clean_error(
        cli_runner.invoke(app, [*base, "--modbus", "127.0.0.1:502", "--modbus-map", str(tmp_path / "absent.toml")]),
        "--modbus-map",
        "absent.toml",
    )
    broken = tmp_path / "broken.toml"
    broken.write_text(OTHER_MAP.replace('"raw * 0.01"', '"raw * "'))
    assert_clean_error(cli_runner.invoke(app, [*base, "--modbus", "127.0.0.1:502", "--modbus-map", str(broken)]))
    assert_clean_error(cli_runner.invoke(app, [*base, "--modbus", "no-port"]), "HOST:PORT")
    assert cli_runner.invoke(app, [*base, "--modbus", "h:1", "--modbus-unit", "256"]).exit_code == 2
    help_text = cli_runner.invoke(app, ["charger", "--help"]).stdout
    assert "--modbus-map" in help_text and "--modbus-unit" in help_text


def test_modbus_sim_serves_the_demo_values_with_a_map_and_unit(tmp_path: Path) -> None:
    map_file = other_map(tmp_path)

    async def main() -> None:
        process = await spmp("modbus-sim", "--port", "0", "--map", str(map_file), "--unit", "7", cwd=tmp_path)
        try:
            assert process.stderr is not None
            line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
            found = re.match(r"spmp modbus-sim: Modbus TCP on 127\.0\.0\.1:(\d+), unit 7, Other controller", line)
            assert found is not None, line
            async with ModbusSource("127.0.0.1", int(found.group(1)), 7, load_map(map_file), timeout=5) as source:
                reading = await source.read()
            assert reading.ok, reading.errors
            assert reading.value("battery_voltage") == 56.4
            assert reading.value("battery_current") == 21.5
            err = await stop(process)
            assert process.returncode == 0, err
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_modbus_sim_mistakes_are_clean_errors(cli_runner: CliRunner, tmp_path: Path) -> None:
    assert_clean_error(cli_runner.invoke(app, ["modbus-sim", "--map", str(tmp_path / "absent.toml")]), "absent.toml")
    assert_clean_error(cli_runner.invoke(app, ["modbus-sim", "--host", "192.0.2.1", "--port", "0"]), "192.0.2.1")
    help_text = cli_runner.invoke(app, ["modbus-sim", "--help"]).stdout
    assert "--map" in help_text and "--unit" in help_text and "spmp charger --modbus" in help_text
