"""Observations survive a management-server restart (issue 3).

The server persists every observation; after a restart the CoAP layer no longer knows their tokens.
The endpoint's unmatched-notification hook lets the server adopt a notification whose token the Store
holds for the peer's current registration, so telemetry keeps flowing at once, without waiting for the
client's next Update (the test checks that no Update was sent). Real UDP/DTLS on 127.0.0.1, SQLite
store on disk, SPMP's own client engine as the device.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from _server_helpers import FAST, make_server, run
from spmp.client.accounts import ServerSpec, direct_servers
from spmp.client.device import device_object
from spmp.client.engine import Lwm2mClient
from spmp.client.objects import StoredObject
from spmp.client.registration import ClientOptions
from spmp.client.tree import ObjectTree
from spmp.coap.endpoint import Endpoint
from spmp.coap.message import Code, Request, Response
from spmp.coap.observe import Observation
from spmp.coap.transport import Peer
from spmp.coap.udp import UdpTransport
from spmp.lwm2m.attributes import NotificationAttributes
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.node import SingleResource
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.objects.ipso import TEMPERATURE
from spmp.lwm2m.path import Path as LwPath
from spmp.server import ManagementServer
from spmp.server.events import EventHub
from spmp.server.observations import ObservationManager, TelemetrySink, _Live
from spmp.store import SecurityInfo, SqliteStore

REGISTRY = default_registry()
SENSOR = "/3303/0/5700"
FLOAT = TEMPERATURE.resource(5700).type  # type: ignore[union-attr]


async def _until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def _tree(uri: str, identity: str | None, key: bytes | None) -> tuple[ObjectTree, StoredObject]:
    tree = ObjectTree(REGISTRY)
    spec = ServerSpec(uri, short_server_id=1, lifetime=3600, psk_identity=identity, psk_key=key)
    for enabler in direct_servers([spec]):
        tree.add(enabler)
    tree.add(device_object(serial="SN-R"))
    temperature = StoredObject(TEMPERATURE)
    temperature.add_instance(0, {5700: SingleResource(5700, 20.0, FLOAT)})
    tree.add(temperature)
    return tree, temperature


async def _stored_values(store: SqliteStore) -> list[float]:
    points = await store.query_telemetry("site-r", SENSOR)
    return [float(p.value) for p in points]  # type: ignore[arg-type]


@pytest.mark.parametrize("secure", [False, True], ids=["coap", "coaps-psk"])
def test_notifications_after_restart_land_in_telemetry_without_update(tmp_path: Path, secure: bool) -> None:
    async def main() -> None:
        db = tmp_path / "spmp.db"
        async with SqliteStore(db) as store:
            if secure:
                await store.put_security(SecurityInfo("site-r", "site-r", b"restart-key-0001"))
            first = make_server(store, insecure=not secure)
            await first.start()
            address = first.coaps_address if secure else first.coap_address
            assert address is not None
            port = address[1]
            uri = f"{'coaps' if secure else 'coap'}://127.0.0.1:{port}"
            tree, temperature = _tree(uri, "site-r" if secure else None, b"restart-key-0001" if secure else None)
            options = ClientOptions(
                coap=FAST, local_host="127.0.0.1", deregister_timeout=1.0, retry_initial=0.2, handshake_timeout=5.0
            )
            client = Lwm2mClient("site-r", tree, REGISTRY, options=options)
            await client.start()
            second: ManagementServer | None = None
            try:
                await client.wait_registered(1)
                await first.write_attributes("site-r", SENSOR, NotificationAttributes(pmin=0))
                info = await first.observe("site-r", SENSOR)
                temperature.set_value(0, SingleResource(5700, 21.5, FLOAT))
                await _until(lambda: first.observations.stats.notifications >= 1)
                await first.stop()
                updates_before = client.session(1).updates

                ports = {"coaps_port": port} if secure else {"coap_port": port}
                second = make_server(store, insecure=not secure, **ports)
                await second.start()
                assert second.observations.count() == 0  # nothing live yet: only the stored observation
                temperature.set_value(0, SingleResource(5700, 23.25, FLOAT))
                await _until(lambda: second is not None and second.observations.stats.notifications >= 1, 20.0)
                temperature.set_value(0, SingleResource(5700, 24.0, FLOAT))
                await _until(lambda: second is not None and second.observations.stats.notifications >= 2)
                await second.sink.flush()
                values = await _stored_values(store)
                assert 23.25 in values and 24.0 in values, values
                assert client.session(1).updates == updates_before, "telemetry resumed only through an Update"
                stats = second.stats()
                assert stats["coaps" if secure else "coap"]["adopted"] == 1
                assert [live.token.hex() for live in second.observations.find("site-r")] == [info.token]
                # The adopted observation is a real one: the server can cancel it on the device.
                await second.cancel_observation("site-r", SENSOR)
                assert await store.list_observations("site-r") == []
            finally:
                await client.stop()
                if second is not None:
                    await second.stop()
                await first.stop()

    run(main(), timeout=90.0)


def test_unmatched_notification_hook_adopts_or_resets() -> None:
    """The endpoint hook on its own: an adopted token is acknowledged and delivered, others get RST."""

    async def main() -> None:
        seen: list[tuple[Peer, bytes]] = []

        async def hook(peer: Peer, token: bytes, response: Response) -> Observation | None:
            seen.append((peer, token))
            await asyncio.sleep(0.01)  # the hook may look things up
            if token != b"keep":
                return None
            return observer.adopt_observation(peer, token, Request(Code.GET, "/3303/0/5700"), callback=got.append)

        got: list[Response] = []
        observer = Endpoint(await UdpTransport.bind("127.0.0.1", 0), params=FAST, on_unmatched_notification=hook)
        device = Endpoint(await UdpTransport.bind("127.0.0.1", 0), params=FAST)
        try:
            target = Peer(*observer.transport.local_address)
            served: dict[bytes, object] = {}

            async def serve(request: Request) -> Response:
                served[request.token] = device.accept_observation(request)
                return Response(Code.CONTENT, b"20")

            device.handler = serve
            # Two observations "made by a previous run": register them on the device directly.
            for token in (b"keep", b"drop"):
                sender = Endpoint(await UdpTransport.bind("127.0.0.1", 0), params=FAST)
                try:
                    request = Request(Code.GET, "/3303/0/5700")
                    request.observe = 0
                    await sender._request_with_token(Peer(*device.transport.local_address), request, token)
                finally:
                    await sender.close()
            # Re-point the device's observations at our observer endpoint, as a restarted server would be.
            for token, obs in list(served.items()):
                obs.peer = target  # type: ignore[attr-defined]
                device._served[(target, token)] = obs  # type: ignore[index,assignment]
            for value in (b"21", b"22"):
                for obs in served.values():
                    obs.notify(Response(Code.CONTENT, value), confirmable=True)  # type: ignore[attr-defined]
                await asyncio.sleep(0.2)
            await _until(lambda: len(got) == 2, 5.0)
            assert [r.payload for r in got] == [b"21", b"22"]
            assert observer.stats.adopted == 1
            assert observer.stats.rst_sent >= 1
            assert not served[b"drop"].active  # type: ignore[attr-defined]  # the RST cancelled it
            assert served[b"keep"].active  # type: ignore[attr-defined]
        finally:
            await device.close()
            await observer.close()

    run(main(), timeout=30.0)


def test_notifications_arriving_in_one_millisecond_are_all_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Store keeps one point per path and millisecond; two notifications of one observation that
    arrive in the same millisecond (a burst of stored ones after a reconnect, or a change right behind
    another) are two values: both are stored, in order. (This was the restart test's flake: 23.25 was
    replaced by 24.0 when both arrived within one millisecond.)"""

    class _Registrations:
        def __init__(self, session: object) -> None:
            self.session = session

        def get(self, endpoint: str) -> object:
            return self.session

        def touch(self, session: object) -> None:
            pass

    class _Registration:
        registration_id = "r1"

    class _Session:
        registration = _Registration()
        model = REGISTRY

    async def main() -> None:
        async with SqliteStore(tmp_path / "spmp.db") as store:
            sink = TelemetrySink(store)
            manager = ObservationManager(store, EventHub(), _Registrations(_Session()), sink)  # type: ignore[arg-type]
            frozen = types.SimpleNamespace(time_ns=lambda: 1_750_000_000_123_000_000)
            monkeypatch.setattr("spmp.server.observations.time", frozen)  # every arrival in one millisecond
            for endpoint, fmt in (("site-r", None), ("site-s", ContentFormat.SENML_JSON)):
                live = _Live(endpoint, "r1", (LwPath.parse(SENSOR),), False, fmt)
                callback = manager.callback(live)
                for n, value in enumerate(("23.25", "24.0", "24.5"), start=2):
                    payload = value.encode() if fmt is None else f'[{{"n":"{SENSOR}","v":{value}}}]'.encode()
                    callback(Response(Code.CONTENT, payload, content_format=fmt, observe=n))
                await sink.flush()
            for endpoint in ("site-r", "site-s"):
                points = await store.query_telemetry(endpoint, SENSOR)
                assert [float(p.value) for p in points] == [23.25, 24.0, 24.5], endpoint  # type: ignore[arg-type]

    run(main())


