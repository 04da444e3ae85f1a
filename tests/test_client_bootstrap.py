"""Bootstrap of the client engine, and the engine against libcoap's command-line clients.

* Client-initiated bootstrap end to end against the test peer of ``_client_peer.py``: Bootstrap-
  Request, Discover, Delete, Write, a refused (4.06) and an accepted Finish, then registration
  with the written account.
* libcoap ``coap-client-notls`` reading (text, TLV), discovering and observing the engine's resources
  over the session endpoint of a registered NoSec server account.
* libcoap ``coap-client-openssl`` over DTLS PSK: a server-initiated bootstrap done entirely by
  coap-client against the engine's DTLS listener (the peer opens the DTLS session), after which the
  engine registers with the account coap-client wrote.
"""

from __future__ import annotations

import asyncio
from pathlib import Path as FilePath
from typing import Any

from _client_peer import TestServer
from _peers import needs_tools
from spmp.client.accounts import ServerSpec, factory_bootstrap
from spmp.client.device import device_object
from spmp.client.engine import ClientState, Lwm2mClient
from spmp.client.tree import ObjectTree
from spmp.coap.message import Code, Request
from spmp.lwm2m import codecs
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.link import parse_bootstrap_discover, parse_discover
from spmp.lwm2m.node import ObjectInstance, instance_from_model
from spmp.lwm2m.objects.security import SECURITY
from spmp.lwm2m.objects.server import SERVER
from spmp.lwm2m.path import Path
from test_client_engine import OPTIONS, REGISTRY, make_tree, run, set_temperature

needs_notls = needs_tools("coap-client-notls")
needs_openssl = needs_tools("coap-client-openssl")


def security_instance(iid: int, uri: str, ssid: int) -> ObjectInstance:
    return instance_from_model(SECURITY, iid, {0: uri, 1: False, 2: 3, 3: b"", 4: b"", 5: b"", 10: ssid})


def server_instance(iid: int, ssid: int, lifetime: int = 60) -> ObjectInstance:
    return instance_from_model(SERVER, iid, {0: ssid, 1: lifetime, 6: True, 7: "U"})


def tlv(node: ObjectInstance, path: str) -> bytes:
    return codecs.encode(node, Path.parse(path), ContentFormat.TLV, REGISTRY)


def bootstrap_tree(uri: str, psk: tuple[str, bytes] | None = None) -> ObjectTree:
    tree = ObjectTree(REGISTRY)
    security, server = factory_bootstrap(uri, *(psk or (None, None)))
    tree.add(security)
    tree.add(server)
    tree.add(device_object())
    return tree


def test_client_initiated_bootstrap_end_to_end() -> None:
    async def main() -> None:
        bs, dm = await TestServer.start(), await TestServer.start()
        results: dict[str, Any] = {}

        async def sequence(client_peer: Any) -> None:
            bs.client = client_peer
            discover = await bs.request(Request(Code.GET, "", accept=ContentFormat.LINK))
            results["discover"] = parse_bootstrap_discover(discover.payload)
            results["delete"] = (await bs.request(Request(Code.DELETE, ""))).code
            write = await bs.request(
                Request(Code.PUT, "0/1", payload=tlv(security_instance(1, dm.uri, 42), "/0/1"), content_format=11542)
            )
            results["write_security"] = write.code
            # Finish with a Security account but no Server instance: inconsistent, 4.06.
            results["early_finish"] = (await bs.request(Request(Code.POST, "bs"))).code
            write = await bs.request(
                Request(Code.PUT, "1/0", payload=tlv(server_instance(0, 42), "/1/0"), content_format=11542)
            )
            results["write_server"] = write.code
            results["read_server"] = (await bs.request(Request(Code.GET, "1", accept=ContentFormat.TLV))).code
            results["read_security"] = (await bs.request(Request(Code.GET, "0"))).code
            results["finish"] = (await bs.request(Request(Code.POST, "bs"))).code

        tasks: list[asyncio.Task[None]] = []
        bs.on_bootstrap_request = lambda peer: tasks.append(asyncio.get_running_loop().create_task(sequence(peer)))
        client = Lwm2mClient("dev-bs", bootstrap_tree(bs.uri), REGISTRY, options=OPTIONS)
        await client.start()
        try:
            await client.wait_registered(42, timeout=10)
            assert bs.seen.bootstrap_requests == [("ep=dev-bs", "pct=112")]
            discover = results["discover"]
            assert discover.lwm2m_version == "1.1"
            paths = [link.path for link in discover.links]
            assert Path.parse("/0/0") in paths and Path.parse("/3/0") in paths
            assert results["delete"] == Code.DELETED
            assert results["write_security"] == Code.CHANGED
            assert results["early_finish"] == Code.NOT_ACCEPTABLE
            assert results["write_server"] == Code.CHANGED
            assert results["read_server"] == Code.CONTENT
            assert results["read_security"] == Code.METHOD_NOT_ALLOWED
            assert results["finish"] == Code.CHANGED
            assert client.bootstraps == 1 and client.state is ClientState.RUNNING
            reg = dm.seen.registers[0]
            assert "ep=dev-bs" in reg.query and "lt=60" in reg.query
            # The bootstrap account survived the Bootstrap-Delete of "/".
            assert client.tree.enabler(0).instance_ids() == [0, 1]
        finally:
            await client.stop()
            for task in tasks:
                await task
            await bs.close()
            await dm.close()
        assert dm.seen.deregisters == ["rd/1"]

    run(main())


