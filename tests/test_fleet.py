"""The fleet simulator against a real ManagementServer on loopback (plain CoAP and DTLS PSK), and its CLI."""

from __future__ import annotations

import asyncio
import struct
import threading
from pathlib import Path as FilePath

import pytest
from typer.testing import CliRunner

from _server_helpers import make_server, run
from spmp.cli import app
from spmp.coap.message import Type, decode
from spmp.fleet import Fleet, FleetConfig, FleetError, device_key, provision
from spmp.fleet.device import PayloadTemplate, registration_payload
from spmp.fleet.simulator import _notification_bytes
from spmp.lwm2m import ContentFormat, Path
from spmp.lwm2m.codecs import decode as decode_payload
from spmp.lwm2m.link import parse_registration
from spmp.lwm2m.node import ObjectInstance, SingleResource
from spmp.lwm2m.objects import default_registry
from spmp.server import ManagementServer
from spmp.store import MemoryStore, SecurityScope, SqliteStore


async def wait_until(predicate: object, timeout: float = 20.0) -> None:
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


def test_registration_payload_and_keys() -> None:
    objects = parse_registration(registration_payload())
    assert {o for o, _ in objects.objects} == {3, 3316, 26242}
    assert ContentFormat.SENML_CBOR in objects.content_formats
    assert device_key(b"s", "fleet-1") == device_key(b"s", "fleet-1")
    assert device_key(b"s", "fleet-1") != device_key(b"s", "fleet-2")
    assert len(device_key(b"s", "fleet-1")) == 16
    with pytest.raises(FleetError):
        FleetConfig(10, "coap://127.0.0.1:5683", psk=True)
    with pytest.raises(FleetError):
        FleetConfig(10, "coaps://127.0.0.1:5684", psk=True, sockets=2)


@pytest.mark.parametrize("fmt", [ContentFormat.SENML_CBOR, ContentFormat.TLV])
def test_templates_decode_with_the_real_codecs(fmt: ContentFormat) -> None:
    registry = default_registry()
    for text in ("/3316/0", "/26242/0", "/3316/0/5700"):
        path = Path.parse(text)
        template = PayloadTemplate.build(path, fmt)
        assert template is not None
        values = (49.25, 2.5)[: len(template.parts) - 1]
        node = decode_payload(template.render(values), path, fmt, registry)
        if isinstance(node, ObjectInstance):
            node = node.resources[5700 if path.object_id == 3316 else 1]
        assert isinstance(node, SingleResource)
        assert node.value == 49.25


def test_notification_bytes_decode() -> None:
    data = _notification_bytes(True, 0x1234, b"\x01\x02\x03\x04", 70000, ContentFormat.SENML_CBOR, b"xyz")
    msg = decode(data)
    assert msg.type == Type.CON and msg.mid == 0x1234 and msg.token == b"\x01\x02\x03\x04"
    assert msg.get_option(6) == struct.pack(">I", 70000)[1:]
    assert msg.get_option(12) == bytes([112])
    assert msg.payload == b"xyz"