def test_notification_sent_while_the_server_is_down_arrives_after_the_rehandshake(tmp_path: Path) -> None:
    """DTLS: a CON notification that goes out while the server is down (its session is gone, nobody
    acknowledges it) is kept in the notification store and delivered once the server is back and the
    client has handshaken again; nothing is lost and the observation carries on."""

    async def main() -> None:
        async with SqliteStore(tmp_path / "spmp.db") as store:
            await store.put_security(SecurityInfo("site-r", "site-r", b"restart-key-0001"))
            first = make_server(store, insecure=False)
            await first.start()
            assert first.coaps_address is not None
            port = first.coaps_address[1]
            tree, temperature = _tree(f"coaps://127.0.0.1:{port}", "site-r", b"restart-key-0001")
            options = ClientOptions(
                coap=FAST, local_host="127.0.0.1", deregister_timeout=1.0, retry_initial=0.2, handshake_timeout=2.0
            )
            client = Lwm2mClient("site-r", tree, REGISTRY, options=options)
            await client.start()
            second: ManagementServer | None = None
            try:
                await client.wait_registered(1)
                await first.write_attributes("site-r", SENSOR, NotificationAttributes(pmin=0))
                await first.observe("site-r", SENSOR)
                await first.stop()
                session = client.session(1)
                temperature.set_value(0, SingleResource(5700, 22.75, FLOAT))  # nobody listens: stored
                await _until(lambda: session.reporter.stats.stored >= 1, 10.0)
                assert session.reporter.stored_count == 1

                second = make_server(store, insecure=False, coaps_port=port)
                await second.start()
                await _until(lambda: second is not None and second.observations.stats.notifications >= 1, 20.0)
                assert session.reporter.stats.delivered_from_store == 1
                temperature.set_value(0, SingleResource(5700, 23.5, FLOAT))  # the observation carries on
                await _until(lambda: second is not None and second.observations.stats.notifications >= 2)
                await second.sink.flush()
                values = await _stored_values(store)
                assert values[-2:] == [22.75, 23.5], values
            finally:
                await client.stop()
                if second is not None:
                    await second.stop()
                await first.stop()

    run(main(), timeout=90.0)
