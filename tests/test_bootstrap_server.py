"""The bootstrap server on 127.0.0.1 ephemeral ports against real peers.

Peers: libcoap's ``coap-client-notls`` / ``coap-client-openssl`` (Bootstrap-Request over CoAP and
DTLS), and a tiny LwM2M client written here on spmp.coap.Endpoint + spmp.client.tree.ObjectTree
(real CoAP, real DTLS, real codecs) whose object tree is checked after each bootstrap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from _peers import needs_tools
from spmp.bootstrap.server import BootstrapError, BootstrapServer, SessionResult
from spmp.client.objects import StoredObject
from spmp.client.tree import BOOTSTRAP, ObjectTree
from spmp.coap.dtls import DtlsClientTransport, DtlsServerTransport, InMemoryPskStore
from spmp.coap.endpoint import CoapParameters, Endpoint
from spmp.coap.message import Code, Request, Response
from spmp.coap.udp import UdpTransport
from spmp.lwm2m import Path, SingleResource, codecs, instance_from_model
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.link import BootstrapDiscover, BootstrapDiscoverLink, format_bootstrap_discover
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.response import OperationError
from spmp.store import BootstrapConfig, MemoryStore, SecurityInfo, SecurityMode, SecurityScope, ServerAccount, Store

REGISTRY = default_registry()
FAST = CoapParameters(ack_timeout=0.2, max_retransmit=2)
BS_KEY = b"factory-key-0001"
TELCO = ServerAccount(101, "coaps://127.0.0.1:5684", SecurityMode.PSK, lifetime=300)
CLOUD = ServerAccount(102, "coap://127.0.0.1:5685", lifetime=600, default_pmin=5)

needs_notls = needs_tools("coap-client-notls")
needs_openssl = needs_tools("coap-client-openssl")


def run(coro: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)

    asyncio.run(bounded())


async def with_server(
    body: Callable[[BootstrapServer, Store], Awaitable[None]], *configs: BootstrapConfig, **options: Any
) -> None:
    async with MemoryStore() as store:
        for config in configs:
            await store.put_bootstrap_config(config)
        options.setdefault("insecure", True)
        options.setdefault("step_timeout", 3.0)
        options.setdefault("dtls_options", {"retransmit_timeout": 0.1})
        server = BootstrapServer(store, REGISTRY, coap_port=0, coaps_port=0, coap_params=FAST, **options)
        async with server:
            await body(server, store)


class TinyClient:
    """A minimal LwM2M client for the Bootstrap interface: Discover, Delete, Write, Finish on an ObjectTree."""

    def __init__(self, version: str | None = "1.1", *, reject_finish: str | None = None) -> None:
        self.tree = ObjectTree(REGISTRY)
        for object_id in (0, 1, 3):
            model = REGISTRY.object_model(object_id)
            assert model is not None
            self.tree.add(StoredObject(model))
        bootstrap_account = {0: "coaps://bootstrap", 1: True, 2: 0, 3: b"factory", 4: b"", 5: BS_KEY}
        self.tree.write(Path.of(0, 0), self._instance(0, 0, bootstrap_account), replace=True, caller=BOOTSTRAP)
        self.tree.write(Path.of(3, 0), self._instance(3, 0, {0: "SPMP"}), replace=True, caller=BOOTSTRAP)
        self.version = version
        self.reject_finish = reject_finish
        self.formats: list[int | None] = []
        self.finished = asyncio.Event()

    @staticmethod
    def _instance(object_id: int, instance_id: int, values: dict[int, Any]) -> Any:
        model = REGISTRY.object_model(object_id)
        assert model is not None
        return instance_from_model(model, instance_id, values)

    def add_account(self, instance_id: int, ssid: int) -> None:
        values = {0: "coap://old", 1: False, 2: 3, 3: b"", 4: b"", 5: b"", 10: ssid}
        self.tree.write(Path.of(0, instance_id), self._instance(0, instance_id, values), replace=True, caller=BOOTSTRAP)

    def value(self, path: str) -> Any:
        node = self.tree.read(Path.parse(path), BOOTSTRAP)
        assert isinstance(node, SingleResource)
        return node.value

    def instances(self, object_id: int) -> list[int]:
        return self.tree.enabler(object_id).instance_ids()

    async def handle(self, request: Request) -> Response:
        if request.method == Code.POST and request.path == ("bs",):
            if self.reject_finish:
                return Response(Code.NOT_ACCEPTABLE, self.reject_finish.encode())
            self.finished.set()
            return Response(Code.CHANGED)
        path = Path.parse("/" + "/".join(request.path))
        try:
            if request.method == Code.GET and request.accept == ContentFormat.LINK:
                return Response(Code.CONTENT, self.discover().encode(), content_format=ContentFormat.LINK)
            if request.method == Code.DELETE:
                self.tree.delete(path, BOOTSTRAP)
                return Response(Code.DELETED)
            if request.method == Code.PUT:
                self.formats.append(request.content_format)
                node = codecs.decode(request.payload, path, request.content_format or 0, REGISTRY)
                self.tree.write(path, node, replace=True, caller=BOOTSTRAP)
                return Response(Code.CHANGED)
        except OperationError as exc:
            return Response(exc.code, exc.reason.encode())
        return Response(Code.METHOD_NOT_ALLOWED)

    def discover(self) -> str:
        links = []
        for path in self.tree.instance_paths():
            ssid = uri = None
            if path.instance_id is not None and path.object_id in (0, 1):
                instance = self.tree.read(path, BOOTSTRAP)
                if path.object_id == 0 and instance.value(1) is not True:  # type: ignore[union-attr]
                    ssid, uri = instance.value(10), instance.value(0)  # type: ignore[union-attr]
                elif path.object_id == 1:
                    ssid = instance.value(0)  # type: ignore[union-attr]
            links.append(BootstrapDiscoverLink(path, ssid=ssid, uri=uri))  # type: ignore[arg-type]
        if self.version is None:
            return "</0>"  # no lwm2m= at all: read as a 1.0 client
        return format_bootstrap_discover(BootstrapDiscover(self.version, tuple(links)))


async def udp_client(client: TinyClient) -> Endpoint:
    return Endpoint(await UdpTransport.bind("127.0.0.1", 0), client.handle, params=FAST)


async def request_bootstrap(endpoint: Endpoint, address: tuple[str, int] | None, query: str) -> Response:
    assert address is not None
    peer = endpoint.transport.peer if isinstance(endpoint.transport, DtlsClientTransport) else None
    from spmp.coap.transport import Peer

    return await endpoint.request(peer or Peer(*address), Request(Code.POST, "bs", query=query.split("&")))


def security_of(client: TinyClient, ssid: int) -> dict[int, Any]:
    for iid in client.instances(0):
        node = client.tree.read(Path.of(0, iid), BOOTSTRAP)
        if node.value(10) == ssid:  # type: ignore[union-attr]
            return {rid: r.value for rid, r in node.resources.items()}  # type: ignore[union-attr]
    raise AssertionError(f"no /0 instance for {ssid}")


# ------------------------------------------------------------------------------------------- libcoap


async def coap_client(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


@needs_notls
def test_libcoap_bootstrap_request_gets_204_and_the_session_fails_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "spmp.bootstrap")

    async def body(server: BootstrapServer, store: Store) -> None:
        port = server.coap_address[1]  # type: ignore[index]
        waiting = asyncio.ensure_future(server.wait_for_result("libcoap-1", 10))
        _, out, _ = await coap_client(
            "coap-client-notls", "-v", "6", "-m", "post", f"coap://127.0.0.1:{port}/bs?ep=libcoap-1"
        )
        assert "c:2.04" in out
        result = await waiting
        assert not result.ok and result.reason and result.steps[0].step.startswith("discover /")
        # The server still serves: a request without ep is 4.00, an unknown path 4.04.
        _, _, err = await coap_client("coap-client-notls", "-m", "post", f"coap://127.0.0.1:{port}/bs")
        assert err.startswith("4.00") and "endpoint name" in err
        _, _, err = await coap_client("coap-client-notls", "-m", "get", f"coap://127.0.0.1:{port}/rd")
        assert err.startswith("4.04")

    run(with_server(body, BootstrapConfig("*", (CLOUD,)), step_timeout=1.0))
    messages = [r.getMessage() for r in caplog.records]
    assert "bootstrap started" in messages and "bootstrap failed" in messages
    failed = next(r for r in caplog.records if r.getMessage() == "bootstrap failed")
    assert "discover" in failed.reason  # type: ignore[attr-defined]


@needs_notls
def test_libcoap_unknown_endpoint_without_default_is_400() -> None:
    async def body(server: BootstrapServer, store: Store) -> None:
        port = server.coap_address[1]  # type: ignore[index]
        _, _, err = await coap_client("coap-client-notls", "-m", "post", f"coap://127.0.0.1:{port}/bs?ep=stranger")
        assert err.startswith("4.00") and "no bootstrap configuration" in err and "stranger" in err
        assert not server.results

    run(with_server(body, BootstrapConfig("known", (CLOUD,))))


@needs_openssl
def test_libcoap_dtls_right_and_wrong_bootstrap_psk() -> None:
    async def body(server: BootstrapServer, store: Store) -> None:
        await store.put_security(SecurityInfo("dev-a", "id-a", BS_KEY), SecurityScope.BOOTSTRAP)
        await store.put_security(SecurityInfo("dev-b", "id-b", BS_KEY), SecurityScope.BOOTSTRAP)
        await server.psks.load()  # what the periodic reload does
        port = server.coaps_address[1]  # type: ignore[index]
        uri = f"coaps://127.0.0.1:{port}/bs?ep=dev-a"
        base = ["coap-client-openssl", "-B", "3", "-v", "6", "-m", "post"]
        waiting = asyncio.ensure_future(server.wait_for_result("dev-a", 10))
        _, out, _ = await coap_client(*base, "-u", "id-a", "-k", BS_KEY.decode(), uri)
        assert "c:2.04" in out
        assert (await waiting).peer.endswith("(id-a)")
        # Right key, but the identity of another endpoint: refused with 4.03.
        _, out, err = await coap_client(*base, "-u", "id-b", "-k", BS_KEY.decode(), uri)
        assert "c:4.03" in out and "not the bootstrap identity" in out + err
        # A wrong key: the handshake fails, nothing reaches the bootstrap logic.
        failed = server._coaps.transport.stats.handshakes_failed  # type: ignore[union-attr]
        _, out, _ = await coap_client(*base, "-u", "id-a", "-k", "wrong-key-000000", uri)
        assert "c:2.04" not in out
        assert server._coaps.transport.stats.handshakes_failed > failed  # type: ignore[union-attr]
        # Plain CoAP for an endpoint with a bootstrap PSK: refused.
        _, _, err = await coap_client(
            "coap-client-notls", "-m", "post", f"coap://127.0.0.1:{server.coap_address[1]}/bs?ep=dev-a"
        )  # type: ignore[index]
        assert err.startswith("4.03") and "DTLS" in err

    run(with_server(body, BootstrapConfig("*", (CLOUD,)), step_timeout=1.0))


# ---------------------------------------------------------------------------------------- tiny client


def test_full_sequence_two_servers_generated_psk() -> None:
    async def body(server: BootstrapServer, store: Store) -> None:
        client = TinyClient()
        # An old account that the default delete_existing=True must remove.
        client.add_account(3, ssid=7)
        endpoint = await udp_client(client)
        try:
            waiting = asyncio.ensure_future(server.wait_for_result("charger-1", 10))
            response = await request_bootstrap(endpoint, server.coap_address, "ep=charger-1")
            assert response.code == Code.CHANGED
            result = await waiting
            assert result.ok, result.reason
        finally:
            await endpoint.close()
        assert client.finished.is_set()
        assert client.instances(0) == [0, 1, 2]  # bootstrap account kept at 0, old /0/3 gone
        assert client.value("/0/0/1") is True
        telco, cloud = security_of(client, 101), security_of(client, 102)
        stored = await store.get_security("charger-1", SecurityScope.SERVER)
        assert stored is not None and stored.psk_identity == "charger-1" and len(stored.psk_key) == 16
        assert (telco[0], telco[1], telco[2], telco[3], telco[5]) == (TELCO.uri, False, 0, b"charger-1", stored.psk_key)
        assert (cloud[0], cloud[2], cloud[5]) == (CLOUD.uri, 3, b"")
        assert sorted(client.value(f"/1/{i}/0") for i in client.instances(1)) == [101, 102]
        assert {client.value(f"/1/{i}/0"): client.value(f"/1/{i}/1") for i in client.instances(1)} == {
            101: 300,
            102: 600,
        }
        assert set(client.formats) == {ContentFormat.SENML_CBOR}
        assert [s.code for s in result.steps] == ["2.05", "2.02", "2.02"] + ["2.04"] * 5
        # A second bootstrap reuses the stored key (a re-bootstrap must not break a working device).
        client2 = TinyClient()
        endpoint = await udp_client(client2)
        try:
            waiting = asyncio.ensure_future(server.wait_for_result("charger-1", 10))
            await request_bootstrap(endpoint, server.coap_address, "ep=charger-1")
            assert (await waiting).ok
        finally:
            await endpoint.close()
        assert security_of(client2, 101)[5] == stored.psk_key

    run(with_server(body, BootstrapConfig("*", (TELCO, CLOUD))))


def test_keep_existing_pct_and_tlv_for_10() -> None:
    async def body(server: BootstrapServer, store: Store) -> None:
        client = TinyClient()
        client.add_account(1, ssid=7)
        endpoint = await udp_client(client)
        try:
            waiting = asyncio.ensure_future(server.wait_for_result("keep", 10))
            await request_bootstrap(endpoint, server.coap_address, "ep=keep&pct=110")
            result = await waiting
        finally:
            await endpoint.close()
        assert result.ok, result.reason
        assert client.instances(0) == [0, 1, 2] and security_of(client, 7)[0] == "coap://old"
        assert security_of(client, 102)[0] == CLOUD.uri
        assert set(client.formats) == {ContentFormat.SENML_JSON}

        old = TinyClient(version=None)
        endpoint = await udp_client(old)
        try:
            waiting = asyncio.ensure_future(server.wait_for_result("keep", 10))
            await request_bootstrap(endpoint, server.coap_address, "ep=keep")
            assert (await waiting).ok
        finally:
            await endpoint.close()
        assert set(old.formats) == {ContentFormat.TLV}

    run(with_server(body, BootstrapConfig("keep", (CLOUD,), delete_existing=False)))


def test_finish_406_is_a_failure_with_the_diagnostic() -> None:
    async def body(server: BootstrapServer, store: Store) -> None:
        client = TinyClient(reject_finish="no usable server account")
        endpoint = await udp_client(client)
        events: list[str] = []
        server.listeners.append(lambda event: events.append(event.kind))
        try:
            waiting = asyncio.ensure_future(server.wait_for_result("e", 10))
            await request_bootstrap(endpoint, server.coap_address, "ep=e")
            result = await waiting
        finally:
            await endpoint.close()
        assert not result.ok and result.reason is not None
        assert "4.06" in result.reason and "no usable server account" in result.reason
        assert result.steps[-1].code == "4.06"
        assert events[0] == "started" and events[-1] == "failed" and "step" in events

    run(with_server(body, BootstrapConfig("*", (CLOUD,))))


def test_dtls_bootstrap_and_identity_check() -> None:
    async def body(server: BootstrapServer, store: Store) -> None:
        await store.put_security(SecurityInfo("secure-1", "factory-1", BS_KEY), SecurityScope.BOOTSTRAP)
        await store.put_security(SecurityInfo("secure-2", "factory-2", BS_KEY), SecurityScope.BOOTSTRAP)
        host, port = server.coaps_address  # type: ignore[misc]
        client = TinyClient()
        # factory-1 was added after start: the cache reloads on the unknown identity, the retry works.
        transport = None
        for _ in range(20):
            try:
                transport = await DtlsClientTransport.connect(
                    host, port, "factory-1", BS_KEY, handshake_timeout=1.0, retransmit_timeout=0.1
                )
                break
            except Exception:
                await asyncio.sleep(0.1)
        assert transport is not None
        endpoint = Endpoint(transport, client.handle, params=FAST)
        try:
            forbidden = await request_bootstrap(endpoint, (host, port), "ep=secure-2")
            assert forbidden.code == Code.FORBIDDEN and b"factory-1" in forbidden.payload
            waiting = asyncio.ensure_future(server.wait_for_result("secure-1", 10))
            assert (await request_bootstrap(endpoint, (host, port), "ep=secure-1")).code == Code.CHANGED
            result = await waiting
        finally:
            await endpoint.close()
        assert result.ok, result.reason
        assert security_of(client, 101)[3] == b"secure-1"

    run(with_server(body, BootstrapConfig("*", (TELCO,)), psk_reload_interval=60))


def test_server_initiated_over_dtls_and_coap() -> None:
    async def body(server: BootstrapServer, store: Store) -> None:
        await store.put_security(SecurityInfo("field-1", "field-id", BS_KEY), SecurityScope.BOOTSTRAP)
        client = TinyClient()
        dtls = await DtlsServerTransport.bind("127.0.0.1", 0, InMemoryPskStore({"field-id": BS_KEY}))
        device = Endpoint(dtls, client.handle, params=FAST)
        try:
            result = await server.bootstrap_server_initiated("field-1", *dtls.local_address)
        finally:
            await device.close()
        assert result.ok, result.reason
        assert result.initiated_by == "server" and client.finished.is_set()
        assert security_of(client, 102)[0] == CLOUD.uri

        plain = TinyClient()
        endpoint = await udp_client(plain)
        try:
            result = await server.bootstrap_server_initiated("field-2", *endpoint.transport.local_address, secure=False)
        finally:
            await endpoint.close()
        assert result.ok and plain.finished.is_set()

        with pytest.raises(BootstrapError, match="no bootstrap PSK"):
            await server.bootstrap_server_initiated("field-2", "127.0.0.1", 9)
        # Nobody listening: the session fails with a reason, it does not raise.
        failed: SessionResult = await server.bootstrap_server_initiated("field-2", "127.0.0.1", 9, secure=False)
        assert not failed.ok and failed.reason

    run(with_server(body, BootstrapConfig("*", (CLOUD,)), step_timeout=1.0))
