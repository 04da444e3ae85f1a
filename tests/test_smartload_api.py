"""Operators manage smart-load rules from the server: the real REST API, the real management server, a real charger.

The charger (client engine over CoAP on loopback, its BTS over a real NETCONF/SSH session) registers
with the management server; the test drives /api/clients/{ep}/26245 through the API (httpx's ASGI
transport): Create a rule, read it back, see it fire (Active) and edit the BTS, Write it, Delete it
(the BTS is restored), and invalid rules come back with the charger's own CoAP code (4.04 / 4.00 / 4.05).
"""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path as FilePath
from typing import Any

import httpx

from _server_helpers import FAST
from spmp.api import create_app
from spmp.bts import BtsDevice, BtsNetconfServer, load_or_create_host_key
from spmp.charger.runner import BtsLink, ChargerRunner, simulated_charger
from spmp.client.accounts import ServerSpec, direct_servers
from spmp.client.registration import ClientOptions
from spmp.lwm2m.objects import default_registry
from spmp.server import ManagementServer
from spmp.store import MemoryStore

REGISTRY = default_registry()
TOKEN = "smartload-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EP = "smartload-api"
USER, PASSWORD = "charger", "api-secret"
OPTIONS = ClientOptions(coap=FAST, local_host="127.0.0.1", retry_initial=0.1, retry_max=0.5, deregister_timeout=1.0)


def _rule(threshold: float, target: tuple[int, int, int], value: str, type_name: str) -> dict[str, Any]:
    o, i, r = target
    return {
        "resources": [
            {"id": 0, "value": threshold},
            {"id": 1, "value": o},
            {"id": 2, "value": i},
            {"id": 3, "value": r},
            {"id": 4, "value": base64.b64encode(value.encode()).decode()},  # Opaque: base64 in JSON
            {"id": 5, "value": type_name},
        ]
    }


def _values(instance: dict[str, Any]) -> dict[int, Any]:
    return {r["id"]: r["value"] for r in instance["resources"]}


def test_operator_creates_writes_and_deletes_a_rule_through_the_rest_api(tmp_path: FilePath) -> None:
    bts = BtsDevice(tmp_path / "bts")
    bts_server = BtsNetconfServer(
        bts, host_key=load_or_create_host_key(tmp_path / "bts"), port=0, users={USER: PASSWORD}
    )
    bts_server.start()
    try:
        asyncio.run(asyncio.wait_for(_main(bts, bts_server.port, tmp_path / "charger"), 60))
    finally:
        bts_server.close()


async def _main(bts: BtsDevice, bts_port: int, data: FilePath) -> None:
    async with MemoryStore() as store:
        server = ManagementServer(store, REGISTRY, coap_port=0, coaps_port=0, params=FAST, insecure=True)
        await server.start()
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(server, store, TOKEN)), base_url="http://api"
        )
        runner: ChargerRunner | None = None
        try:
            uri = f"coap://127.0.0.1:{server.coap_address[1]}"  # type: ignore[index]
            device = simulated_charger(
                REGISTRY, start=datetime(2024, 6, 1, 20, tzinfo=UTC), manual=True, soc=0.9, serial=EP
            )
            link = BtsLink("127.0.0.1", bts_port, username=USER, password=PASSWORD, refresh_interval=0.2)
            runner = ChargerRunner(
                EP, device, direct_servers([ServerSpec(uri)]), REGISTRY, options=OPTIONS, bts=link, data_dir=data
            )
            await runner.start()
            await runner.client.wait_registered(timeout=20)
            base = f"/api/clients/{EP}/26245"

            # -- Create: emergency calls only below 47.5 V
            created = await http.post(base, json=_rule(47.5, (26244, 0, 9), "1", "Boolean"), headers=AUTH)
            assert created.status_code == 201, created.text
            rule = created.json()["path"]
            assert rule.startswith("/26245/")
            iid = int(rule.rsplit("/", 1)[1])
            read = await http.get(f"/api/clients/{EP}{rule}", headers=AUTH)
            assert read.status_code == 200, read.text
            resources = _values(read.json())
            assert resources[0] == 47.5 and resources[1] == 26244 and resources[5] == "Boolean"
            assert resources[7] is False and resources[9] is False  # Active, Fault

            # -- the battery falls: the rule fires and the BTS goes emergency-only over NETCONF
            smart = runner.smart_load
            clock = device.clock
            for _ in range(4):
                clock.advance(timedelta(seconds=30))
                smart.executor.sample(46.0)
            await smart.executor.settle()
            assert bts.config.emergency_calls_only is True
            active = await http.get(f"/api/clients/{EP}{rule}/7", headers=AUTH)
            assert active.status_code == 200 and active.json()["value"] is True
            fault = await http.get(f"/api/clients/{EP}{rule}/9", headers=AUTH)
            assert fault.json()["value"] is False

            # -- Write (partial update): a new threshold; the rule keeps its state
            written = await http.put(
                f"/api/clients/{EP}{rule}?replace=false",
                json={"resources": [{"id": 0, "value": 47.0}, {"id": 6, "value": 1.5}]},
                headers=AUTH,
            )
            assert written.status_code == 200, written.text
            after = _values((await http.get(f"/api/clients/{EP}{rule}", headers=AUTH)).json())
            assert after[0] == 47.0 and after[6] == 1.5 and after[7] is True
            assert smart.engine.rule(iid).threshold == 47.0  # type: ignore[union-attr]
            # Active and Fault are the charger's: a Write to them is 4.05 through the API.
            refused = await http.put(f"/api/clients/{EP}{rule}/7", json={"value": False}, headers=AUTH)
            assert refused.status_code == 405 and refused.json()["coapCode"] == "4.05"

            # -- Delete: the target is released at once, the BTS restored
            deleted = await http.delete(f"/api/clients/{EP}{rule}", headers=AUTH)
            assert deleted.status_code == 200, deleted.text
            await smart.executor.settle()
            assert bts.config.emergency_calls_only is False
            gone = await http.get(f"/api/clients/{EP}{rule}", headers=AUTH)
            assert gone.status_code == 404
            assert smart.engine.rules() == []

            # -- invalid rules: the charger's answer, code and message, through the REST error
            unknown = await http.post(base, json=_rule(47.0, (9999, 0, 0), "1", "Boolean"), headers=AUTH)
            assert unknown.status_code == 404, unknown.text
            assert unknown.json()["coapCode"] == "4.04" and "9999" in unknown.json()["message"]
            missing = await http.post(base, json=_rule(47.0, (3201, 42, 5550), "0", "Boolean"), headers=AUTH)
            assert missing.status_code == 404 and missing.json()["coapCode"] == "4.04"
            bad_value = await http.post(base, json=_rule(47.0, (26244, 0, 9), "maybe", "Boolean"), headers=AUTH)
            assert bad_value.status_code == 400, bad_value.text
            assert bad_value.json()["coapCode"] == "4.00" and bad_value.json()["message"]
            read_only = await http.post(base, json=_rule(47.0, (3316, 2, 5700), "1", "Float"), headers=AUTH)
            assert read_only.status_code == 400 and read_only.json()["coapCode"] == "4.00"
            assert smart.engine.rules() == []  # nothing half-created
        finally:
            await http.aclose()
            if runner is not None:
                await runner.stop()
            await server.stop()
