"""The client engine tells a refused key from an unreachable server (issue 3).

Our management server over DTLS PSK on 127.0.0.1, our client engine with a wrong key or an unknown
identity: the session in state ``auth-failed``, one quick retry, then one ERROR "authentication refused
by coaps://… (wrong PSK or unknown identity)" and retries on the long authentication backoff (not the
reachability one), and a registration as soon as the server is given the key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from _server_helpers import FAST, make_server, run
from spmp.client.accounts import ServerSpec, direct_servers
from spmp.client.device import device_object
from spmp.client.engine import Lwm2mClient
from spmp.client.registration import ClientOptions, SessionState, auth_refusal
from spmp.client.tree import ObjectTree
from spmp.coap.dtls import DtlsHandshakeError
from spmp.lwm2m.objects import default_registry
from spmp.store import SecurityInfo, SqliteStore

REGISTRY = default_registry()
RIGHT = b"right-key-000001"
WRONG = b"wrong-key-000001"


async def _until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_defaults_retry_refused_credentials_slowly() -> None:
    options = ClientOptions()
    assert options.auth_retry_initial >= 10 * options.retry_initial
    assert options.auth_retry_max == 600.0
    assert auth_refusal(DtlsHandshakeError("h", 1, "x", alert=20)) == "wrong PSK or unknown identity"
    assert auth_refusal(DtlsHandshakeError("h", 1, "x", alert=115)) == "wrong PSK or unknown identity"
    assert auth_refusal(DtlsHandshakeError("h", 1, "x", alert=51)) == "wrong PSK or unknown identity"
    assert auth_refusal(DtlsHandshakeError("h", 1, "x", alert=48)) == "certificate refused"
    assert auth_refusal(DtlsHandshakeError("h", 1, "no answer within 3 s")) is None  # unreachable
    assert auth_refusal(OSError("network unreachable")) is None


@pytest.mark.parametrize(("identity", "key"), [("dev-a", WRONG), ("nobody", RIGHT)], ids=["wrong-key", "unknown"])
def test_refused_credentials_are_an_error_once_then_slow_retries_until_provisioned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, identity: str, key: bytes
) -> None:
    caplog.set_level(logging.INFO, logger="spmp.client")

    async def main() -> None:
        async with SqliteStore(tmp_path / "spmp.db") as store:
            await store.put_security(SecurityInfo("dev-a", "dev-a", RIGHT))
            server = make_server(store, insecure=False)
            await server.start()
            assert server.coaps_address is not None
            uri = f"coaps://127.0.0.1:{server.coaps_address[1]}"
            tree = ObjectTree(REGISTRY)
            spec = ServerSpec(uri, short_server_id=1, lifetime=300, psk_identity=identity, psk_key=key)
            for enabler in direct_servers([spec]):
                tree.add(enabler)
            tree.add(device_object(serial="SN-A"))
            options = ClientOptions(
                coap=FAST,
                local_host="127.0.0.1",
                retry_initial=0.05,
                auth_retry_initial=0.2,
                auth_retry_max=0.4,
                handshake_timeout=5.0,
                deregister_timeout=1.0,
            )
            client = Lwm2mClient("dev-a", tree, REGISTRY, options=options)
            await client.start()
            try:
                await client.wait_running(5.0)
                session = client.session(1)
                await _until(lambda: session.failures >= 4)
                assert session.state == "auth-failed"
                assert session.state is SessionState.AUTH_FAILED
                client_records = [r for r in caplog.records if r.name.startswith("spmp.client")]
                errors = [r for r in client_records if r.levelno == logging.ERROR]
                assert [r.getMessage() for r in errors] == [
                    f"authentication refused by {uri} (wrong PSK or unknown identity)"
                ]
                assert not [r for r in client_records if r.getMessage() == "server unreachable, retrying"]
                waits = [r.retry_in for r in client_records if "authentication" in r.getMessage()]  # type: ignore[attr-defined]
                # One quick retry (the server may be loading the key), then the authentication backoff.
                assert waits[:4] == [0.05, 0.2, 0.4, 0.4]
                assert server.stats()["refusals"]["dtls_handshakes_failed"] >= 4

                # The server is given the client's key: the next attempt registers.
                info = SecurityInfo("dev-a", identity, key)
                await store.put_security(info)
                assert server.psk_cache is not None
                await server.psk_cache.put(info)
                await client.wait_registered(1, timeout=10.0)
                assert session.state == "registered"
                assert server.registration("dev-a") is not None
            finally:
                await client.stop()
                await server.stop()

    run(main(), timeout=60.0)
