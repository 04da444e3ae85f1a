"""Factory credentials to registered, end to end: our client engine, bootstrap server and management servers.

The charger knows only the bootstrap server's coaps:// URI and its factory PSK. The bootstrap server
(sharing its store with the telco management server) generates the charger's management PSK, writes
/0 and /1 for a telco server (DTLS, generated PSK) and a cloud server (plain CoAP, its own store),
and the client engine then registers with both.
"""

from __future__ import annotations

import asyncio
from pathlib import Path as FilePath

from spmp.bootstrap.server import BootstrapServer
from spmp.client.accounts import factory_bootstrap
from spmp.client.device import device_object
from spmp.client.engine import Lwm2mClient
from spmp.client.registration import ClientOptions
from spmp.client.tree import BOOTSTRAP, ObjectTree
from spmp.lwm2m.path import Path
from spmp.server import ManagementServer, StorePskCache
from spmp.store import (
    BootstrapConfig,
    MemoryStore,
    SecurityInfo,
    SecurityMode,
    SecurityScope,
    ServerAccount,
    SqliteStore,
)
from test_bootstrap_server import BS_KEY, FAST, REGISTRY, run

OPTIONS = ClientOptions(
    coap=FAST, local_host="127.0.0.1", retry_initial=0.1, retry_max=0.5, bootstrap_timeout=10.0, deregister_timeout=1.0
)


def test_factory_credentials_to_two_management_servers() -> None:
    async def main() -> None:
        async with MemoryStore() as store, MemoryStore() as cloud_store:
            telco = ManagementServer(store, REGISTRY, coap_port=0, coaps_port=0, params=FAST, psk_refresh=0.2)
            cloud = ManagementServer(cloud_store, REGISTRY, coap_port=0, coaps_port=0, params=FAST, insecure=True)
            bootstrap = BootstrapServer(store, REGISTRY, coap_port=0, coaps_port=0, coap_params=FAST, step_timeout=5)
            await telco.start()
            await cloud.start()
            await bootstrap.start()
            client: Lwm2mClient | None = None
            try:
                telco_uri = f"coaps://127.0.0.1:{telco.coaps_address[1]}"  # type: ignore[index]
                cloud_uri = f"coap://127.0.0.1:{cloud.coap_address[1]}"  # type: ignore[index]
                accounts = (
                    ServerAccount(101, telco_uri, SecurityMode.PSK, lifetime=60),
                    ServerAccount(102, cloud_uri, lifetime=60),
                )
                await store.put_bootstrap_config(BootstrapConfig("*", accounts))
                await store.put_security(SecurityInfo("charger-e2e", "factory-e2e", BS_KEY), SecurityScope.BOOTSTRAP)
                await bootstrap.psks.load()

                tree = ObjectTree(REGISTRY)
                bs_uri = f"coaps://127.0.0.1:{bootstrap.coaps_address[1]}"  # type: ignore[index]
                for enabler in (*factory_bootstrap(bs_uri, "factory-e2e", BS_KEY), device_object()):
                    tree.add(enabler)
                client = Lwm2mClient("charger-e2e", tree, REGISTRY, options=OPTIONS)
                waiting = asyncio.ensure_future(bootstrap.wait_for_result("charger-e2e", 15))
                await client.start()
                result = await waiting
                assert result.ok, result.reason
                await client.wait_registered(timeout=15)

                generated = await store.get_security("charger-e2e", SecurityScope.SERVER)
                assert generated is not None and generated.psk_identity == "charger-e2e"
                telco_security = next(
                    tree.read(Path.of(0, i), BOOTSTRAP)
                    for i in tree.enabler(0).instance_ids()
                    if tree.read(Path.of(0, i), BOOTSTRAP).value(10) == 101  # type: ignore[union-attr]
                )
                assert telco_security.value(5) == generated.psk_key  # type: ignore[union-attr]
                registered = await store.get_registration("charger-e2e")
                assert registered is not None and registered.dtls_identity == "charger-e2e"
                assert await cloud_store.get_registration("charger-e2e") is not None
            finally:
                if client is not None:
                    await client.stop()
                await bootstrap.stop()
                await cloud.stop()
                await telco.stop()

    run(main(), timeout=60)


