"""Processes the fleet benchmark starts (each in its own interpreter), and its UDP load client.

``python benchmarks/_fleet_procs.py echo --port P [--tuned]``      bare asyncio UDP echo
``python benchmarks/_fleet_procs.py aiocoap --port P``             aiocoap answering GET /hello
``python benchmarks/_fleet_procs.py spmp --data DIR --token T ...``  ManagementServer + REST API
``python benchmarks/_fleet_procs.py probe --url U --token T ...``  REST latency probe (JSON on stdout)

Servers print one ``READY {json}`` line on stdout when listening and stop on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_MID_FLAG = 0x40  # CoAP version 1


def _ready(info: dict[str, Any]) -> None:
    print("READY " + json.dumps(info), flush=True)


async def _until_sigterm() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# ------------------------------------------------------------------------------------------ echo


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


async def echo_server(port: int, tuned: bool) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", port))
    if tuned and hasattr(transport, "max_size"):
        transport.max_size = 4096  # type: ignore[attr-defined]
    _ready({"port": transport.get_extra_info("sockname")[1]})
    await _until_sigterm()
    transport.close()


# --------------------------------------------------------------------------------------- aiocoap


async def aiocoap_server(port: int) -> None:
    import aiocoap
    from aiocoap import resource

    class Hello(resource.Resource):
        async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
            return aiocoap.Message(payload=b"48.25", content_format=0)

    site = resource.Site()
    site.add_resource(["hello"], Hello())
    context = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    _ready({"port": port})
    await _until_sigterm()
    await context.shutdown()


# ------------------------------------------------------------------------------------ spmp server


async def spmp_server(data: Path, token: str, discover: bool, profile: str | None, inline: bool) -> None:
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from spmp.api.app import create_app
    from spmp.lwm2m.objects import default_registry
    from spmp.server import ManagementServer
    from spmp.store import SqliteStore

    async with SqliteStore(data / "spmp.db", threaded=not inline) as store:
        server = ManagementServer(
            store,
            default_registry(),
            host="127.0.0.1",
            coap_port=0,
            coaps_port=0,
            insecure=True,
            psk_refresh=0,
            # All fleet devices share 127.0.0.1: the per-address registration limit (20/s) would
            # measure the limiter, not the server. Everything else is the default configuration.
            registration_rate=1e9,
            registration_burst=1_000_000_000,
            discover_on_register=discover,
        )
        await server.start()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        api_port = sock.getsockname()[1]
        sock.close()
        app = create_app(server, store, token)

        async def bench_stats(request: Request) -> JSONResponse:
            return JSONResponse(server.stats())

        app.router.routes.append(Route("/bench/stats", bench_stats, methods=["GET"]))
        config = uvicorn.Config(app, host="127.0.0.1", port=api_port, log_level="warning", lifespan="off")
        http = uvicorn.Server(config)
        http.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        api = asyncio.get_running_loop().create_task(http.serve())
        while not http.started:
            await asyncio.sleep(0.02)
        assert server.coap_address is not None
        profiler: Any = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        _ready({"coap_port": server.coap_address[1], "api_port": api_port, "pid": os.getpid()})
        try:
            await _until_sigterm()
        finally:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile)
            http.should_exit = True
            await api
            await server.stop()


# ------------------------------------------------------------------------------------- REST probe


def rest_probe(url: str, token: str, paths: list[str], seconds: float, rate: float) -> None:
    import httpx

    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10.0) as client:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            started = time.perf_counter()
            try:
                response = client.get(paths[i % len(paths)])
                if response.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - started)
            i += 1
            pause = 1.0 / rate - (time.perf_counter() - started)
            if pause > 0:
                time.sleep(pause)
    latencies.sort()
    out = {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else None,
        "max_ms": latencies[-1] * 1000 if latencies else None,
    }
    print(json.dumps(out), flush=True)


# ------------------------------------------------------------------------------- UDP load client


class _Load(asyncio.DatagramProtocol):
    """Keeps ``window`` datagrams in flight on one socket; ``make(mid)`` builds each one."""

    def __init__(self, make: Any, window: int, counter: list[int]) -> None:
        self.make = make
        self.window = window
        self.counter = counter
        self.mid = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def start(self) -> None:
        for _ in range(self.window):
            self._send()

    def _send(self) -> None:
        self.mid = (self.mid + 1) & 0xFFFF
        self.transport.sendto(self.make(self.mid))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.counter[0] += 1
        self._send()


async def udp_load(port: int, make: Any, *, sockets: int, window: int, seconds: float, tuned: bool) -> float:
    """Round trips per second (a reply triggers the next request) over ``sockets`` x ``window``."""
    loop = asyncio.get_running_loop()
    counter = [0]
    protocols: list[_Load] = []
    transports: list[Any] = []
    for _ in range(sockets):
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Load(make, window, counter), remote_addr=("127.0.0.1", port)
        )
        if tuned and hasattr(transport, "max_size"):
            transport.max_size = 4096
        transports.append(transport)
        protocols.append(protocol)
    for protocol in protocols:
        protocol.start()
    await asyncio.sleep(0.5)  # warm up
    start_count, started = counter[0], time.perf_counter()
    await asyncio.sleep(seconds)
    rate = (counter[0] - start_count) / (time.perf_counter() - started)
    for transport in transports:
        transport.close()
    await asyncio.sleep(0.05)
    return rate


# ------------------------------------------------------------------- C load generator (_blast.c)


def blast_binary() -> Path:
    """Compile ``_blast.c`` with gcc (once per source version) into the temporary directory."""
    import hashlib
    import tempfile

    source = Path(__file__).with_name("_blast.c")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    binary = Path(tempfile.gettempdir()) / f"spmp-blast-{digest}"
    if not binary.exists():
        partial = binary.with_suffix(".tmp")
        subprocess.run(["gcc", "-O2", "-o", str(partial), str(source)], check=True)
        partial.replace(binary)
    return binary


async def blast(
    port: int,
    templates: list[tuple[int, int, bytes]],
    *,
    seconds: float,
    rate: float = 0.0,
    window: int = 0,
    mid_base: int = 0,
    seq_add: int = 0,
) -> dict[str, Any]:
    """Run the C generator against 127.0.0.1:``port``: ``templates`` are (fd or -1, Observe offset or -1,
    datagram); the fds are inherited by the child. Returns its JSON report."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as out:
        for fd, obs, data in templates:
            out.write(f"{fd} {obs} {data.hex()}\n")
        name = out.name
    fds = sorted({fd for fd, _, _ in templates if fd >= 0})
    mode = ["--rate", str(rate)] if rate > 0 else ["--window", str(window)]
    args = [str(blast_binary()), "--port", str(port), "--templates", name, "--seconds", str(seconds), *mode]
    bound = int(rate * seconds * 1.1) + 1 if rate > 0 else 10_000_000  # bounded in count as well as time
    args += ["--mid-base", str(mid_base), "--seq-add", str(seq_add), "--max", str(bound)]
    try:
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, pass_fds=fds)
        text, _ = await proc.communicate()
    finally:
        os.unlink(name)
    if proc.returncode != 0:
        raise RuntimeError(f"_blast failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(text)
    return result


async def blast_echo(port: int, *, sockets: int, window: int, seconds: float) -> float:
    """Round trips/s of the C generator against an echo server: ``sockets`` own sockets, ``window`` in flight
    in total, 40-byte datagrams shaped like a CoAP header (so the same code path as ingest)."""
    datagram = bytes((0x40, 0x45, 0, 0)) + b"x" * 36
    result = await blast(port, [(-1, -1, datagram)] * sockets, seconds=seconds, window=window)
    return float(result["replies_in_time"]) / float(result["seconds"])


def coap_get(mid: int) -> bytes:
    """CON GET /hello with a 2-byte token."""
    return bytes((_MID_FLAG | 2, 1, mid >> 8, mid & 0xFF, mid >> 8, mid & 0xFF, 0xB5)) + b"hello"


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("echo")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tuned", action="store_true")
    p = sub.add_parser("aiocoap")
    p.add_argument("--port", type=int, required=True)
    p = sub.add_parser("spmp")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--no-discover", action="store_true")
    p.add_argument("--profile")
    p.add_argument("--inline", action="store_true", help="SqliteStore(threaded=False)")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop")
    p = sub.add_parser("probe")
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--path", action="append", required=True)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args()
    if args.what == "echo":
        asyncio.run(echo_server(args.port, args.tuned))
    elif args.what == "aiocoap":
        asyncio.run(aiocoap_server(args.port))
    elif args.what == "spmp":
        coro = spmp_server(args.data, args.token, not args.no_discover, args.profile, args.inline)
        if args.uvloop:
            import uvloop

            uvloop.run(coro)
        else:
            asyncio.run(coro)
    else:
        rest_probe(args.url, args.token, args.path, args.seconds, args.rate)


if __name__ == "__main__":
    sys.exit(main())
