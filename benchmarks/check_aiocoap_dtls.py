"""aiocoap's DTLS server (tinydtls_server, PSK) against issue 3's requirements, next to SPMP's DtlsServerTransport.

Each server runs in its own process (``--serve aiocoap|spmp PORT``) answering ``GET /hello`` with a tiny
payload, PSK identity ``dev1``. Measured with libcoap's ``coap-client-openssl`` (a real, independent DTLS
client) for behaviour, and with SPMP's DtlsClientTransport + Endpoint (same load generator for both
servers) for throughput:

1. the correct key works?
2. a wrong key: how long until coap-client-openssl gives up, and what the server logs;
3. an unknown identity: the same;
4. requests/s for a tiny confirmable GET over established DTLS sessions (8 sessions, one request in
   flight each, for ``--seconds``).

    .venv/bin/python benchmarks/check_aiocoap_dtls.py [--seconds 5] [--give-up 60]

Needs ``pip install 'aiocoap[tinydtls]'`` (DTLSSocket builds with Debian autoconf automake libtool
build-essential) and Debian libcoap3-bin. Prints a Markdown table (docs/security.md quotes one run).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass

IDENTITY = "dev1"
KEY = b"secretPSK-0123456"
PAYLOAD = b"hi"


# ------------------------------------------------------------------------------------------ the servers


async def serve_aiocoap(port: int) -> None:
    import aiocoap
    from aiocoap import resource
    from aiocoap.credentials import CredentialsMap

    class Hello(resource.Resource):
        async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
            return aiocoap.Message(payload=PAYLOAD)

    site = resource.Site()
    site.add_resource(["hello"], Hello())
    credentials = CredentialsMap()
    credentials.load_from_dict(
        {":" + IDENTITY: {"dtls": {"psk": {"hex": KEY.hex()}, "client-identity": {"ascii": IDENTITY}}}}
    )
    # tinydtls_server listens on the bind port + 1 (the plain port is the bind port itself).
    context = await aiocoap.Context.create_server_context(
        site, bind=("127.0.0.1", port - 1), transports=["tinydtls_server"], server_credentials=credentials
    )
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await context.shutdown()


async def serve_spmp(port: int) -> None:
    from spmp.coap.dtls import InMemoryPskStore
    from spmp.coap.dtls_server import DtlsServerTransport
    from spmp.coap.endpoint import CoapParameters, Endpoint
    from spmp.coap.message import Code, Request, Response

    async def handler(request: Request) -> Response:
        return Response(Code.CONTENT, PAYLOAD)

    transport = await DtlsServerTransport.bind("127.0.0.1", port, InMemoryPskStore({IDENTITY: KEY}))
    endpoint = Endpoint(transport, handler, params=CoapParameters(nstart=64))
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await endpoint.close()


# ------------------------------------------------------------------------------------------ measuring


@dataclass
class Result:
    correct: str = ""
    wrong_key: str = ""
    wrong_key_log: str = ""
    unknown_identity: str = ""
    unknown_identity_log: str = ""
    rate: str = ""


class Server:
    def __init__(self, kind: str, port: int) -> None:
        self.kind = kind
        self.port = port
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = f"/tmp/check_aiocoap_dtls_{kind}_{os.getpid()}.log"

    def __enter__(self) -> Server:
        env = dict(os.environ, AIOCOAP_DTLSSERVER_ENABLED="1", PYTHONUNBUFFERED="1")
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", self.kind, str(self.port)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"{self.kind} server did not start: {open(self.log_path).read()[-2000:]}")
        return self

    def log_since(self, offset: int) -> str:
        self.log.flush()
        with open(self.log_path) as f:
            f.seek(offset)
            return f.read()

    def log_size(self) -> int:
        self.log.flush()
        return os.path.getsize(self.log_path)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        self.log.close()
        os.unlink(self.log_path)


def libcoap(port: int, identity: str, key: bytes, give_up: float) -> tuple[float, str]:
    """Run one GET with coap-client-openssl; (seconds, its output)."""
    started = time.perf_counter()
    args = ["coap-client-openssl", "-m", "get", "-B", str(int(give_up)), "-u", identity, "-k", key.decode()]
    try:
        out = subprocess.run(
            [*args, f"coaps://127.0.0.1:{port}/hello"],
            check=False,
            capture_output=True,
            text=True,
            timeout=give_up + 30,
        )
        text = out.stdout + out.stderr
    except subprocess.TimeoutExpired:
        text = "(killed: no result)"
    return time.perf_counter() - started, text


def summarize_log(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "nothing"
    return " / ".join(dict.fromkeys(line[:110] for line in lines))[:300]


async def rate(port: int, seconds: float, sessions: int = 8) -> float:
    from spmp.coap.dtls_client import DtlsClientTransport
    from spmp.coap.endpoint import Endpoint
    from spmp.coap.message import Code, Request

    clients = [await DtlsClientTransport.connect("127.0.0.1", port, IDENTITY, KEY) for _ in range(sessions)]
    endpoints = [Endpoint(c) for c in clients]
    done = 0
    deadline = asyncio.get_running_loop().time() + seconds

    async def worker(endpoint: Endpoint, client: DtlsClientTransport) -> None:
        nonlocal done
        while asyncio.get_running_loop().time() < deadline:
            response = await endpoint.request(client.peer, Request(Code.GET, "/hello"))
            assert response.payload == PAYLOAD
            done += 1

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(e, c) for e, c in zip(endpoints, clients, strict=True)))
        return done / (time.perf_counter() - started)
    finally:
        for endpoint in endpoints:
            await endpoint.close()


def measure(kind: str, port: int, seconds: float, give_up: float) -> Result:
    result = Result()
    with Server(kind, port) as server:
        took, out = libcoap(port, IDENTITY, KEY, give_up)
        ok = PAYLOAD.decode() in out.split()
        result.correct = f"{'yes' if ok else 'NO'} ({took * 1000:.0f} ms incl. process start)"
        for label, identity, key in (("wrong_key", IDENTITY, b"not-the-key-0000"), ("unknown_identity", "nobody", KEY)):
            offset = server.log_size()
            took, out = libcoap(port, identity, key, give_up)
            time.sleep(0.5)
            failed = "ERR" in out or PAYLOAD.decode() not in out.split()
            verdict = "refused" if failed else "ACCEPTED"
            setattr(result, label, f"{verdict} after {took:.1f} s")
            setattr(result, label + "_log", summarize_log(server.log_since(offset)))
        result.rate = f"{asyncio.run(rate(port, seconds)):.0f}"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput run length per server")
    parser.add_argument("--give-up", type=float, default=60.0, help="coap-client-openssl -B (its own wait limit)")
    args = parser.parse_args()
    if args.serve:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
        kind, port = args.serve[0], int(args.serve[1])
        asyncio.run(serve_aiocoap(port) if kind == "aiocoap" else serve_spmp(port))
        return
    logging.basicConfig(level=logging.ERROR)
    rows = {"aiocoap tinydtls_server": measure("aiocoap", 47685, args.seconds, args.give_up)}
    rows["SPMP DtlsServerTransport + Endpoint"] = measure("spmp", 47785, args.seconds, args.give_up)
    print(f"coap-client-openssl -B {args.give_up:g}; throughput: 8 DTLS sessions, {args.seconds:g} s, loopback\n")
    print("| | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for label, field in (
        ("correct PSK works", "correct"),
        ("wrong key", "wrong_key"),
        ("server log on a wrong key", "wrong_key_log"),
        ("unknown identity", "unknown_identity"),
        ("server log on an unknown identity", "unknown_identity_log"),
        ("tiny CON GET over DTLS, requests/s", "rate"),
    ):
        print(f"| {label} | " + " | ".join(getattr(r, field).replace("|", "/") for r in rows.values()) + " |")


if __name__ == "__main__":
    main()