def test_psk_cache_looks_up_unknown_identities_with_a_negative_cache() -> None:
    async def main() -> None:
        async with MemoryStore() as store:
            cache = StorePskCache(store, negative_ttl=0.2)
            await cache.load()
            assert cache.lookup("late") is None
            assert cache.lookup("late") is None  # one look-up runs already: not a second
            await cache.wait_refreshed()
            assert cache.store_lookups == 1
            for _ in range(50):  # a flood of the same unknown identity: answered from the negative cache
                assert cache.lookup("late") is None
            await cache.wait_refreshed()
            assert cache.store_lookups == 1
            # Another process stores the key; once the negative entry expires, the next attempt schedules
            # a look-up and the attempt after it succeeds.
            await store.put_security(SecurityInfo("dev-late", "late", b"k" * 16), SecurityScope.SERVER)
            await asyncio.sleep(0.25)
            assert cache.lookup("late") is None
            await cache.wait_refreshed()
            assert cache.lookup("late") == b"k" * 16 and cache.endpoint_of("late") == "dev-late"
            assert cache.store_lookups == 2
            # Many different made-up identities: bounded by max_pending.
            for i in range(100):
                cache.lookup(f"bogus-{i}")
            assert cache.store_lookups <= 2 + cache.max_pending
            await cache.wait_refreshed()
            await cache.close()

    run(main(), timeout=10)


def test_factory_bootstrap_with_a_separate_bootstrap_server_registers_within_seconds(tmp_path: FilePath) -> None:
    """Two servers, two Store objects on one SQLite file: the management server's periodic PSK reload
    (30 s) is not what lets the freshly bootstrapped device in, the look-up of its unknown identity is."""

    async def main() -> None:
        db = tmp_path / "spmp.db"
        async with SqliteStore(db) as telco_store, SqliteStore(db) as bootstrap_store:
            telco = ManagementServer(telco_store, REGISTRY, coap_port=0, coaps_port=0, params=FAST)
            assert telco.psk_refresh >= 30
            bootstrap = BootstrapServer(
                bootstrap_store, REGISTRY, coap_port=0, coaps_port=0, coap_params=FAST, step_timeout=5
            )
            await telco.start()
            await bootstrap.start()
            client: Lwm2mClient | None = None
            try:
                telco_uri = f"coaps://127.0.0.1:{telco.coaps_address[1]}"  # type: ignore[index]
                account = ServerAccount(101, telco_uri, SecurityMode.PSK, lifetime=60)
                await bootstrap_store.put_bootstrap_config(BootstrapConfig("*", (account,)))
                await bootstrap_store.put_security(
                    SecurityInfo("charger-sep", "factory-sep", BS_KEY), SecurityScope.BOOTSTRAP
                )
                await bootstrap.psks.load()

                tree = ObjectTree(REGISTRY)
                bs_uri = f"coaps://127.0.0.1:{bootstrap.coaps_address[1]}"  # type: ignore[index]
                for enabler in (*factory_bootstrap(bs_uri, "factory-sep", BS_KEY), device_object()):
                    tree.add(enabler)
                # The client's defaults: the first retry after a refused registration comes 2 s later.
                options = ClientOptions(
                    coap=FAST, local_host="127.0.0.1", bootstrap_timeout=10.0, deregister_timeout=1.0
                )
                client = Lwm2mClient("charger-sep", tree, REGISTRY, options=options)
                waiting = asyncio.ensure_future(bootstrap.wait_for_result("charger-sep", 15))
                await client.start()
                result = await waiting
                assert result.ok, result.reason
                finished = asyncio.get_running_loop().time()
                await client.wait_registered(timeout=10)
                assert asyncio.get_running_loop().time() - finished < 6
                registered = await telco_store.get_registration("charger-sep")
                assert registered is not None and registered.dtls_identity == "charger-sep"
            finally:
                if client is not None:
                    await client.stop()
                await bootstrap.stop()
                await telco.stop()

    run(main(), timeout=40)
