"""Bootstrap-Read of the Server object (/1): planned (pure) and end to end with the client engine.

With ``delete_existing=False`` and a 1.1 client that already has Server instances, the bootstrap
server reads /1 after Discover: accounts not in the configuration are kept, an account whose Server
instance already holds what would be written is not rewritten, and what was read is recorded in
the session's result.
"""

from __future__ import annotations

import asyncio

from spmp.bootstrap.server import BootstrapServer
from spmp.bootstrap.session import (
    ExistingServer,
    StepKind,
    parse_server_read,
    plan_session,
    read_step,
    wants_bootstrap_read,
)
from spmp.client.accounts import ServerSpec, direct_servers
from spmp.client.device import device_object
from spmp.client.engine import Lwm2mClient
from spmp.client.registration import ClientOptions
from spmp.client.tree import BOOTSTRAP, ObjectTree
from spmp.lwm2m import codecs
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.link import BootstrapDiscover, BootstrapDiscoverLink
from spmp.lwm2m.path import Path
from spmp.server import ManagementServer
from spmp.store import BootstrapConfig, MemoryStore, ServerAccount
from test_bootstrap_server import FAST, REGISTRY, run

OPTIONS = ClientOptions(
    coap=FAST, local_host="127.0.0.1", retry_initial=0.1, retry_max=0.5, bootstrap_timeout=10.0, deregister_timeout=1.0
)


def discover(version: str | None, *links: BootstrapDiscoverLink) -> BootstrapDiscover:
    return BootstrapDiscover(version, (BootstrapDiscoverLink(Path.of(0, 0)), *links))


def test_read_is_wanted_only_when_existing_accounts_are_kept_on_a_11_client() -> None:
    keep = BootstrapConfig("*", (ServerAccount(101, "coap://a"),), delete_existing=False)
    wipe = BootstrapConfig("*", (ServerAccount(101, "coap://a"),))
    with_server = discover("1.1", BootstrapDiscoverLink(Path.of(1, 0), ssid=7))
    assert wants_bootstrap_read(keep, with_server)
    assert not wants_bootstrap_read(wipe, with_server)
    assert not wants_bootstrap_read(keep, discover("1.0", BootstrapDiscoverLink(Path.of(1, 0), ssid=7)))
    assert not wants_bootstrap_read(keep, discover("1.1"))  # no Server instance: nothing to read
    assert not wants_bootstrap_read(keep, None)
    step = read_step(ContentFormat.SENML_CBOR)
    assert (step.kind, step.method, step.uri_path, step.accept) == (StepKind.READ, "GET", "/1", 112)


def test_plan_keeps_unknown_accounts_and_skips_unchanged_server_instances() -> None:
    tree = ObjectTree(REGISTRY)
    security, server = direct_servers(
        [ServerSpec("coap://old:5683", 7, lifetime=86400), ServerSpec("coap://telco:5683", 101, lifetime=60)],
        bootstrap=("coap://bs:5783", None, None),
    )
    tree.add(security)
    tree.add(server)
    payload = codecs.encode(tree.read(Path.of(1), BOOTSTRAP), Path.of(1), ContentFormat.SENML_CBOR, REGISTRY)
    existing = parse_server_read(payload, ContentFormat.SENML_CBOR, REGISTRY)
    assert existing == (
        ExistingServer(0, 7, 86400, None, None, True, "U"),
        ExistingServer(1, 101, 60, None, None, True, "U"),
    )
    config = BootstrapConfig(
        "*",
        (ServerAccount(101, "coap://telco:5683", lifetime=60), ServerAccount(102, "coap://cloud:5683", lifetime=60)),
        delete_existing=False,
    )
    # Discover saw the instances but (as a client may) without ssid on /1: the Read supplies them.
    seen = discover("1.1", BootstrapDiscoverLink(Path.of(1, 0)), BootstrapDiscoverLink(Path.of(1, 1)))
    plan = plan_session(config, seen, REGISTRY, existing_servers=existing)
    assert plan.server_instances == {101: 1, 102: 2}
    assert plan.unchanged_servers == (101,)
    writes = [str(step.path) for step in plan.steps if step.kind is StepKind.WRITE]
    assert "/1/1" not in writes and "/1/2" in writes and "/1/0" not in writes
    assert any("kept /1/0 (Short Server ID 7" in note for note in plan.notes)
    # A changed lifetime is rewritten in place.
    longer = BootstrapConfig("*", (ServerAccount(101, "coap://telco:5683", lifetime=120),), delete_existing=False)
    plan = plan_session(longer, seen, REGISTRY, existing_servers=existing)
    assert plan.unchanged_servers == () and plan.server_instances == {101: 1}
    assert "/1/1" in [str(step.path) for step in plan.steps if step.kind is StepKind.WRITE]


