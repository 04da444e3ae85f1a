"""REST: Observe-Composite (``POST``/``DELETE /api/clients/{ep}/composite/observe``), issue 3.

SPMP's own client engine is the device (plain CoAP on loopback, shrunk timers); the API is called
through httpx's ASGI transport. One composite observation of two resources: the answer carries both
current values, a change of either lands in telemetry, and DELETE cancels it on the device.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from _server_helpers import FAST, make_server, run
from spmp.api import create_app
from spmp.client.accounts import ServerSpec, direct_servers
from spmp.client.device import device_object
from spmp.client.engine import Lwm2mClient
from spmp.client.objects import StoredObject
from spmp.client.registration import ClientOptions
from spmp.client.tree import ObjectTree
from spmp.lwm2m.node import SingleResource
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.objects.ipso import TEMPERATURE
from spmp.store import MemoryStore

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REGISTRY = default_registry()
FLOAT = TEMPERATURE.resource(5700).type  # type: ignore[union-attr]
PATHS = ["/3303/0/5700", "/3303/1/5700"]


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_composite_observe_and_cancel_through_the_api() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            server = make_server(store)
            await server.start()
            assert server.coap_address is not None
            tree = ObjectTree(REGISTRY)
            for enabler in direct_servers([ServerSpec(f"coap://127.0.0.1:{server.coap_address[1]}", lifetime=60)]):
                tree.add(enabler)
            tree.add(device_object(serial="SN-C"))
            temperature = StoredObject(TEMPERATURE)
            for iid, value in ((0, 20.0), (1, 30.0)):
                temperature.add_instance(iid, {5700: SingleResource(5700, value, FLOAT)})
            tree.add(temperature)
            options = ClientOptions(coap=FAST, local_host="127.0.0.1", deregister_timeout=1.0)
            client = Lwm2mClient("site-c", tree, REGISTRY, options=options)
            await client.start()
            transport = httpx.ASGITransport(app=create_app(server, store, TOKEN))
            try:
                await client.wait_registered(1)
                async with httpx.AsyncClient(transport=transport, base_url="http://spmp") as http:
                    url = "/api/clients/site-c/composite/observe"
                    for path in PATHS:  # pmin=0: notify every change at once
                        r = await http.put(f"/api/clients/site-c{path}/attributes?pmin=0", headers=AUTH)
                        assert r.status_code == 200, r.text

                    r = await http.post(url, json={"paths": PATHS}, headers=AUTH)
                    assert r.status_code == 200, r.text
                    body = r.json()
                    assert body["observation"]["composite"] is True
                    assert body["observation"]["paths"] == PATHS
                    assert {p: n["value"] for p, n in body["nodes"].items()} == {PATHS[0]: 20.0, PATHS[1]: 30.0}
                    assert len(server.observations.find("site-c")) == 1
                    assert len(await store.list_observations("site-c")) == 1

                    temperature.set_value(1, SingleResource(5700, 31.5, FLOAT))
                    await _until(lambda: server.observations.stats.notifications >= 1)
                    await server.sink.flush()
                    r = await http.get(f"/api/clients/site-c/telemetry?path={PATHS[1]}", headers=AUTH)
                    assert 31.5 in [p["value"] for p in r.json()["points"]]

                    r = await http.request("DELETE", url, json={"paths": ["/3303/0/5700"]}, headers=AUTH)
                    assert r.status_code == 404  # not exactly the observed set
                    r = await http.request("DELETE", url, json={"paths": list(reversed(PATHS))}, headers=AUTH)
                    assert r.status_code == 200, r.text
                    assert r.json() == {"status": "CANCELLED", "cancelled": 1}
                    assert server.observations.find("site-c") == []
                    assert await store.list_observations("site-c") == []
                    session = client.session(1)
                    await _until(lambda: not session.reporter.observations)  # the device forgot it too

                    r = await http.post(url, json={"paths": []}, headers=AUTH)
                    assert r.status_code == 400
                    r = await http.put(url, json={"paths": PATHS}, headers=AUTH)
                    assert r.status_code == 405
            finally:
                await client.stop()
                await server.stop()

    run(main(), timeout=60)
