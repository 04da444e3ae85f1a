"""Server-initiated bootstrap triggers, end to end with the client engine in listen mode.

* ``spmp bootstrap start`` as a separate process against the SQLite data directory: the engine
  (listening for its bootstrap server over DTLS with its factory PSK) gets a DTLS account for a
  management server running on the same file, with a generated PSK, and registers there.
* ``POST /api/bootstrap/{endpoint}/start`` on the management server's REST API: the same, from the
  management server's process, and the error answers (400, 403, 409, 502).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path as FilePath

import httpx
from typer.testing import CliRunner

from spmp.api.app import create_app
from spmp.cli import app
from spmp.client.accounts import factory_bootstrap
from spmp.client.device import device_object
from spmp.client.engine import ClientState, Lwm2mClient
from spmp.client.tree import ObjectTree
from spmp.server import ManagementServer
from spmp.store import BootstrapConfig, SecurityInfo, SecurityMode, SecurityScope, ServerAccount, SqliteStore, Store
from test_bootstrap_e2e import OPTIONS
from test_bootstrap_server import FAST, REGISTRY, run

TOKEN = "bootstrap-start-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FACTORY = ("field-factory", b"field-factory-k1")


@asynccontextmanager
async def listening_client(endpoint: str) -> AsyncIterator[tuple[Lwm2mClient, int]]:
    """The engine with no account at all, waiting for a server-initiated bootstrap over DTLS."""
    tree = ObjectTree(REGISTRY)
    security, server_object = factory_bootstrap("coap://127.0.0.1:9")
    security.delete(0)  # no bootstrap account either: the device waits to be bootstrapped
    for enabler in (security, server_object, device_object()):
        tree.add(enabler)
    client = Lwm2mClient(endpoint, tree, REGISTRY, options=OPTIONS, listen=("127.0.0.1", 0), listen_psk=FACTORY)
    await client.start()
    try:
        await asyncio.sleep(0.05)
        assert client.state is ClientState.WAITING_FOR_BOOTSTRAP and client.listener is not None
        yield client, client.listener.transport.local_address[1]
    finally:
        await client.stop()


async def provision(store: Store, server: ManagementServer, endpoint: str) -> None:
    uri = f"coaps://127.0.0.1:{server.coaps_address[1]}"  # type: ignore[index]
    await store.put_bootstrap_config(BootstrapConfig("*", (ServerAccount(101, uri, SecurityMode.PSK, lifetime=60),)))
    await store.put_security(SecurityInfo(endpoint, *FACTORY), SecurityScope.BOOTSTRAP)


def test_spmp_bootstrap_start_as_a_separate_process(tmp_path: FilePath) -> None:
    async def main() -> None:
        async with SqliteStore(tmp_path / "spmp.db") as store:
            server = ManagementServer(store, REGISTRY, coap_port=0, coaps_port=0, params=FAST)
            await server.start()
            try:
                await provision(store, server, "field-cli")
                async with listening_client("field-cli") as (client, port):
                    process = await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-c",
                        "from spmp.cli import app; app(prog_name='spmp')",
                        "bootstrap",
                        "start",
                        "--endpoint",
                        "field-cli",
                        "--address",
                        f"127.0.0.1:{port}",
                        "--step-timeout",
                        "5",
                        "--json",
                        "--data",
                        str(tmp_path),
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                    )
                    out, err = await asyncio.wait_for(process.communicate(), 60)
                    assert process.returncode == 0, err.decode()
                    result = json.loads(out)
                    assert result["ok"] and result["initiatedBy"] == "server"
                    assert result["steps"][0]["step"].startswith("discover /")
                    assert "finished" in err.decode()
                    # The generated PSK reaches the management server's cache by its look-up of the
                    # unknown identity (not its 30 s reload): the engine registers on its retry.
                    await client.wait_registered(101, timeout=10)
                    registered = await store.get_registration("field-cli")
                    assert registered is not None and registered.dtls_identity == "field-cli"
            finally:
                await server.stop()

    run(main(), timeout=90)


def test_spmp_bootstrap_start_errors(cli_runner: CliRunner, tmp_path: FilePath) -> None:
    data = ["--data", str(tmp_path)]
    bad = cli_runner.invoke(app, ["bootstrap", "start", "--endpoint", "x", "--address", "nowhere", *data])
    assert bad.exit_code == 2 and "HOST:PORT" in bad.output
    none = cli_runner.invoke(app, ["bootstrap", "start", "--endpoint", "x", "--address", "127.0.0.1:9", *data])
    assert none.exit_code == 2 and "no bootstrap configuration" in none.output

    async def configure() -> None:
        async with SqliteStore(tmp_path / "spmp.db") as store:
            await store.put_bootstrap_config(BootstrapConfig("*", (ServerAccount(101, "coap://127.0.0.1:5683"),)))
            await store.put_security(SecurityInfo("x", *FACTORY), SecurityScope.BOOTSTRAP)

    asyncio.run(configure())
    no_psk = cli_runner.invoke(app, ["bootstrap", "start", "--endpoint", "y", "--address", "127.0.0.1:9", *data])
    assert no_psk.exit_code == 2 and "no bootstrap PSK" in no_psk.output
    # Nobody listens there: the session fails (exit 1) with the reason, quickly.
    away = cli_runner.invoke(app, ["bootstrap", "start", "--endpoint", "x", "--address", "127.0.0.1:9", *data])
    assert away.exit_code == 1 and "DTLS handshake failed" in away.output
    # Plain CoAP (y has no bootstrap PSK): the session starts, nobody answers, it fails with the reason.
    plain = cli_runner.invoke(
        app,
        [
            "bootstrap",
            "start",
            "--endpoint",
            "y",
            "--address",
            "127.0.0.1:9",
            "--insecure",
            "--step-timeout",
            "1",
            *data,
        ],
    )
    assert plain.exit_code == 1 and "failed" in plain.output


def test_rest_start_bootstraps_the_device_which_then_registers(tmp_path: FilePath) -> None:
    async def main() -> None:
        async with SqliteStore(tmp_path / "spmp.db") as store:
            server = ManagementServer(store, REGISTRY, coap_port=0, coaps_port=0, params=FAST)
            await server.start()
            transport = httpx.ASGITransport(app=create_app(server, store, TOKEN))
            try:
                async with httpx.AsyncClient(transport=transport, base_url="http://spmp", timeout=60) as http:
                    await provision(store, server, "field-api")
                    url = "/api/bootstrap/field-api/start"
                    async with listening_client("field-api") as (client, port):
                        answer = await http.post(url, json={"address": f"127.0.0.1:{port}"}, headers=AUTH)
                        assert answer.status_code == 200, answer.text
                        result = answer.json()
                        assert result["ok"] and result["endpoint"] == "field-api" and result["reason"] is None
                        assert any(s["step"].startswith("finish /bs") and s["code"] == "2.04" for s in result["steps"])
                        await client.wait_registered(101, timeout=10)
                        assert server.registration("field-api") is not None

                    bad = await http.post(url, json={"address": "no-port"}, headers=AUTH)
                    assert bad.status_code == 400 and "HOST:PORT" in bad.json()["message"]
                    assert (await http.post(url, json={}, headers=AUTH)).status_code == 400
                    wild = await http.post("/api/bootstrap/*/start", json={"address": "127.0.0.1:9"}, headers=AUTH)
                    assert wild.status_code == 400
                    plain = await http.post(url, json={"address": "127.0.0.1:9", "secure": False}, headers=AUTH)
                    assert plain.status_code == 403
                    no_psk = await http.post(
                        "/api/bootstrap/other/start", json={"address": "127.0.0.1:9"}, headers=AUTH
                    )
                    assert no_psk.status_code == 409 and "no bootstrap PSK" in no_psk.json()["message"]
                    away = await http.post(url, json={"address": "127.0.0.1:9"}, headers=AUTH)
                    assert away.status_code == 502 and away.json()["ok"] is False
                    assert "DTLS handshake failed" in away.json()["reason"]
                    unauthorized = await http.post(url, json={"address": "127.0.0.1:9"})
                    assert unauthorized.status_code == 401
            finally:
                await server.stop()

    run(main(), timeout=90)