def test_bootstrap_read_with_the_client_engine_end_to_end() -> None:
    """A registered engine (accounts 7 and 101) is told to bootstrap again (Bootstrap-Request Trigger);
    the configuration keeps what it has and adds 102. The bootstrap server reads /1, keeps 7, leaves 101
    alone (already as configured), writes 102; the engine then registers with all three."""

    async def main() -> None:
        async with (
            MemoryStore() as bs_store,
            MemoryStore() as old_store,
            MemoryStore() as telco_store,
            MemoryStore() as cloud_store,
        ):
            servers = [
                ManagementServer(s, REGISTRY, coap_port=0, coaps_port=0, params=FAST, insecure=True)
                for s in (old_store, telco_store, cloud_store)
            ]
            for server in servers:
                await server.start()
            bootstrap = BootstrapServer(
                bs_store, REGISTRY, coap_port=0, coaps_port=0, coap_params=FAST, step_timeout=5, insecure=True
            )
            await bootstrap.start()
            client: Lwm2mClient | None = None
            try:
                old, telco, cloud = (f"coap://127.0.0.1:{s.coap_address[1]}" for s in servers)  # type: ignore[index]
                await bs_store.put_bootstrap_config(
                    BootstrapConfig(
                        "*",
                        (ServerAccount(101, telco, lifetime=60), ServerAccount(102, cloud, lifetime=90)),
                        delete_existing=False,
                    )
                )
                bs_uri = f"coap://127.0.0.1:{bootstrap.coap_address[1]}"  # type: ignore[index]
                security, server_object = direct_servers(
                    [ServerSpec(old, 7, lifetime=86400), ServerSpec(telco, 101, lifetime=60)],
                    bootstrap=(bs_uri, None, None),
                )
                tree = ObjectTree(REGISTRY)
                for enabler in (security, server_object, device_object()):
                    tree.add(enabler)
                client = Lwm2mClient("charger-read", tree, REGISTRY, options=OPTIONS)
                await client.start()
                await client.wait_registered(timeout=10)
                assert sorted(client.sessions) == [7, 101]

                waiting = asyncio.ensure_future(bootstrap.wait_for_result("charger-read", 15))
                await client.rebootstrap()
                result = await waiting
                assert result.ok, result.reason
                assert result.existing_servers == [
                    ExistingServer(0, 7, 86400, None, None, True, "U"),
                    ExistingServer(1, 101, 60, None, None, True, "U"),
                ]
                steps = [(step.step.split(" (")[0], step.code) for step in result.steps]
                assert steps[:2] == [("discover /", "2.05"), ("read /1", "2.05")]
                assert ("delete /0", "2.02") not in steps
                assert ("write /1/2", "2.04") in steps and not any(s == "write /1/1" for s, _ in steps)
                assert any("kept /1/0" in note for note in result.notes)

                await client.wait_registered(timeout=10)
                assert sorted(client.sessions) == [7, 101, 102]
                assert tree.read(Path.of(1, 2), BOOTSTRAP).value(1) == 90  # type: ignore[union-attr]
                for store in (old_store, telco_store, cloud_store):
                    assert await store.get_registration("charger-read") is not None
            finally:
                if client is not None:
                    await client.stop()
                await bootstrap.stop()
                for server in servers:
                    await server.stop()

    run(main(), timeout=60)