def test_bootstrap_is_retried_when_the_server_does_not_answer() -> None:
    async def main() -> None:
        bs = await TestServer.start()
        bs.switch.down = True
        client = Lwm2mClient("dev-bs2", bootstrap_tree(bs.uri), REGISTRY, options=OPTIONS)
        await client.start()
        try:
            await asyncio.sleep(0.05)
            assert client.state is ClientState.BOOTSTRAPPING
            bs.switch.down = False
            await bs.wait_for(lambda: len(bs.seen.bootstrap_requests) >= 1, timeout=10)
        finally:
            await client.stop()
            await bs.close()

    run(main())


# -- libcoap ---------------------------------------------------------------------------------------------


async def coap_client(*args: str, program: str = "coap-client-notls", timeout: float = 15.0) -> bytes:
    process = await asyncio.create_subprocess_exec(
        program, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, stderr.decode()
    return stdout


@needs_notls
def test_libcoap_reads_discovers_and_observes_the_client(tmp_path: FilePath) -> None:
    async def main() -> None:
        server = await TestServer.start()
        tree, temperature = make_tree([ServerSpec(server.uri, short_server_id=9)])
        client = Lwm2mClient("dev-libcoap", tree, REGISTRY, options=OPTIONS)
        await client.start()
        try:
            await client.wait_registered(9)
            address = client.session(9).local_address
            assert address is not None
            base = f"coap://127.0.0.1:{address[1]}"
            assert (await coap_client("-B", "5", "-A", "0", f"{base}/3/0/0")).strip() == b"SPMP"
            out = tmp_path / "tlv.bin"  # -o writes the payload exactly (stdout may get a newline)
            await coap_client("-B", "5", "-A", "11542", "-o", str(out), f"{base}/3/0/0")
            tlv_payload = out.read_bytes()
            node = codecs.decode(tlv_payload, Path.parse("/3/0/0"), ContentFormat.TLV, REGISTRY)
            assert node.value == "SPMP"  # type: ignore[union-attr]
            links = parse_discover(await coap_client("-B", "5", "-A", "40", f"{base}/3/0"))
            assert Path.parse("/3/0/4") in [link.path for link in links]

            observer = asyncio.get_running_loop().create_task(
                coap_client("-s", "3", "-B", "5", "-w", "-A", "0", f"{base}/3303/0/5700")
            )
            reporter = client.session(9).reporter
            for _ in range(1000):  # until coap-client's observation is in place (10 s at most)
                if reporter.observations:
                    break
                await asyncio.sleep(0.01)
            assert reporter.observations
            for value in (21.5, 22.5):
                set_temperature(temperature, value)
                await asyncio.sleep(0.3)
            output = (await observer).split()
            assert output[:3] == [b"20", b"21.5", b"22.5"]
        finally:
            await client.stop()
            await server.close()

    run(main())


@needs_openssl
def test_server_initiated_bootstrap_over_dtls_with_libcoap(tmp_path: FilePath) -> None:
    async def main() -> None:
        dm = await TestServer.start()
        tree = ObjectTree(REGISTRY)
        security, server_object = factory_bootstrap("coap://127.0.0.1:9")  # replaced below: no account at all
        security.delete(0)
        tree.add(security)
        tree.add(server_object)
        tree.add(device_object())
        client = Lwm2mClient(
            "dev-sib", tree, REGISTRY, options=OPTIONS, listen=("127.0.0.1", 0), listen_psk=("bs-id", b"bs-secret")
        )
        await client.start()
        try:
            await asyncio.sleep(0.05)
            assert client.state is ClientState.WAITING_FOR_BOOTSTRAP
            assert client.listener is not None
            port = client.listener.transport.local_address[1]
            base = f"coaps://127.0.0.1:{port}"
            psk = ["-u", "bs-id", "-k", "bs-secret", "-B", "5"]
            prog = "coap-client-openssl"
            discover = parse_bootstrap_discover(await coap_client(*psk, "-A", "40", f"{base}/", program=prog))
            assert discover.lwm2m_version == "1.1"
            sec_file = tmp_path / "sec.tlv"
            sec_file.write_bytes(tlv(security_instance(0, dm.uri, 5), "/0/0"))
            srv_file = tmp_path / "srv.tlv"
            srv_file.write_bytes(tlv(server_instance(0, 5), "/1/0"))
            await coap_client(*psk, "-m", "put", "-t", "11542", "-f", str(sec_file), f"{base}/0/0", program=prog)
            await coap_client(*psk, "-m", "put", "-t", "11542", "-f", str(srv_file), f"{base}/1/0", program=prog)
            await coap_client(*psk, "-m", "post", f"{base}/bs", program=prog)
            await client.wait_registered(5, timeout=10)
            assert client.bootstraps == 1
            assert "ep=dev-sib" in dm.seen.registers[0].query
        finally:
            await client.stop()
            await dm.close()

    run(main())