def test_fleet_against_a_real_server(tmp_path: FilePath) -> None:
    async def body() -> None:
        async with MemoryStore() as store:
            await provision(store, 5, prefix="sec-", secret=b"fleet-secret")
            server: ManagementServer = make_server(store, discover_on_register=True)
            async with server:
                assert server.coap_address is not None and server.coaps_address is not None
                plain = Fleet(FleetConfig(20, f"coap://127.0.0.1:{server.coap_address[1]}", period=0.3))
                secure = Fleet(
                    FleetConfig(
                        5,
                        f"coaps://127.0.0.1:{server.coaps_address[1]}",
                        period=0.3,
                        psk=True,
                        prefix="sec-",
                        secret=b"fleet-secret",
                        confirmable=False,
                    )
                )
                try:
                    await plain.start()
                    await secure.start()
                    assert plain.stats.registered == 20 and plain.stats.failed == 0
                    assert secure.stats.registered == 5 and secure.stats.handshakes == 5
                    names = {r.endpoint for r in server.registrations()}
                    assert names == {f"fleet-{i}" for i in range(20)} | {f"sec-{i}" for i in range(5)}
                    assert server.registration("sec-3") is not None
                    assert server.registration("sec-3").dtls_identity == "sec-3"  # type: ignore[union-attr]

                    result = await server.read("fleet-7", "/3316/0/5700", timeout=10)
                    assert isinstance(result.node, SingleResource) and 40 < float(result.node.value) < 60  # type: ignore[arg-type]
                    device = await server.read("sec-2", "/3/0", timeout=10)
                    assert isinstance(device.node, ObjectInstance) and device.node.resources[2].value == "sec-2"  # type: ignore[union-attr]

                    await server.observe("fleet-7", "/3316/0", timeout=10)
                    await server.observe("sec-1", "/26242/0/2", timeout=10)
                    await wait_until(lambda: server.observations.stats.notifications >= 8)
                    await wait_until(lambda: plain.stats.notifications_acked >= 3)
                    await server.sink.flush()
                    points = await store.query_telemetry("fleet-7", "/3316/0/5700")
                    assert len(points) >= 3
                    assert len({p.value for p in points}) > 1  # the values change
                    assert await store.query_telemetry("sec-1", "/26242/0/2")
                finally:
                    await plain.stop()
                    await secure.stop()
                assert plain.stats.deregistered == 20 and secure.stats.deregistered == 5
                await wait_until(lambda: not server.registrations())

    run(body(), timeout=120)


def test_shared_sockets_register(tmp_path: FilePath) -> None:
    async def body() -> None:
        async with MemoryStore() as store:
            server = make_server(store, registration_rate=10_000.0, registration_burst=10_000)
            async with server:
                assert server.coap_address is not None
                fleet = Fleet(FleetConfig(30, f"coap://127.0.0.1:{server.coap_address[1]}", sockets=3))
                async with fleet:
                    assert fleet.stats.registered == 30
                    assert len(server.registrations()) == 30
                    assert len({(r.host, r.port) for r in server.registrations()}) == 3
                assert fleet.stats.deregistered == 30

    run(body())


def test_cli_help(cli_runner: CliRunner) -> None:
    result = cli_runner.invoke(app, ["fleet", "--help"])
    assert result.exit_code == 0
    for option in ("--devices", "--server", "--period", "--psk", "--psk-prefix", "--duration", "--sockets"):
        assert option in result.output
    result = cli_runner.invoke(app, ["fleet", "provision", "--help"])
    assert result.exit_code == 0 and "--data" in result.output


def test_cli_provision(cli_runner: CliRunner, tmp_path: FilePath) -> None:
    result = cli_runner.invoke(app, ["fleet", "provision", "--devices", "3", "--data", str(tmp_path), "--secret", "s"])
    assert result.exit_code == 0, result.output

    async def check() -> None:
        async with SqliteStore(tmp_path / "spmp.db") as store:
            info = await store.get_security("fleet-2", SecurityScope.SERVER)
            assert info is not None and info.psk_identity == "fleet-2" and info.psk_key == device_key(b"s", "fleet-2")

    asyncio.run(check())


def test_cli_short_run(cli_runner: CliRunner) -> None:
    """`spmp fleet --duration 2` against a server running in a thread of this process."""
    ready = threading.Event()
    done = threading.Event()
    address: list[int] = []

    async def serve() -> None:
        async with MemoryStore() as store:
            server = make_server(store)
            async with server:
                assert server.coap_address is not None
                address.append(server.coap_address[1])
                ready.set()
                while not done.is_set():
                    await asyncio.sleep(0.05)

    thread = threading.Thread(target=lambda: asyncio.run(serve()))
    thread.start()
    try:
        assert ready.wait(20)
        result = cli_runner.invoke(
            app,
            ["fleet", "--devices", "5", "--server", f"coap://127.0.0.1:{address[0]}", "--duration", "2", "--json"],
        )
    finally:
        done.set()
        thread.join(20)
    assert result.exit_code == 0, result.output
    assert '"registrations": 5' in result.output
    assert '"deregistered": 5' in result.output
