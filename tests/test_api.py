"""REST API against a real ManagementServer and a real LwM2M device over CoAP on loopback.

The device is a small LwM2M client built on spmp.coap.Endpoint, the client object tree and the real
codecs (``Device`` below: it can be told to fail or to stay silent, which error mapping needs); one
test runs SPMP's own client engine instead. The API is called through httpx's ASGI transport;
tests/test_api_http.py covers the real HTTP server and SSE.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from _server_helpers import FAST, coap_client, make_server, needs_libcoap
from spmp.api import create_app
from spmp.client.objects import StoredObject
from spmp.client.tree import ObjectTree
from spmp.coap.endpoint import Endpoint
from spmp.coap.message import Code, Request, Response
from spmp.coap.observe import ServedObservation
from spmp.coap.transport import Peer
from spmp.coap.udp import UdpTransport
from spmp.lwm2m import codecs
from spmp.lwm2m.attributes import parse_query
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import Lwm2mError
from spmp.lwm2m.execute import parse_arguments
from spmp.lwm2m.link import DiscoverLink, format_discover
from spmp.lwm2m.node import Object, ObjectInstance, SingleResource, instance_from_model
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.path import Path
from spmp.lwm2m.response import OperationError, ResponseCode
from spmp.server import ManagementServer
from spmp.store import MemoryStore, Store, TelemetryPoint

TOKEN = "test-token-0123456789abcdef"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ the device


class Device:
    """A minimal LwM2M client: Device (3), Voltage (3316) and Digital Output (3201) objects."""

    def __init__(self, name: str, endpoint: Endpoint) -> None:
        self.name = name
        self.endpoint = endpoint
        self.registry = default_registry()
        self.tree = ObjectTree(self.registry)
        self.executed: list[tuple[Path, bytes]] = []
        self.attributes: dict[Path, list[str]] = {}
        self.observers: list[tuple[Path, int, ServedObservation]] = []
        self.location = ""
        self.fail_with: ResponseCode | None = None
        """Answer every request with this code (to test error mapping)."""
        self.silent = False
        """Never answer (to test timeouts)."""
        self.voltage = StoredObject(self.registry.get(3316))  # type: ignore[arg-type]
        self._build()
        self.tree.listeners.append(self._changed)
        endpoint.handler = self.handle

    def _build(self) -> None:
        device_model = self.registry.get(3)
        assert device_model is not None
        device = StoredObject(device_model)
        values: dict[int, Any] = {0: "SPMP", 1: "Charger-1", 6: {0: 1, 1: 5}, 9: 80, 11: {0: 0}, 13: NOW, 15: "UTC"}
        device.add_instance(0, instance_from_model(device_model, 0, values))
        device.set_executor(4, lambda iid, args: self.executed.append((Path.of(3, iid, 4), b"")))
        self.tree.add(device)
        self.voltage.add_instance(0, instance_from_model(self.voltage.model, 0, {5700: 48.5, 5701: "V"}))
        self.tree.add(self.voltage)
        output_model = self.registry.get(3201)
        assert output_model is not None
        outputs = StoredObject(output_model)
        outputs.add_instance(0, instance_from_model(output_model, 0, {5550: True, 5750: "BTS"}))
        self.tree.add(outputs)

    @classmethod
    async def register(cls, server: ManagementServer, name: str = "dev1", lifetime: int = 300) -> Device:
        device = cls(name, Endpoint(await UdpTransport.bind("127.0.0.1", 0), params=FAST))
        assert server.coap_address is not None
        links = ",".join(f"<{p}>" for p in device.tree.instance_paths())
        request = Request(
            Code.POST,
            "rd",
            query=[f"ep={name}", f"lt={lifetime}", "lwm2m=1.1", "b=U"],
            payload=links.encode(),
            content_format=ContentFormat.LINK,
        )
        response = await device.endpoint.request(Peer("127.0.0.1", server.coap_address[1]), request)
        assert response.code == Code.CREATED, response
        device.location = "/".join(response.location_path)
        return device

    async def close(self) -> None:
        await self.endpoint.close()

    def set_voltage(self, value: float) -> None:
        self.voltage.set_value(0, SingleResource(5700, value, self.voltage.model.resources[5700].type))

    def _changed(self, path: Path) -> None:
        for target, fmt, served in list(self.observers):
            if path.starts_with(target) or target.starts_with(path):
                node = self.tree.read(target)
                served.notify(
                    Response(Code.CONTENT, codecs.encode(node, target, fmt, self.registry), content_format=fmt)
                )

    async def handle(self, request: Request) -> Response:
        if self.silent:
            await asyncio.sleep(3600)
        if self.fail_with is not None:
            return Response(self.fail_with, b"told to fail")
        try:
            return self._serve(request)
        except OperationError as exc:
            return Response(exc.code, exc.reason.encode()[:100])
        except (Lwm2mError, ValueError) as exc:
            return Response(Code.BAD_REQUEST, str(exc).encode()[:100])

    def _serve(self, request: Request) -> Response:
        path = Path.of(*(int(s) for s in request.path))
        method, payload, fmt = request.method, request.payload, request.content_format
        if method == Code.GET and request.accept == ContentFormat.LINK:
            return self._discover(path)
        if method == Code.GET:
            accept = request.accept if request.accept is not None else ContentFormat.SENML_CBOR
            node = self.tree.read(path)
            body = codecs.encode(node, path, accept, self.registry)
            if request.observe == 0:
                served = self.endpoint.accept_observation(request)
                self.observers.append((path, accept, served))
            elif request.observe == 1:
                self.observers = [o for o in self.observers if o[2].token != request.token]
            return Response(Code.CONTENT, body, content_format=accept)
        if method == Code.PUT and not payload:
            self.attributes[path] = parse_query(list(request.query)).to_query()
            return Response(Code.CHANGED)
        if method == Code.PUT or (method == Code.POST and path.is_object_instance):
            node = codecs.decode(payload, path, fmt or ContentFormat.TEXT, self.registry)
            self.tree.write(path, node, replace=method == Code.PUT)
            return Response(Code.CHANGED)
        if method == Code.POST and path.is_resource:
            self.tree.execute(path, parse_arguments(payload))
            self.executed.append((path, payload))
            return Response(Code.CHANGED)
        if method == Code.POST and path.is_object:
            node = codecs.decode(payload, path, fmt or ContentFormat.TLV, self.registry)
            instance = next(iter(node.instances.values())) if isinstance(node, Object) else node
            assert isinstance(instance, ObjectInstance)
            created = self.tree.create(path, instance)
            return Response(Code.CREATED, location_path=[str(path.object_id), str(created)])
        if method == Code.DELETE:
            self.tree.delete(path)
            return Response(Code.DELETED)
        if method == Code.FETCH:
            assert fmt is not None
            codec = codecs.multi_codec_for(fmt)
            nodes = {p: self.tree.read(p) for p in codec.decode_paths(payload)}
            return Response(Code.CONTENT, codec.encode_nodes(nodes, self.registry), content_format=fmt)
        if method == Code.IPATCH:
            assert fmt is not None
            for target, node in codecs.decode_nodes(payload, fmt, self.registry).items():
                assert node is not None
                self.tree.write(target, node, replace=False)
            return Response(Code.CHANGED)
        return Response(Code.METHOD_NOT_ALLOWED)

    def _discover(self, path: Path) -> Response:
        node = self.tree.read(path)
        paths = [path]
        instances = node.instances.values() if isinstance(node, Object) else [node]
        for instance in instances:
            if isinstance(instance, ObjectInstance) and instance.id is not None:
                base = path if path.is_object_instance else path.child(instance.id)
                paths += ([base] if base != path else []) + [base.child(r) for r in instance.resources]
        entries = [DiscoverLink(p) for p in paths]
        return Response(Code.CONTENT, format_discover(entries).encode(), content_format=ContentFormat.LINK)


# ------------------------------------------------------------------------------------------ harness


@dataclass
class Env:
    server: ManagementServer
    store: Store
    device: Device
    http: httpx.AsyncClient


@asynccontextmanager
async def stack(**server_options: Any) -> AsyncIterator[Env]:
    async with MemoryStore() as store:
        server = make_server(store, **server_options)
        await server.start()
        device = await Device.register(server)
        app = create_app(server, store, TOKEN)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://spmp", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as http:
                yield Env(server, store, device, http)
        finally:
            await device.close()
            await server.stop()


def run(test: Callable[[Env], Coroutine[Any, Any, None]], **server_options: Any) -> None:
    async def main() -> None:
        async with stack(**server_options) as env:
            await test(env)

    asyncio.run(asyncio.wait_for(main(), 60))


# ------------------------------------------------------------------------------------------ clients


def test_list_and_get_clients() -> None:
    async def body(env: Env) -> None:
        listed = (await env.http.get("/api/clients")).json()
        assert [c["endpoint"] for c in listed] == ["dev1"]
        item = listed[0]
        assert item["lwm2mVersion"] == "1.1" and item["lifetime"] == 300 and item["binding"] == "U"
        assert item["queueMode"] is False and item["secure"] is False
        assert item["address"].startswith("127.0.0.1:")
        assert item["registrationId"] == env.device.location.removeprefix("rd/")
        assert {"path": "/3/0", "version": None} in item["objectLinks"]
        assert datetime.fromisoformat(item["expiresAt"]) > datetime.fromisoformat(item["registeredAt"])
        one = await env.http.get("/api/clients/dev1")
        assert one.status_code == 200 and one.json()["endpoint"] == "dev1" and one.json()["discovered"] is None
        missing = await env.http.get("/api/clients/nobody")
        assert missing.status_code == 404 and missing.json()["error"] == "client_not_found"
        assert (await env.http.get("/api/clients/nobody/3/0/0")).status_code == 404

    run(body)


@needs_libcoap
def test_client_registered_by_libcoap_is_listed() -> None:
    async def body(env: Env) -> None:
        assert env.server.coap_address is not None
        port = env.server.coap_address[1]
        out = await coap_client(
            "-m", "post", "-t", "40", "-e", "</3/0>", f"coap://127.0.0.1:{port}/rd?ep=libcoap&lt=60"
        )
        assert "c:2.01" in out
        listed = (await env.http.get("/api/clients")).json()
        assert [c["endpoint"] for c in listed] == ["dev1", "libcoap"]
        assert listed[1]["lwm2mVersion"] == "1.0" and listed[1]["lifetime"] == 60

    run(body)


# ------------------------------------------------------------------------------------------ read


def test_read_single_multiple_instance_object_and_time() -> None:
    async def body(env: Env) -> None:
        got = await env.http.get("/api/clients/dev1/3/0/0")
        assert got.status_code == 200
        assert got.json() == {
            "path": "/3/0/0",
            "kind": "singleResource",
            "id": 0,
            "type": "STRING",
            "value": "SPMP",
            "contentFormat": ContentFormat.TEXT,
        }
        multiple = (await env.http.get("/api/clients/dev1/3/0/6")).json()
        assert multiple["kind"] == "multipleResource" and multiple["values"] == {"0": 1, "1": 5}
        when = (await env.http.get("/api/clients/dev1/3/0/13")).json()
        assert when["type"] == "TIME" and when["value"] == "2024-05-01T12:00:00Z"
        assert when["epoch"] == int(NOW.timestamp())
        instance = (await env.http.get("/api/clients/dev1/3/0", params={"format": "tlv"})).json()
        assert instance["kind"] == "instance" and instance["id"] == 0
        assert instance["contentFormat"] == ContentFormat.TLV
        assert {"kind": "singleResource", "id": 1, "type": "STRING", "value": "Charger-1"} in instance["resources"]
        whole = (await env.http.get("/api/clients/dev1/3316", params={"format": "senml-json"})).json()
        assert whole["kind"] == "object" and whole["instances"][0]["id"] == 0
        one_of_many = (await env.http.get("/api/clients/dev1/3/0/6/1")).json()
        assert one_of_many["kind"] == "resourceInstance" and one_of_many["value"] == 5

    run(body)


def test_read_errors() -> None:
    async def body(env: Env) -> None:
        absent = await env.http.get("/api/clients/dev1/3/0/2")  # the device has no serial number
        assert absent.status_code == 404
        assert absent.json()["error"] == "not_found" and absent.json()["coapCode"] == "4.04"
        bad_format = await env.http.get("/api/clients/dev1/3/0/0", params={"format": "xml"})
        assert bad_format.status_code == 400 and "format" in bad_format.json()["message"]
        bad_timeout = await env.http.get("/api/clients/dev1/3/0/0", params={"timeout": "-1"})
        assert bad_timeout.status_code == 400
        not_a_path = await env.http.get("/api/clients/dev1/3/zero")
        assert not_a_path.status_code == 400 and not_a_path.json()["error"] == "bad_request"
        for method, malformed in (
            ("GET", "3/abc"),
            ("PUT", "3/0/x"),
            ("POST", "3/0/abc/observe"),
            ("GET", "3/-1"),
            ("GET", "3/0/1/2/3"),
            ("GET", "3/70000"),
        ):
            answer = await env.http.request(method, f"/api/clients/dev1/{malformed}")
            assert answer.status_code == 400, malformed
            assert answer.json()["error"] == "bad_request", malformed
            assert "malformed path" in answer.json()["message"], malformed
        abc = (await env.http.get("/api/clients/dev1/3/abc")).json()["message"]
        assert "'/3/abc'" in abc and "LwM2M path" in abc
        env.device.fail_with = ResponseCode.METHOD_NOT_ALLOWED
        assert (await env.http.get("/api/clients/dev1/3/0/4")).status_code == 405
        env.device.fail_with = ResponseCode.NOT_ACCEPTABLE
        assert (await env.http.get("/api/clients/dev1/3/0/0")).status_code == 406
        env.device.fail_with = ResponseCode.UNSUPPORTED_CONTENT_FORMAT
        assert (await env.http.put("/api/clients/dev1/3/0/15", json={"value": "x"})).status_code == 415
        env.device.fail_with = ResponseCode.INTERNAL_SERVER_ERROR
        failed = await env.http.get("/api/clients/dev1/3/0/0")
        assert failed.status_code == 502 and failed.json()["coapCode"] == "5.00"
        assert failed.json()["error"] == "device_error" and failed.json()["message"] == "told to fail"
        env.device.fail_with = None
        env.device.silent = True
        slow = await env.http.get("/api/clients/dev1/3/0/0", params={"timeout": "0.3"})
        assert slow.status_code == 504 and slow.json()["error"] == "device_timeout"

    run(body)


# ------------------------------------------------------------------------------------------ write


def test_write_single_time_instance_and_partial() -> None:
    async def body(env: Env) -> None:
        done = await env.http.put("/api/clients/dev1/3/0/15", json={"value": "Africa/Nairobi"})
        assert done.status_code == 200 and done.json() == {"status": "CHANGED"}
        assert (await env.http.get("/api/clients/dev1/3/0/15")).json()["value"] == "Africa/Nairobi"
        later = "2025-01-02T03:04:05+01:00"
        assert (await env.http.put("/api/clients/dev1/3/0/13", json={"value": later})).status_code == 200
        assert (await env.http.get("/api/clients/dev1/3/0/13")).json()["value"] == "2025-01-02T02:04:05Z"
        instance = {"resources": [{"id": 5550, "value": False}, {"id": 5750, "value": "lamp"}]}
        assert (await env.http.put("/api/clients/dev1/3201/0", json=instance)).status_code == 200
        partial = {"resources": [{"id": 5750, "value": "BTS-2"}]}
        assert (await env.http.put("/api/clients/dev1/3201/0?replace=false", json=partial)).status_code == 200
        state = (await env.http.get("/api/clients/dev1/3201/0")).json()
        values = {r["id"]: r["value"] for r in state["resources"]}
        assert values[5550] is False and values[5750] == "BTS-2"

    run(body)


def test_write_errors_are_precise() -> None:
    async def body(env: Env) -> None:
        wrong = await env.http.put("/api/clients/dev1/3/0/15", json={"value": 12})
        assert wrong.status_code == 400
        assert "expected a string" in wrong.json()["message"] and "/3/0/15" in wrong.json()["message"]
        out_of_range = await env.http.put("/api/clients/dev1/3/0/9", json={"value": 101})
        assert out_of_range.status_code == 400 and "outside" in out_of_range.json()["message"]
        not_json = await env.http.put("/api/clients/dev1/3/0/15", content=b"{nope")
        assert not_json.status_code == 400 and "JSON" in not_json.json()["message"]
        unknown = await env.http.put("/api/clients/dev1/3/0/999", json={"value": 1})
        assert unknown.status_code == 400 and "no resource 999" in unknown.json()["message"]
        read_only = await env.http.put("/api/clients/dev1/3/0/0", json={"value": "x"})
        assert read_only.status_code == 405 and read_only.json()["coapCode"] == "4.05"

    run(body)


# ------------------------------------------------------------------------------------------ execute, create, delete


def test_execute_create_delete() -> None:
    async def body(env: Env) -> None:
        done = await env.http.post("/api/clients/dev1/3/0/4", content=b"")
        assert done.status_code == 200 and env.device.executed[-1] == (Path.of(3, 0, 4), b"")
        bad_args = await env.http.post("/api/clients/dev1/3/0/4", content=b"0='unterminated")
        assert bad_args.status_code == 400
        created = await env.http.post(
            "/api/clients/dev1/3201", json={"id": 7, "resources": [{"id": 5550, "value": True}]}
        )
        assert created.status_code == 201 and created.json() == {"status": "CREATED", "path": "/3201/7"}
        assert created.headers["location"] == "/api/clients/dev1/3201/7"
        assert (await env.http.get("/api/clients/dev1/3201/7/5550")).json()["value"] is True
        again = await env.http.post(
            "/api/clients/dev1/3201", json={"id": 7, "resources": [{"id": 5550, "value": True}]}
        )
        assert again.status_code == 400 and again.json()["coapCode"] == "4.00"
        on_instance = await env.http.post("/api/clients/dev1/3201/7", json={})
        assert on_instance.status_code == 405
        gone = await env.http.delete("/api/clients/dev1/3201/7")
        assert gone.status_code == 200 and gone.json() == {"status": "DELETED"}
        assert (await env.http.get("/api/clients/dev1/3201/7")).status_code == 404
        assert (await env.http.delete("/api/clients/dev1/3201")).status_code == 400

    run(body)


# ------------------------------------------------------------------------------------------ attributes, discover


def test_write_attributes_and_discover() -> None:
    async def body(env: Env) -> None:
        done = await env.http.put("/api/clients/dev1/3316/0/5700/attributes?pmin=10&pmax=60&gt=50.5&st")
        assert done.status_code == 200
        assert env.device.attributes[Path.of(3316, 0, 5700)] == ["pmin=10", "pmax=60", "gt=50.5", "st"]
        bad = await env.http.put("/api/clients/dev1/3316/0/5700/attributes?pmin=ten")
        assert bad.status_code == 400
        empty = await env.http.put("/api/clients/dev1/3316/0/5700/attributes")
        assert empty.status_code == 400
        wrong_method = await env.http.get("/api/clients/dev1/3316/0/5700/attributes")
        assert wrong_method.status_code == 405
        on_register = await Device.register(env.server, "discovered")  # the server discovers on registration
        try:
            for _ in range(100):
                detail = (await env.http.get("/api/clients/discovered")).json()
                if detail["discovered"]:
                    break
                await asyncio.sleep(0.05)
            assert {link["path"] for link in detail["discovered"]} >= {"/3/0", "/3316/0"}
        finally:
            await on_register.close()
        found = await env.http.get("/api/clients/dev1/3/0/discover")
        assert found.status_code == 200
        paths = [link["path"] for link in found.json()["links"]]
        assert paths[0] == "/3/0" and "/3/0/0" in paths

    run(body, discover_on_register=True)


# ------------------------------------------------------------------------------------------ composite


def test_composite_read_and_write() -> None:
    async def body(env: Env) -> None:
        read = await env.http.post("/api/clients/dev1/composite/read", json={"paths": ["/3/0/0", "/3316/0/5700"]})
        assert read.status_code == 200
        nodes = read.json()["nodes"]
        assert nodes["/3/0/0"]["value"] == "SPMP" and nodes["/3316/0/5700"]["value"] == 48.5
        write = {"nodes": {"/3/0/15": {"value": "Europe/Paris"}, "/3201/0/5750": {"value": "fan"}}}
        assert (await env.http.post("/api/clients/dev1/composite/write", json=write)).status_code == 200
        assert (await env.http.get("/api/clients/dev1/3/0/15")).json()["value"] == "Europe/Paris"
        bad = await env.http.post("/api/clients/dev1/composite/read", json={"paths": []})
        assert bad.status_code == 400
        bad_path = await env.http.post("/api/clients/dev1/composite/write", json={"nodes": {"3/0": {}}})
        assert bad_path.status_code == 400 and "nodes['3/0']" in bad_path.json()["message"]
        assert (await env.http.get("/api/clients/dev1/composite/read")).status_code == 405

    run(body)


# ------------------------------------------------------------------------------------------ observe, telemetry


def test_observe_notify_telemetry_and_cancel() -> None:
    async def body(env: Env) -> None:
        observed = await env.http.post("/api/clients/dev1/3316/0/5700/observe")
        assert observed.status_code == 200, observed.text
        assert observed.json()["value"]["value"] == 48.5
        assert observed.json()["observation"]["paths"] == ["/3316/0/5700"]
        env.device.set_voltage(51.25)
        points: list[dict[str, Any]] = []
        for _ in range(100):
            await env.store.flush()
            got = await env.http.get("/api/clients/dev1/telemetry", params={"path": "/3316/0/5700"})
            points = got.json()["points"]
            if any(p["value"] == 51.25 for p in points):
                break
            await asyncio.sleep(0.05)
        assert any(p["value"] == 51.25 and p["type"] == "Float" for p in points), points
        cancelled = await env.http.delete("/api/clients/dev1/3316/0/5700/observe")
        assert cancelled.status_code == 200 and cancelled.json()["cancelled"] == 1
        again = await env.http.delete("/api/clients/dev1/3316/0/5700/observe")
        assert again.status_code == 404

    run(body)


def test_telemetry_query_window_and_errors() -> None:
    async def body(env: Env) -> None:
        points = [
            TelemetryPoint("dev1", "/3316/0/5700", datetime(2024, 5, 1, h, tzinfo=UTC), 40.0 + h, "Float")
            for h in range(6)
        ]
        points.append(TelemetryPoint("dev1", "/3/0/0", datetime(2024, 5, 1, 1, tzinfo=UTC), b"\x01\x02", "Opaque"))
        await env.store.append_telemetry(points)
        params = {"path": "/3316", "since": "2024-05-01T02:00:00Z", "until": "2024-05-01T05:00:00Z"}
        got = (await env.http.get("/api/clients/dev1/telemetry", params=params)).json()
        assert [p["value"] for p in got["points"]] == [42.0, 43.0, 44.0]
        assert got["points"][0]["timestamp"] == "2024-05-01T02:00:00Z"
        newest = (await env.http.get("/api/clients/dev1/telemetry", params={"order": "desc", "limit": "1"})).json()
        assert [p["value"] for p in newest["points"]] == [45.0]
        opaque = (await env.http.get("/api/clients/dev1/telemetry", params={"path": "/3/0/0"})).json()
        assert opaque["points"][0]["value"] == base64.b64encode(b"\x01\x02").decode()
        for bad in ({"since": "yesterday"}, {"since": "2024-05-01T00:00:00"}, {"limit": "0"}, {"path": "3"}):
            answer = await env.http.get("/api/clients/dev1/telemetry", params=bad)
            assert answer.status_code == 400, bad

    run(body)


# ------------------------------------------------------------------------------------------ misc


def test_unknown_routes_are_json_errors() -> None:
    async def body(env: Env) -> None:
        missing = await env.http.get("/api/nothing")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        wrong = await env.http.delete("/api/clients")
        assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"

    run(body)


@pytest.mark.parametrize("format_name", ["tlv", "senml-json", "senml-cbor", "lwm2m-json", "lwm2m-cbor"])
def test_read_in_every_multi_value_format(format_name: str) -> None:
    async def body(env: Env) -> None:
        got = await env.http.get("/api/clients/dev1/3/0", params={"format": format_name})
        assert got.status_code == 200, got.text
        values = {r["id"]: r.get("value", r.get("values")) for r in got.json()["resources"]}
        assert values[0] == "SPMP" and values[6] == {"0": 1, "1": 5} and values[13] == "2024-05-01T12:00:00Z"

    run(body)


# ------------------------------------------------------------------------------------------ the client engine


def test_with_the_real_client_engine() -> None:
    """The same API calls against SPMP's own LwM2M client engine instead of the test device."""
    from spmp.client.accounts import ServerSpec, direct_servers
    from spmp.client.device import device_object
    from spmp.client.engine import Lwm2mClient

    async def body(env: Env) -> None:
        assert env.server.coap_address is not None
        registry = default_registry()
        tree = ObjectTree(registry)
        reboots: list[bool] = []
        uri = f"coap://127.0.0.1:{env.server.coap_address[1]}"
        for enabler in (*direct_servers([ServerSpec(uri)]), device_object(on_reboot=lambda: reboots.append(True))):
            tree.add(enabler)
        client = Lwm2mClient("engine-dev", tree, registry)
        await client.start()
        try:
            await client.wait_registered(timeout=10)
            listed = [c["endpoint"] for c in (await env.http.get("/api/clients")).json()]
            assert listed == ["dev1", "engine-dev"]
            model = await env.http.get("/api/clients/engine-dev/3/0/1")
            assert model.status_code == 200 and model.json()["value"] == "SPMP-CC1"
            instance = (await env.http.get("/api/clients/engine-dev/3/0")).json()
            assert instance["kind"] == "instance"
            assert (await env.http.post("/api/clients/engine-dev/3/0/4")).status_code == 200
            for _ in range(100):
                if reboots:
                    break
                await asyncio.sleep(0.02)
            assert reboots == [True]
            written = await env.http.put("/api/clients/engine-dev/3/0/14", json={"value": "+03:00"})
            assert written.status_code == 200, written.text
            assert (await env.http.get("/api/clients/engine-dev/3/0/14")).json()["value"] == "+03:00"
            observed = await env.http.post("/api/clients/engine-dev/3/0/9/observe")
            assert observed.status_code == 200 and observed.json()["value"]["kind"] == "singleResource"
            assert (await env.http.delete("/api/clients/engine-dev/3/0/9/observe")).status_code == 200
            assert (await env.http.get("/api/clients/engine-dev/3/0/99")).status_code == 404
        finally:
            await client.stop()

    run(body)
