"""The client engine against a real CoAP peer: registration, device management, reporting, Send.

The server side is the small LwM2M peer of ``_client_peer.py`` (real CoAP over UDP on 127.0.0.1,
real codecs). CoAP timers are shrunk; assertions are on counts and values, never on speed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from _client_peer import FAST, TestServer
from spmp.client.accounts import ServerSpec, direct_servers
from spmp.client.device import device_object
from spmp.client.engine import Lwm2mClient
from spmp.client.objects import StoredObject
from spmp.client.registration import ClientOptions, SessionState
from spmp.client.tree import ObjectTree
from spmp.coap.message import Code, Request
from spmp.lwm2m import codecs
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.link import parse_discover, parse_registration
from spmp.lwm2m.node import SingleResource
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.objects.ipso import TEMPERATURE
from spmp.lwm2m.path import Path

OPTIONS = ClientOptions(
    coap=FAST, local_host="127.0.0.1", retry_initial=0.1, retry_max=0.4, bootstrap_timeout=5.0, deregister_timeout=1.0
)
REGISTRY = default_registry()


def run(coro: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)

    asyncio.run(bounded())


def make_tree(specs: list[ServerSpec]) -> tuple[ObjectTree, StoredObject]:
    tree = ObjectTree(REGISTRY)
    security, server = direct_servers(specs)
    tree.add(security)
    tree.add(server)
    tree.add(device_object(serial="SN-1", battery_level=87))
    temperature = StoredObject(TEMPERATURE)
    temperature.add_instance(0, {5700: SingleResource(5700, 20.0, TEMPERATURE.resource(5700).type)})  # type: ignore[union-attr]
    tree.add(temperature)
    return tree, temperature


def set_temperature(obj: StoredObject, value: float) -> None:
    obj.set_value(0, SingleResource(5700, value, TEMPERATURE.resource(5700).type))  # type: ignore[union-attr]


@asynccontextmanager
async def running(
    lifetime: int = 60, storing: bool = True, store_limit: int = 1000
) -> AsyncIterator[tuple[TestServer, Lwm2mClient, StoredObject]]:
    server = await TestServer.start()
    tree, temperature = make_tree(
        [ServerSpec(server.uri, short_server_id=7, lifetime=lifetime, notification_storing=storing)]
    )
    options = dataclasses.replace(OPTIONS, store_limit=store_limit)
    client = Lwm2mClient("dev-1", tree, REGISTRY, options=options)
    await client.start()
    try:
        await client.wait_registered(7)
        yield server, client, temperature
    finally:
        await client.stop()
        await server.close()


def scenario(body: Callable[[TestServer, Lwm2mClient, StoredObject], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        async with running(**kwargs) as (server, client, temperature):
            await body(server, client, temperature)

    run(main())


# -- registration -------------------------------------------------------------------------------------------


def test_register_payload_and_params_then_deregister_on_stop() -> None:
    async def main() -> None:
        async with running(lifetime=60) as (server, client, _):
            reg = server.seen.registers[0]
            assert "ep=dev-1" in reg.query
            assert "lt=60" in reg.query
            assert "lwm2m=1.1" in reg.query
            assert "b=U" in reg.query
            objects = parse_registration(reg.payload)
            assert objects.versions[3] == "1.1"
            assert Path.parse("/1/0") in objects.instances
            assert Path.parse("/3/0") in objects.instances
            assert 0 not in objects.versions  # the Security object is never announced
            assert set(objects.content_formats) >= {60, 110, 112, 11542, 11543}
            assert client.session(7).state is SessionState.REGISTERED
        assert server.seen.deregisters == ["rd/1"]

    run(main())


def test_update_before_lifetime_expires() -> None:
    async def body(server: TestServer, client: Lwm2mClient, _: StoredObject) -> None:
        await server.wait_for(lambda: len(server.seen.updates) >= 2, timeout=10)
        location, query, payload = server.seen.updates[0]
        assert location == "rd/1"
        assert query == () and payload == ""  # nothing changed: an empty Update
        assert len(server.seen.registers) == 1

    scenario(body, lifetime=2)


def test_registration_update_trigger_and_objects_change() -> None:
    async def body(server: TestServer, client: Lwm2mClient, temperature: StoredObject) -> None:
        response = await server.request(Request(Code.POST, "1/0/8"))
        assert response.code == Code.CHANGED
        await server.wait_for(lambda: len(server.seen.updates) >= 1)
        assert server.seen.updates[0][2] == ""
        # A new instance changes the object list: the next Update carries the payload.
        create = codecs.encode(_temperature_instance(5, 3.5), Path.of(3303), ContentFormat.TLV, REGISTRY)
        response = await server.request(Request(Code.POST, "3303", payload=create, content_format=ContentFormat.TLV))
        assert response.code == Code.CREATED
        assert response.location_path == ("3303", "5")
        await server.wait_for(lambda: any("3303/5" in u[2] for u in server.seen.updates))

    scenario(body)


def _temperature_instance(iid: int, value: float) -> Any:
    from spmp.lwm2m.node import instance_from_model

    return instance_from_model(TEMPERATURE, iid, {5700: value})


def test_reregister_when_update_gets_404() -> None:
    async def body(server: TestServer, client: Lwm2mClient, _: StoredObject) -> None:
        server.active.clear()  # the server forgets the registration
        await server.request(Request(Code.POST, "1/0/8"))
        await server.wait_for(lambda: len(server.seen.registers) == 2)
        await client.wait_registered(7)
        assert client.session(7).location == ("rd", "2")

    scenario(body)


# -- device management ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt",
    [
        ContentFormat.TLV,
        ContentFormat.SENML_JSON,
        ContentFormat.SENML_CBOR,
        ContentFormat.LWM2M_JSON,
        ContentFormat.LWM2M_CBOR,
    ],
)
def test_read_instance_in_every_multi_format(fmt: ContentFormat) -> None:
    async def body(server: TestServer, client: Lwm2mClient, _: StoredObject) -> None:
        response = await server.request(Request(Code.GET, "3/0", accept=fmt))
        assert response.code == Code.CONTENT, response.payload
        assert response.content_format == fmt
        node = codecs.decode(response.payload, Path.of(3, 0), fmt, REGISTRY)
        assert node.value(0) == "SPMP"  # type: ignore[union-attr]
        assert node.value(9) == 87  # type: ignore[union-attr]

    scenario(body)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [(ContentFormat.TEXT, "SPMP"), (ContentFormat.CBOR, "SPMP"), (None, "SPMP"), (ContentFormat.TLV, "SPMP")],
)
def test_read_resource_formats(fmt: ContentFormat | None, expected: str) -> None:
    async def body(server: TestServer, client: Lwm2mClient, _: StoredObject) -> None:
        response = await server.request(Request(Code.GET, "3/0/0", accept=fmt))
        assert response.code == Code.CONTENT
        used = response.content_format
        assert used == (fmt if fmt is not None else ContentFormat.TEXT)
        node = codecs.decode(response.payload, Path.of(3, 0, 0), used, REGISTRY)
        assert node.value == expected  # type: ignore[union-attr]

    scenario(body)


def test_read_errors() -> None:
    async def body(server: TestServer, client: Lwm2mClient, _: StoredObject) -> None:
        assert (await server.request(Request(Code.GET, "3/0/0", accept=1234))).code == Code.NOT_ACCEPTABLE
        assert (await server.request(Request(Code.GET, "3/0", accept=ContentFormat.TEXT))).code == Code.NOT_ACCEPTABLE
        missing = await server.request(Request(Code.GET, "3/7"))
        assert missing.code == Code.NOT_FOUND
        assert b"/3/7" in missing.payload  # the reason travels as diagnostic payload
        assert (await server.request(Request(Code.GET, "0/0"))).code == Code.UNAUTHORIZED
        assert (await server.request(Request(Code.GET, "3/0/4"))).code == Code.METHOD_NOT_ALLOWED

    scenario(body)


def test_write_replace_partial_and_content_format_errors() -> None:
    async def body(server: TestServer, client: Lwm2mClient, _: StoredObject) -> None:
        ok = await server.request(Request(Code.PUT, "1/0/1", payload=b"120", content_format=ContentFormat.TEXT))
        assert ok.code == Code.CHANGED
        value = await server.request(Request(Code.GET, "1/0/1", accept=ContentFormat.TEXT))
        assert value.payload == b"120"
        # The lifetime changed: the client tells the server with an Update carrying lt.
        await server.wait_for(lambda: any("lt=120" in u[1] for u in server.seen.updates))
        partial = codecs.encode(
            _server_instance_values({2: 1, 3: 30}), Path.of(1, 0), ContentFormat.SENML_JSON, REGISTRY
        )
        response = await server.request(
            Request(Code.POST, "1/0", payload=partial, content_format=ContentFormat.SENML_JSON)
        )
        assert response.code == Code.CHANGED
        read = await server.request(Request(Code.GET, "1/0", accept=ContentFormat.SENML_JSON))
        node = codecs.decode(read.payload, Path.of(1, 0), ContentFormat.SENML_JSON, REGISTRY)
        assert node.value(1) == 120 and node.value(2) == 1 and node.value(3) == 30  # type: ignore[union-attr]
        bad_cf = await server.request(Request(Code.PUT, "1/0/1", payload=b"1", content_format=9999))
        assert bad_cf.code == Code.UNSUPPORTED_CONTENT_FORMAT
        bad_value = await server.request(Request(Code.PUT, "1/0/1", payload=b"abc", content_format=ContentFormat.TEXT))
        assert bad_value.code == Code.BAD_REQUEST
        read_only = await server.request(Request(Code.PUT, "3/0/0", payload=b"x", content_format=ContentFormat.TEXT))
        assert read_only.code == Code.METHOD_NOT_ALLOWED

    scenario(body)


def _server_instance_values(values: dict[int, int]) -> Any:
    from spmp.lwm2m.node import instance_from_model
    from spmp.lwm2m.objects.server import SERVER

    return instance_from_model(SERVER, 0, values)


def test_execute_with_arguments_create_and_delete() -> None:
    async def body(server: TestServer, client: Lwm2mClient, _: StoredObject) -> None:
        calls: list[dict[int, str | None]] = []
        device = client.tree.enabler(3)
        assert isinstance(device, StoredObject)
        device.set_executor(4, lambda iid, args: calls.append(dict(args)))
        response = await server.request(Request(Code.POST, "3/0/4", payload=b"0,1='now'"))
        assert response.code == Code.CHANGED
        assert calls == [{0: None, 1: "now"}]
        bad = await server.request(Request(Code.POST, "3/0/4", payload=b"x"))
        assert bad.code == Code.BAD_REQUEST
        payload = codecs.encode(_temperature_instance(3, 1.5), Path.of(3303), ContentFormat.TLV, REGISTRY)
        created = await server.request(Request(Code.POST, "3303", payload=payload, content_format=ContentFormat.TLV))
        assert created.code == Code.CREATED and created.location_path == ("3303", "3")
        again = await server.request(Request(Code.POST, "3303", payload=payload, content_format=ContentFormat.TLV))
        assert again.code == Code.BAD_REQUEST
        deleted = await server.request(Request(Code.DELETE, "3303/3"))
        assert deleted.code == Code.DELETED
        assert (await server.request(Request(Code.GET, "3303/3"))).code == Code.NOT_FOUND
        assert (await server.request(Request(Code.DELETE, "3/0"))).code == Code.METHOD_NOT_ALLOWED

    scenario(body)


def test_composite_read_and_write() -> None:
    async def body(server: TestServer, client: Lwm2mClient, _: StoredObject) -> None:
        paths = [Path.parse("/3/0/0"), Path.parse("/3303/0/5700"), Path.parse("/3/0/99")]
        codec = codecs.multi_codec_for(ContentFormat.SENML_CBOR)
        response = await server.request(
            Request(Code.FETCH, "", payload=codec.encode_paths(paths), content_format=ContentFormat.SENML_CBOR)
        )
        assert response.code == Code.CONTENT, response.payload
        nodes = codecs.decode_nodes(response.payload, ContentFormat.SENML_CBOR, REGISTRY)
        assert nodes[Path.parse("/3/0/0")].value == "SPMP"  # type: ignore[union-attr]
        assert nodes[Path.parse("/3303/0/5700")].value == 20.0  # type: ignore[union-attr]
        write = codecs.encode_nodes(
            {
                Path.parse("/1/0/2"): SingleResource(2, 5, REGISTRY.object_model(1).resource(2).type),  # type: ignore[union-attr]
                Path.parse("/1/0/3"): SingleResource(3, 50, REGISTRY.object_model(1).resource(3).type),  # type: ignore[union-attr]
            },
            ContentFormat.SENML_JSON,
            REGISTRY,
        )
        changed = await server.request(Request(Code.IPATCH, "", payload=write, content_format=ContentFormat.SENML_JSON))
        assert changed.code == Code.CHANGED, changed.payload
        assert (await server.request(Request(Code.GET, "1/0/3", accept=0))).payload == b"50"
        # All or nothing: a read-only resource in the batch leaves the writable one untouched.
        refused = codecs.encode_nodes(
            {
                Path.parse("/1/0/2"): SingleResource(2, 9, REGISTRY.object_model(1).resource(2).type),  # type: ignore[union-attr]
                Path.parse("/3/0/0"): SingleResource(0, "X", REGISTRY.object_model(3).resource(0).type),  # type: ignore[union-attr]
            },
            ContentFormat.SENML_JSON,
            REGISTRY,
        )
        bad = await server.request(Request(Code.IPATCH, "", payload=refused, content_format=ContentFormat.SENML_JSON))
        assert bad.code == Code.METHOD_NOT_ALLOWED
        assert (await server.request(Request(Code.GET, "1/0/2", accept=0))).payload == b"5"

    scenario(body)


def test_discover_reports_dim_ver_and_attributes() -> None:
    async def body(server: TestServer, client: Lwm2mClient, _: StoredObject) -> None:
        ok = await server.request(Request(Code.PUT, "3/0", query=["pmin=10"]))
        assert ok.code == Code.CHANGED
        ok = await server.request(Request(Code.PUT, "3/0/9", query=["pmax=60", "gt=50", "lt=20"]))
        assert ok.code == Code.CHANGED
        bad = await server.request(Request(Code.PUT, "3/0/0", query=["gt=5"]))  # a string resource
        assert bad.code == Code.BAD_REQUEST
        bad = await server.request(Request(Code.PUT, "3/0/9", query=["bogus=1"]))
        assert bad.code == Code.BAD_REQUEST
        response = await server.request(Request(Code.GET, "3", accept=ContentFormat.LINK))
        assert response.code == Code.CONTENT
        links = {link.path: link for link in parse_discover(response.payload)}
        assert links[Path.parse("/3")].version == "1.1"
        assert links[Path.parse("/3/0")].attributes.pmin == 10
        assert links[Path.parse("/3/0/6")].dim == 1
        assert Path.parse("/3/0/4") in links  # executable resources are listed too
        one = await server.request(Request(Code.GET, "3/0/9", accept=ContentFormat.LINK))
        [link] = parse_discover(one.payload)
        assert (link.attributes.pmin, link.attributes.pmax, link.attributes.gt) == (10, 60, 50.0)

    scenario(body)


# -- information reporting -------------------------------------------------------------------------------------


async def observe(server: TestServer, path: str, accept: int = ContentFormat.TEXT) -> Any:
    assert server.client is not None
    return await server.endpoint.observe(server.client, Request(Code.GET, path, accept=accept))


async def next_values(observation: Any, count: int, timeout: float = 10.0) -> list[bytes]:
    out: list[bytes] = []

    async def collect() -> None:
        async for response in observation:
            out.append(response.payload)
            if len(out) >= count:
                return

    await asyncio.wait_for(collect(), timeout)
    return out


def test_observe_notifies_on_change_and_cancel() -> None:
    async def body(server: TestServer, client: Lwm2mClient, temperature: StoredObject) -> None:
        observation = await observe(server, "3303/0/5700")
        assert observation.active and observation.response.payload == b"20"
        set_temperature(temperature, 21.0)
        assert await next_values(observation, 1) == [b"21"]
        set_temperature(temperature, 21.0)  # no change: no notification
        set_temperature(temperature, 22.5)
        assert await next_values(observation, 1) == [b"22.5"]
        assert len(client.session(7).reporter.observations) == 1
        response = await observation.deregister()
        assert response.code == Code.CONTENT
        assert client.session(7).reporter.observations == {}

    scenario(body)


def test_observe_honours_gt_lt_st_and_pmax() -> None:
    async def body(server: TestServer, client: Lwm2mClient, temperature: StoredObject) -> None:
        ok = await server.request(Request(Code.PUT, "3303/0/5700", query=["gt=30", "lt=10", "st=5"]))
        assert ok.code == Code.CHANGED
        observation = await observe(server, "3303/0/5700")
        got: list[bytes] = []
        for value in (21.0, 22.0, 26.0, 28.0, 31.0, 29.0, 28.0):
            set_temperature(temperature, value)
            await asyncio.sleep(0.02)
        # 21, 22: under st from 20; 26: st step; 28: < st from 26; 31: crosses gt; 29: crosses gt back; 28: neither
        got = await next_values(observation, 3)
        assert got == [b"26", b"31", b"29"]
        await asyncio.sleep(0.3)
        assert observation._queue == type(observation._queue)()  # nothing more came
        # pmax=1: a notification within ~1 s even without a change.
        ok = await server.request(Request(Code.PUT, "3303/0/5700", query=["pmax=1"]))
        assert ok.code == Code.CHANGED
        assert await next_values(observation, 1, timeout=5) == [b"28"]

    scenario(body)


def test_observe_honours_pmin() -> None:
    async def body(server: TestServer, client: Lwm2mClient, temperature: StoredObject) -> None:
        ok = await server.request(Request(Code.PUT, "3303/0", query=["pmin=1"]))
        assert ok.code == Code.CHANGED
        observation = await observe(server, "3303/0/5700")
        for value in (21.0, 22.0, 23.0):
            set_temperature(temperature, value)
        # Within pmin: one notification owed, sent when pmin expires, carrying the value current then.
        assert await next_values(observation, 1, timeout=5) == [b"23"]
        await asyncio.sleep(0.3)
        assert len(observation._queue) == 0

    scenario(body)


def test_observe_instance_in_senml_and_composite_observe() -> None:
    async def body(server: TestServer, client: Lwm2mClient, temperature: StoredObject) -> None:
        observation = await observe(server, "3303/0", accept=ContentFormat.SENML_JSON)
        set_temperature(temperature, 30.0)
        [payload] = await next_values(observation, 1)
        node = codecs.decode(payload, Path.of(3303, 0), ContentFormat.SENML_JSON, REGISTRY)
        assert node.value(5700) == 30.0  # type: ignore[union-attr]
        codec = codecs.multi_codec_for(ContentFormat.SENML_CBOR)
        assert server.client is not None
        composite = await server.endpoint.observe(
            server.client,
            Request(
                Code.FETCH,
                "",
                payload=codec.encode_paths([Path.parse("/3303/0/5700"), Path.parse("/3/0/0")]),
                content_format=ContentFormat.SENML_CBOR,
            ),
        )
        assert composite.active
        set_temperature(temperature, 31.0)
        [payload] = await next_values(composite, 1)
        nodes = codecs.decode_nodes(payload, ContentFormat.SENML_CBOR, REGISTRY)
        assert nodes[Path.parse("/3303/0/5700")].value == 31.0  # type: ignore[union-attr]

    scenario(body)


# -- Send and notification storing -----------------------------------------------------------------------------------


def test_send_current_values_and_series() -> None:
    async def body(server: TestServer, client: Lwm2mClient, temperature: StoredObject) -> None:
        await client.send(7, ["/3303/0/5700", "/3/0/9"])
        content_format, payload = server.seen.sends[0]
        assert content_format == ContentFormat.SENML_CBOR
        [entry] = codecs.decode_timestamped(payload, ContentFormat.SENML_CBOR, REGISTRY)
        assert entry.timestamp is not None
        assert entry.nodes[Path.parse("/3303/0/5700")].value == 20.0  # type: ignore[union-attr]
        from datetime import UTC, datetime

        kind = TEMPERATURE.resource(5700).type  # type: ignore[union-attr]
        series = [
            (
                datetime(2024, 1, 1, 0, 0, i, tzinfo=UTC),
                {Path.parse("/3303/0/5700"): SingleResource(5700, float(i), kind)},
            )
            for i in range(3)
        ]
        await client.send_series(7, series)
        decoded = codecs.decode_timestamped(server.seen.sends[1][1], ContentFormat.SENML_CBOR, REGISTRY)
        assert [e.nodes[Path.parse("/3303/0/5700")].value for e in decoded] == [0.0, 1.0, 2.0]  # type: ignore[union-attr]

    scenario(body)


def test_notification_storing_delivers_in_order_after_reconnect() -> None:
    async def body(server: TestServer, client: Lwm2mClient, temperature: StoredObject) -> None:
        observation = await observe(server, "3303/0/5700")
        reporter = client.session(7).reporter
        server.switch.down = True
        set_temperature(temperature, 1.0)  # this CON notification times out: the server is unreachable
        await server.wait_for(lambda: not reporter.online, timeout=10)
        for value in (2.0, 3.0, 4.0):
            set_temperature(temperature, value)
            await asyncio.sleep(0.02)
        await server.wait_for(lambda: reporter.stored_count == 4, timeout=10)
        server.switch.down = False
        # The client keeps retrying its Update; once it succeeds the store is flushed in order.
        got = await next_values(observation, 4, timeout=15)
        assert got == [b"1", b"2", b"3", b"4"]
        assert reporter.stats.delivered_from_store == 4
        assert reporter.online

    scenario(body)


def test_notification_store_overflow_is_counted() -> None:
    async def body(server: TestServer, client: Lwm2mClient, temperature: StoredObject) -> None:
        observation = await observe(server, "3303/0/5700")
        reporter = client.session(7).reporter
        server.switch.down = True
        set_temperature(temperature, 1.0)
        await server.wait_for(lambda: not reporter.online, timeout=10)
        for value in (2.0, 3.0, 4.0, 5.0):
            set_temperature(temperature, value)
            await asyncio.sleep(0.02)
        await server.wait_for(lambda: reporter.stats.dropped_overflow == 2, timeout=10)
        assert reporter.stored_count == 3
        server.switch.down = False
        got = await next_values(observation, 3, timeout=15)
        assert got == [b"3", b"4", b"5"]  # the oldest were dropped

    scenario(body, store_limit=3)


def test_notifications_dropped_and_counted_when_storing_is_off() -> None:
    async def body(server: TestServer, client: Lwm2mClient, temperature: StoredObject) -> None:
        await observe(server, "3303/0/5700")
        reporter = client.session(7).reporter
        server.switch.down = True
        set_temperature(temperature, 1.0)
        await server.wait_for(lambda: not reporter.online, timeout=10)
        set_temperature(temperature, 2.0)
        await server.wait_for(lambda: reporter.stats.dropped_not_storing >= 2, timeout=10)
        assert reporter.stored_count == 0

    scenario(body, storing=False)


def test_two_servers_each_with_its_own_session() -> None:
    async def main() -> None:
        first, second = await TestServer.start(), await TestServer.start()
        tree, _ = make_tree([ServerSpec(first.uri, short_server_id=1), ServerSpec(second.uri, short_server_id=2)])
        client = Lwm2mClient("dev-2", tree, REGISTRY, options=OPTIONS)
        await client.start()
        try:
            await client.wait_registered()
            assert len(first.seen.registers) == 1 and len(second.seen.registers) == 1
            assert client.session(1).local_address != client.session(2).local_address
            response = await second.request(Request(Code.GET, "1/1/0", accept=0))
            assert response.payload == b"2"
        finally:
            await client.stop()
            await first.close()
            await second.close()
        assert first.seen.deregisters == ["rd/1"] and second.seen.deregisters == ["rd/1"]

    run(main())


def test_reconnects_with_backoff_when_server_starts_late() -> None:
    async def main() -> None:
        server = await TestServer.start()
        server.switch.down = True
        tree, _ = make_tree([ServerSpec(server.uri, short_server_id=3)])
        client = Lwm2mClient("dev-3", tree, REGISTRY, options=OPTIONS)
        await client.start()
        try:
            await server.wait_for(lambda: 3 in client.sessions and client.session(3).failures >= 2, timeout=10)
            assert client.session(3).state in (SessionState.UNREACHABLE, SessionState.CONNECTING)
            server.switch.down = False
            await client.wait_registered(3, timeout=10)
            assert len(server.seen.registers) == 1
        finally:
            await client.stop()
            await server.close()

    run(main())
