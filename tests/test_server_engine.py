"""The management server end to end with SPMP's own client engine (spmp.client.engine) as the device:
over CoAP and over DTLS PSK, registration → discover kept → read → write attributes → observe →
notification stored as telemetry → cancel → Send. Real UDP on 127.0.0.1, shrunk CoAP timers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from _server_helpers import FAST, make_server, run
from spmp.client import accounts, device, engine
from spmp.client import registration as registration_mod
from spmp.client.objects import StoredObject
from spmp.client.tree import ObjectTree
from spmp.lwm2m.attributes import NotificationAttributes
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.node import ObjectInstance, SingleResource
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.objects.ipso import TEMPERATURE
from spmp.store import MemoryStore, SecurityInfo

REGISTRY = default_registry()
SENSOR = "/3303/0/5700"


def _tree(uri: str, identity: str | None = None, key: bytes | None = None) -> tuple[ObjectTree, StoredObject]:
    tree = ObjectTree(REGISTRY)
    spec = accounts.ServerSpec(uri, short_server_id=1, lifetime=60, psk_identity=identity, psk_key=key)
    security, server = accounts.direct_servers([spec])
    tree.add(security)
    tree.add(server)
    tree.add(device.device_object(serial="SN-9"))
    temperature = StoredObject(TEMPERATURE)
    temperature.add_instance(0, {5700: SingleResource(5700, 20.0, TEMPERATURE.resource(5700).type)})  # type: ignore[union-attr]
    tree.add(temperature)
    return tree, temperature


async def _until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("secure", [False, True], ids=["coap", "coaps-psk"])
def test_engine_client_end_to_end(secure: bool) -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            await store.put_security(SecurityInfo("site9", "site9-id", b"site9-key"))
            server = make_server(store, discover_on_register=True, insecure=not secure)
            await server.start()
            events = server.events.subscribe(kinds={"registered", "notification", "send"})
            if secure:
                assert server.coaps_address is not None
                tree, temperature = _tree(f"coaps://127.0.0.1:{server.coaps_address[1]}", "site9-id", b"site9-key")
            else:
                await store.delete_security("site9")
                await server.psk_cache.load()  # type: ignore[union-attr]
                assert server.coap_address is not None
                tree, temperature = _tree(f"coap://127.0.0.1:{server.coap_address[1]}")
            options = registration_mod.ClientOptions(coap=FAST, local_host="127.0.0.1", deregister_timeout=1.0)
            client = engine.Lwm2mClient("site9", tree, REGISTRY, options=options)
            await client.start()
            try:
                await client.wait_registered(1)
                assert (await events.get(10)).kind == "registered"
                await _until(lambda: (r := server.registration("site9")) is not None and r.discovered is not None)
                registration = server.registration("site9")
                assert registration is not None
                assert registration.dtls_identity == ("site9-id" if secure else None)
                assert "</3303/0/5700>" in (registration.discovered or "")

                result = await server.read("site9", "/3/0")
                assert isinstance(result.node, ObjectInstance) and result.node.value(2) == "SN-9"
                assert result.content_format in (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON)
                assert (await server.read("site9", SENSOR)).node.value == 20.0  # type: ignore[union-attr]

                await server.write_attributes("site9", SENSOR, NotificationAttributes(pmin=0))
                info = await server.observe("site9", SENSOR)
                assert info.nodes
                temperature.set_value(0, SingleResource(5700, 27.5, TEMPERATURE.resource(5700).type))  # type: ignore[union-attr]
                event = await events.get(10)
                while event.kind != "notification":
                    event = await events.get(10)
                assert event.data["values"] == {SENSOR: 27.5}
                await server.sink.flush()
                assert (await store.latest_values("site9"))[SENSOR].value == 27.5
                await server.cancel_observation("site9", SENSOR)
                assert await store.list_observations("site9") == []

                await client.send(1, [SENSOR])
                event = await events.get(10)
                while event.kind != "send":
                    event = await events.get(10)
                assert event.data["values"] == {SENSOR: 27.5}
            finally:
                events.close()
                await client.stop()
                await server.stop()

    run(main())
