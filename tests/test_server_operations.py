"""Downlink operations, observations, Send and queue mode of the management server, end to end over
real UDP on 127.0.0.1 against a tiny LwM2M client written here on spmp.coap.Endpoint: it serves an
ObjectTree (Device /3 and Digital Output /3201) through the real codecs, as a device would."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from _server_helpers import FAST, make_server, run
from spmp.client.objects import StoredObject
from spmp.client.tree import ObjectTree
from spmp.coap.endpoint import Endpoint
from spmp.coap.message import Code, Request, Response
from spmp.coap.observe import ServedObservation
from spmp.coap.transport import Peer
from spmp.coap.udp import UdpTransport
from spmp.lwm2m import codecs
from spmp.lwm2m.attributes import NotificationAttributes
from spmp.lwm2m.codecs import TimestampedNodes
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.execute import parse_arguments
from spmp.lwm2m.link import DiscoverLink, format_discover
from spmp.lwm2m.model import ResourceType
from spmp.lwm2m.node import Object, ObjectInstance, SingleResource
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.path import ROOT, Path
from spmp.lwm2m.response import OperationError
from spmp.server import ClientNotRegistered, DeviceError, DeviceTimeout, InvalidArgument, ManagementServer
from spmp.store import MemoryStore

REGISTRY = default_registry()
ON_OFF = Path.of(3201, 0, 5550)


class TinyClient:
    """Just enough of an LwM2M client to exercise the server: CoAP in, tree operations, CoAP out."""

    def __init__(self) -> None:
        self.tree = ObjectTree(REGISTRY)
        device_model = REGISTRY.object_model(3)
        output_model = REGISTRY.object_model(3201)
        assert device_model is not None and output_model is not None
        device = StoredObject(device_model)
        device.add_instance(
            0, {0: SingleResource(0, "SPMP", ResourceType.STRING), 1: SingleResource(1, "tiny", ResourceType.STRING)}
        )
        self.executed: list[dict[int, str | None]] = []
        device.set_executor(4, lambda iid, args: self.executed.append(dict(args)))
        output = StoredObject(output_model)
        output.add_instance(0, {5550: SingleResource(5550, False, ResourceType.BOOLEAN)})
        self.tree.add(device)
        self.tree.add(output)
        self.attributes: dict[Path, tuple[str, ...]] = {}
        self.observers: list[tuple[ServedObservation, Path, int]] = []
        self.requests: list[tuple[int, str]] = []
        self.location = ""
        self.endpoint: Endpoint | None = None
        self.server: Peer | None = None

    async def start(self, server: ManagementServer) -> None:
        self.endpoint = Endpoint(await UdpTransport.bind("127.0.0.1", 0), self.handle, params=FAST)
        assert server.coap_address is not None
        self.server = Peer(*server.coap_address)

    async def close(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.close()

    async def uplink(self, request: Request) -> Response:
        assert self.endpoint is not None and self.server is not None
        return await self.endpoint.request(self.server, request)

    async def register(self, name: str, query: tuple[str, ...] = ("lt=60", "lwm2m=1.1")) -> Response:
        payload = b"</3/0>,</3201/0>"
        request = Request(Code.POST, "rd", query=[f"ep={name}", *query], payload=payload, content_format=40)
        response = await self.uplink(request)
        assert response.code == Code.CREATED, response
        self.location = "/".join(response.location_path)
        return response

    async def update(self) -> Response:
        return await self.uplink(Request(Code.POST, self.location))

    def set_on_off(self, value: bool) -> None:
        self.tree.enabler(3201).set_value(0, SingleResource(5550, value, ResourceType.BOOLEAN))  # type: ignore[attr-defined]
        for served, path, fmt in self.observers:
            if served.active:
                payload = codecs.encode(self.tree.read(path), path, fmt, REGISTRY)
                served.notify(Response(Code.CONTENT, payload, content_format=fmt))

    async def handle(self, request: Request) -> Response:
        path = Path(tuple(int(s) for s in request.path)) if request.path else ROOT
        self.requests.append((request.method, str(path)))
        fmt = request.content_format
        try:
            if request.method == Code.GET and request.accept == ContentFormat.LINK:
                node = self.tree.read(path)
                links = [DiscoverLink(path)]
                if isinstance(node, ObjectInstance):
                    links += [DiscoverLink(path.child(r)) for r in node.resources]
                elif path.is_object:  # TS: the object, its instances and their resources
                    for iid in self.tree.enabler(path.ids[0]).instance_ids():
                        instance = self.tree.read(path.child(iid))
                        assert isinstance(instance, ObjectInstance)
                        links.append(DiscoverLink(path.child(iid)))
                        links += [DiscoverLink(path.child(iid).child(r)) for r in instance.resources]
                return Response(Code.CONTENT, format_discover(links).encode(), content_format=ContentFormat.LINK)
            if request.method == Code.GET:
                if request.observe == 1:
                    return Response(Code.CONTENT, b"")  # deregistered by the endpoint
                out = request.accept if request.accept is not None else ContentFormat.TLV
                payload = codecs.encode(self.tree.read(path), path, out, REGISTRY)
                if request.observe == 0:
                    assert self.endpoint is not None
                    self.observers.append((self.endpoint.accept_observation(request), path, out))
                return Response(Code.CONTENT, payload, content_format=out)
            if request.method == Code.FETCH:
                assert fmt is not None
                paths = codecs.multi_codec_for(fmt).decode_paths(request.payload)
                nodes = {p: self.tree.read(p) for p in paths}
                return Response(Code.CONTENT, codecs.encode_nodes(nodes, fmt, REGISTRY), content_format=fmt)
            if request.method == Code.PUT and not request.payload:
                self.attributes[path] = request.query
                return Response(Code.CHANGED)
            if request.method in (Code.PUT, Code.POST) and fmt is not None:
                node = codecs.decode(request.payload, path, fmt, REGISTRY)
                if path.is_object:
                    if isinstance(node, Object):  # SenML names the new instance in full: /o/i/r
                        (node,) = node.instances.values()
                    assert isinstance(node, ObjectInstance)
                    iid = self.tree.create(path, node)
                    return Response(Code.CREATED, location_path=f"{path.ids[0]}/{iid}")
                self.tree.write(path, node, replace=request.method == Code.PUT)
                return Response(Code.CHANGED)
            if request.method == Code.POST and path.is_resource:
                self.tree.execute(path, parse_arguments(request.payload))
                return Response(Code.CHANGED)
            if request.method == Code.DELETE:
                self.tree.delete(path)
                return Response(Code.DELETED)
        except OperationError as exc:
            return Response(exc.code, exc.reason.encode())
        return Response(Code.METHOD_NOT_ALLOWED)


async def _until(condition: object, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_every_downlink_operation_against_a_11_client() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            server = make_server(store, discover_on_register=True)
            await server.start()
            client = TinyClient()
            events = server.events.subscribe()
            try:
                await client.start(server)
                await client.register("tiny1")
                # Discover ran on registration, and what it learned is kept in the store.
                await _until(lambda: (r := server.registration("tiny1")) is not None and r.discovered is not None)
                stored = await store.get_registration("tiny1")
                assert stored is not None and stored.discovered is not None
                assert "</3/0/0>" in stored.discovered and "</3201/0>" in stored.discovered

                result = await server.read("tiny1", "/3/0/0")
                assert result.node == SingleResource(0, "SPMP", ResourceType.STRING)
                assert result.content_format == ContentFormat.TEXT
                result = await server.read("tiny1", "/3/0")
                assert result.content_format == ContentFormat.SENML_CBOR
                assert isinstance(result.node, ObjectInstance) and result.node.value(1) == "tiny"
                tlv = await server.read("tiny1", "/3/0", content_format=ContentFormat.TLV)
                assert tlv.content_format == ContentFormat.TLV and tlv.node == result.node

                composite = await server.read_composite("tiny1", ["/3/0/0", "/3201/0/5550"])
                assert composite[Path.of(3, 0, 0)] == SingleResource(0, "SPMP", ResourceType.STRING)

                await server.write("tiny1", ON_OFF, SingleResource(5550, True, ResourceType.BOOLEAN))
                assert (await server.read("tiny1", ON_OFF)).node == SingleResource(5550, True, ResourceType.BOOLEAN)
                partial = ObjectInstance(0, {5550: SingleResource(5550, False, ResourceType.BOOLEAN)})
                await server.write("tiny1", "/3201/0", partial, replace=False)
                with pytest.raises(InvalidArgument):
                    await server.write("tiny1", ON_OFF, SingleResource(5550, "yes", ResourceType.STRING))

                await server.execute("tiny1", "/3/0/4", "0='now'")
                assert client.executed == [{0: "now"}]
                with pytest.raises(DeviceError) as refused:
                    await server.execute("tiny1", "/3/0/0")
                assert refused.value.code == 0x85

                created = await server.create(
                    "tiny1", "/3201", ObjectInstance(None, {5550: SingleResource(5550, True, ResourceType.BOOLEAN)})
                )
                assert created.ids[0] == 3201 and created.ids[1] != 0
                await server.delete("tiny1", created)
                with pytest.raises(DeviceError) as missing:
                    await server.read("tiny1", created)
                assert missing.value.code == 0x84

                links = await server.discover("tiny1", "/3201/0")
                assert [link.target for link in links] == ["/3201/0", "/3201/0/5550"]

                await server.write_attributes("tiny1", ON_OFF, NotificationAttributes(pmin=1, pmax=30))
                assert client.attributes[ON_OFF] == ("pmin=1", "pmax=30")
                with pytest.raises(InvalidArgument):
                    await server.write_attributes("tiny1", ON_OFF, "pmin=x")

                info = await server.observe("tiny1", ON_OFF)
                assert info.nodes[ON_OFF] == SingleResource(5550, False, ResourceType.BOOLEAN)
                assert len(await store.list_observations("tiny1")) == 1
                client.set_on_off(True)
                event = await _next(events, "notification")
                assert event.data["values"] == {"/3201/0/5550": True}
                await server.sink.flush()
                points = await store.query_telemetry("tiny1", "/3201")
                assert [p.value for p in points][-1] is True

                await server.cancel_observation("tiny1", ON_OFF, active=True)
                assert not client.observers[0][0].active
                assert await store.list_observations("tiny1") == []
                assert (await _next(events, "observation-cancelled")).data["active"] is True

                # Send: timestamped SenML CBOR from the client, stored at the client's time.
                when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
                series = [TimestampedNodes(when, {Path.of(3, 0, 1): SingleResource(1, "sent", ResourceType.STRING)})]
                body = codecs.encode_timestamped(series, ContentFormat.SENML_CBOR, REGISTRY)
                response = await client.uplink(
                    Request(Code.POST, "dp", payload=body, content_format=ContentFormat.SENML_CBOR)
                )
                assert response.code == Code.CHANGED
                assert (await _next(events, "send")).data["values"] == {"/3/0/1": "sent"}
                await server.sink.flush()
                sent = await store.query_telemetry("tiny1", "/3/0/1", since=when, until=when + timedelta(seconds=1))
                assert [(p.value, p.timestamp) for p in sent] == [("sent", when)]
                bad = await client.uplink(
                    Request(Code.POST, "dp", payload=b"\xff\x00", content_format=ContentFormat.SENML_CBOR)
                )
                assert bad.code == Code.BAD_REQUEST

                with pytest.raises(ClientNotRegistered):
                    await server.read("nobody", "/3/0")
                with pytest.raises(InvalidArgument):
                    await server.read("tiny1", "3/0")
            finally:
                events.close()
                await client.close()
                await server.stop()

    run(main())


async def _next(events: object, kind: str) -> object:
    while True:
        event = await events.get(10)  # type: ignore[attr-defined]
        if event.kind == kind:
            return event


def test_a_10_client_is_read_in_tlv() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            server = make_server(store)
            await server.start()
            client = TinyClient()
            try:
                await client.start(server)
                await client.register("old", ("lt=60", "lwm2m=1.0"))
                result = await server.read("old", "/3/0")
                assert result.content_format == ContentFormat.TLV
                with pytest.raises(InvalidArgument):
                    await server.read_composite("old", ["/3/0/0"])
            finally:
                await client.close()
                await server.stop()

    run(main())


def test_queue_mode_holds_requests_until_the_client_wakes() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            server = make_server(store, awake_time=1.5)  # the read right after registering is well inside it
            await server.start()
            client = TinyClient()
            try:
                await client.start(server)
                await client.register("sleepy", ("lt=60", "lwm2m=1.1", "Q"))
                registration = server.registration("sleepy")
                assert registration is not None and registration.queue_mode
                # Awake right after registering: sent directly.
                assert (await server.read("sleepy", "/3/0/0")).node.value == "SPMP"  # type: ignore[union-attr]
                await asyncio.sleep(1.7)  # past awake_time: asleep
                seen = len(client.requests)
                pending = asyncio.ensure_future(server.read("sleepy", "/3/0/1"))
                await asyncio.sleep(0.3)
                assert not pending.done() and len(client.requests) == seen  # queued, nothing sent
                assert (await client.update()).code == Code.CHANGED
                result = await asyncio.wait_for(pending, 10)
                assert result.node.value == "tiny"  # type: ignore[union-attr]
                await asyncio.sleep(1.7)  # past awake_time: asleep again
                with pytest.raises(DeviceTimeout) as waited:
                    await server.read("sleepy", "/3/0/1", timeout=0.4)
                assert "queued" in str(waited.value) and waited.value.seconds >= 0.4
            finally:
                await client.close()
                await server.stop()

    run(main())


def test_reregistration_reestablishes_observations() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            server = make_server(store)
            await server.start()
            client = TinyClient()
            try:
                await client.start(server)
                await client.register("again")
                await server.observe("again", ON_OFF)
                first = await store.list_observations("again")
                await client.register("again")
                await _until(lambda: len(client.observers) == 2)
                await _until(lambda: server.observations.count() == 1)
                second = await store.list_observations("again")
                await _until(lambda: len(second) == 1)
                registration = server.registration("again")
                assert registration is not None
                assert second[0].registration_id == registration.registration_id != first[0].registration_id
                assert second[0].paths == ("/3201/0/5550",)
            finally:
                await client.close()
                await server.stop()

    run(main())
