"""Benchmark: the management server under a simulated fleet, beside two baselines, on loopback.

Measured in one run (each phase bounded to seconds or a few minutes, all traffic on 127.0.0.1):

1. baseline: bare asyncio UDP echo round trips/s, server in another process, stock transport and
   tuned (``max_size`` 4 KiB, see docs/reference NOTES);
2. baseline: a plain aiocoap server answering CON GET (requests/s);
3. the SPMP management server (another process, SQLite store in a temporary directory, plain CoAP,
   REST API): a registration storm of N fleet devices (one UDP socket each), notification ingest
   end to end into SQLite at increasing offered rates (CON notifications of M observed devices;
   sustained = every notification stored and acknowledged, no backlog left 2 s after the phase),
   REST read latency p50/p99 while ingesting at half the best sustained rate, and the server's RSS
   per registration at N and at 100k (100k: 1000 shared sockets, Discover-on-register off).

The fleet (load generator) runs in this process; on a 2-core machine it competes with the server for
CPU, so the server figures are a floor. Run: ``make bench`` or
``.venv/bin/python benchmarks/bench_fleet.py [--devices 10000] [--write docs/performance.md]
[--profile server.prof]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from _fleet_procs import blast, blast_echo, coap_get, udp_load
from spmp.fleet import Fleet, FleetConfig

HERE = Path(__file__).parent
PROCS = HERE / "_fleet_procs.py"
BEGIN, END = "<!-- fleet:begin -->", "<!-- fleet:end -->"
ECHO_SOCKETS, ECHO_WINDOW = 8, 64
"""The C generator's closed-loop shape, the same for the echo baseline and the closed-loop ingest run."""


class Server:
    """A helper process that printed ``READY {json}``."""

    def __init__(self, proc: subprocess.Popen[str], info: dict[str, Any]) -> None:
        self.proc = proc
        self.info = info

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextmanager
def process(*args: str, timeout: float = 30.0) -> Iterator[Server]:
    proc = subprocess.Popen([sys.executable, str(PROCS), *args], stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while not line.startswith("READY "):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{args[0]} did not start")
            line = proc.stdout.readline()
        yield Server(proc, json.loads(line[6:]))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stored_points(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return int(conn.execute("SELECT count(*) FROM telemetry").fetchone()[0])


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ baselines


async def bench_echo(seconds: float) -> dict[str, float]:
    """Bare asyncio UDP echo (stock and tuned read size), driven by the same C generator as the ingest
    phase (closed loop, ECHO_WINDOW datagrams in flight over ECHO_SOCKETS sockets)."""
    out: dict[str, float] = {}
    for tuned in (False, True):
        with process("echo", *(["--tuned"] if tuned else [])) as echo:
            rate = await blast_echo(echo.info["port"], sockets=ECHO_SOCKETS, window=ECHO_WINDOW, seconds=seconds)
        out["tuned" if tuned else "stock"] = rate
        log(f"echo {'tuned' if tuned else 'stock'}: {rate:,.0f} round trips/s")
    return out


async def bench_aiocoap(seconds: float) -> float:
    port = free_port()
    with process("aiocoap", "--port", str(port)):
        rate = await udp_load(port, coap_get, sockets=16, window=4, seconds=seconds, tuned=True)
    log(f"aiocoap GET: {rate:,.0f} requests/s")
    return rate


# ------------------------------------------------------------------------------------- SPMP server


async def observe_devices(api: httpx.AsyncClient, names: list[str]) -> int:
    slots = asyncio.Semaphore(32)
    ok = 0

    async def one(name: str) -> None:
        nonlocal ok
        async with slots:
            response = await api.post(f"/api/clients/{name}/3316/0/5700/observe")
            if response.status_code == 200:
                ok += 1

    await asyncio.gather(*(one(n) for n in names))
    return ok


async def wait_drained(db: Path, expected: int, patience: float) -> tuple[int, float]:
    """Poll the store until it holds ``expected`` points or stops growing; (points, seconds waited)."""
    started = time.monotonic()
    last, last_change = -1, started
    while True:
        count = stored_points(db)
        now = time.monotonic()
        if count >= expected:
            return count, now - started
        if count != last:
            last, last_change = count, now
        elif now - last_change > patience:
            return count, now - started
        await asyncio.sleep(0.1)


class Blaster:
    """The ingest phase's load: the C generator (``_blast.c``) sending pre-encoded CON notifications from
    the observed devices' own sockets (inherited fds; the fleet stops reading them meanwhile, so the
    ACKs are counted by the generator), with per-socket message ids and per-observation Observe values
    patched in place."""

    def __init__(self, fleet: Fleet, names: list[str], port: int) -> None:
        self.port = port
        self.templates: list[tuple[int, int, bytes]] = []
        self.transports: list[Any] = []
        wanted = set(names)
        for device in fleet.devices:
            sock = device.socket
            if device.name not in wanted or sock is None:
                continue
            live = [o for o in device.observations.values() if o.active]
            if not live:
                continue
            observation = live[0]
            transport = sock.transport._transport  # type: ignore[attr-defined]
            self.transports.append(transport)
            token = observation.token
            payload = f"{20 + device.data.index % 40}.25".encode()
            header = bytes((0x40 | len(token), 0x45, sock.mid >> 8, sock.mid & 0xFF))
            observe = (observation.seq & 0xFFFFFF).to_bytes(3, "big")
            data = header + token + b"\x63" + observe + b"\x60\xff" + payload  # Observe, Content-Format 0
            self.templates.append((transport.get_extra_info("socket").fileno(), 4 + len(token) + 1, data))
        self.runs = 0

    async def run(self, *, seconds: float, rate: float = 0.0, window: int = 0) -> dict[str, Any]:
        for transport in self.transports:
            transport.pause_reading()
        try:
            self.runs += 1
            return await blast(
                self.port,
                self.templates,
                seconds=seconds,
                rate=rate,
                window=window,
                mid_base=self.runs * 4096,
                seq_add=self.runs * 4096,
            )
        finally:
            for transport in self.transports:
                transport.resume_reading()


async def ingest_step(blaster: Blaster, db: Path, rate: float, seconds: float, window: int = 0) -> dict[str, Any]:
    before_points = stored_points(db)
    report = await blaster.run(seconds=seconds, rate=rate, window=window)
    elapsed = float(report["seconds"])
    sent = int(report["sent"])
    _, drain = await wait_drained(db, before_points + sent, patience=3.0)
    await asyncio.sleep(0.3)
    stored = stored_points(db) - before_points
    result = {
        "offered": rate if rate > 0 else None,
        "window": window or None,
        "sent_per_s": sent / elapsed,
        "stored_per_s": stored / elapsed,
        "acked_per_s": int(report["replies_in_time"]) / elapsed,
        "sent": sent,
        "stored": stored,
        "acked": report["acked"],
        "rst": report["rst"],
        "other": report["other"],
        "drain_s": drain,
    }
    result["sustained"] = (
        stored >= sent and report["acked"] >= sent and drain < 2.0 and (window > 0 or sent >= 0.95 * rate * elapsed)
    )
    what = f"{rate:,.0f}/s offered" if rate > 0 else f"closed loop, window {window}"
    log(
        f"ingest {what}: sent {sent:,} stored {stored:,} acked {report['acked']:,} rst {report['rst']} "
        f"drain {drain:.1f}s -> {'ok' if result['sustained'] else 'NOT sustained'}"
    )
    return result


async def bench_server(args: argparse.Namespace) -> dict[str, Any]:
    phases: set[str] = args.phases
    devices, observed, big = args.devices, args.observed, args.big
    out: dict[str, Any] = {"devices": devices, "observed": observed, "server_args": args.server_args}
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="spmp-bench-") as tmp:
        data = Path(tmp)
        extra = (["--profile", args.profile] if args.profile else []) + list(args.server_args)
        if phases & {"storm", "ingest", "rest"}:
            with process("spmp", "--data", str(data), "--token", token, *extra) as server:
                port, api_port = server.info["coap_port"], server.info["api_port"]
                db = data / "spmp.db"
                rss0 = rss_mib(server.pid)
                config = FleetConfig(
                    devices,
                    f"coap://127.0.0.1:{port}",
                    period=1e9,
                    lifetime=3600,
                    concurrency=1024,
                    stop_timeout=120,
                    start_timeout=240,
                )
                fleet = Fleet(config)
                log(f"registration storm: {devices:,} devices ...")
                await fleet.start()
                stats = fleet.stats
                out["storm"] = {
                    "registered": stats.registered,
                    "failed": stats.failed,
                    "seconds": stats.registration_seconds,
                    "per_s": stats.registrations_per_second,
                }
                log(f"  {stats.registered:,} registered in {stats.registration_seconds:.1f}s, {stats.failed} failed")
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {token}"}, timeout=60
                ) as api:
                    health = (await api.get("/api/health")).json()
                    out["storm"]["server_clients"] = health["clients"]
                    rss1 = rss_mib(server.pid)
                    # Discover-on-register (and the calibration backup) run in the background after
                    # the storm: wait until the server's deferred queue is empty, or at most 120 s.
                    settle_started = time.monotonic()
                    backlog = await wait_settled(api, 120.0)
                    out["storm"]["settle_s"] = time.monotonic() - settle_started
                    out["storm"]["backlog_left"] = backlog
                    log(f"  background discovery settled in {out['storm']['settle_s']:.1f}s ({backlog} left)")
                    rss2 = rss_mib(server.pid)
                    out["memory_10k"] = {
                        "rss0_mib": rss0,
                        "rss_registered_mib": rss1,
                        "rss_settled_mib": rss2,
                        "kib_per_registration": (rss2 - rss0) * 1024 / max(1, stats.registered),
                    }
                    if phases & {"ingest", "rest"}:
                        await bench_ingest(out, args, fleet, api, db, port, api_port, token)
                started = time.monotonic()
                await fleet.stop()
                out["deregister"] = {"deregistered": stats.deregistered, "seconds": time.monotonic() - started}
        if "big" in phases:
            await bench_big(out, data, token, big, extra, args.big_lifetime)
    return out


async def wait_settled(api: httpx.AsyncClient, patience: float) -> int:
    """Wait until the server's deferred post-registration work (discovery, calibration) is done;
    returns what is left (0 when settled, -1 when the server does not report it)."""
    deadline = time.monotonic() + patience
    left = -1
    while time.monotonic() < deadline:
        deferred = (await api.get("/bench/stats")).json().get("deferred")
        if not isinstance(deferred, dict):
            await asyncio.sleep(5)  # a server without a deferred queue: the fixed pause used before
            return -1
        left = int(deferred.get("queued", 0)) + int(deferred.get("running", 0))
        if left == 0:
            return 0
        await asyncio.sleep(0.5)
    return left


async def bench_ingest(  # noqa: PLR0917 - the phase's context, passed on
    out: dict[str, Any],
    args: argparse.Namespace,
    fleet: Fleet,
    api: httpx.AsyncClient,
    db: Path,
    port: int,
    api_port: int,
    token: str,
) -> None:
    stats = fleet.stats
    names = [f"fleet-{i}" for i in range(min(args.observed, stats.registered))]
    started = time.monotonic()
    ok = await observe_devices(api, names)
    out["observe"] = {"observed": ok, "seconds": time.monotonic() - started}
    log(f"observed {ok} devices via REST in {out['observe']['seconds']:.1f}s")
    blaster = Blaster(fleet, names, port)
    steps = []
    best = 0.0
    for rate in args.rates:
        step = await ingest_step(blaster, db, rate, args.step_seconds)
        steps.append(step)
        if not step["sustained"]:
            break
        best = step["stored_per_s"]
    closed = await ingest_step(blaster, db, 0.0, args.step_seconds, window=ECHO_WINDOW)
    out["ingest"] = {"steps": steps, "max_sustained": best, "closed_loop": closed, "streams": len(blaster.templates)}
    if "rest" not in args.phases:
        return
    half = max(best / 2, 500.0)
    sent0, stored0 = 0, stored_points(db)
    load = asyncio.ensure_future(blaster.run(seconds=12.0, rate=half))
    await asyncio.sleep(1.0)
    probe = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROCS),
        "probe",
        "--url",
        f"http://127.0.0.1:{api_port}",
        "--token",
        token,
        "--path",
        "/api/clients/fleet-1",
        "--path",
        "/api/clients/fleet-2/telemetry?limit=20",
        "--seconds",
        "10",
        "--rate",
        "40",
        stdout=asyncio.subprocess.PIPE,
    )
    text, _ = await probe.communicate()
    report = await load
    latency = json.loads(text)
    latency["ingest_rate"] = half
    sent = int(report["sent"]) - sent0
    await wait_drained(db, stored0 + sent, patience=3.0)
    latency["sent"] = sent
    latency["stored"] = stored_points(db) - stored0
    out["rest"] = latency
    log(
        f"REST while ingesting {half:,.0f}/s: p50 {latency['p50_ms']:.1f} ms p99 {latency['p99_ms']:.1f} ms "
        f"(sent {sent:,}, stored {latency['stored']:,})"
    )


async def bench_big(  # noqa: PLR0917 - the phase's context, passed on
    out: dict[str, Any], data: Path, token: str, big: int, extra: list[str], lifetime: int
) -> None:
    """100k registrations over 1000 shared sockets: memory, then (short ``lifetime`` only) expiry of all.

    A lifetime shorter than the registration phase makes the fleet send Updates (at 75-90 % of it)
    while the rest is still registering: ~2k Updates/s at 100k and 60 s. Measure memory with the
    default 3600 s, expiry separately with a short one (``--big-lifetime``)."""
    (data / "big").mkdir()
    with process("spmp", "--data", str(data / "big"), "--token", token, "--no-discover", *extra) as server:
        port, api_port = server.info["coap_port"], server.info["api_port"]
        rss0 = rss_mib(server.pid)
        config = FleetConfig(
            big,
            f"coap://127.0.0.1:{port}",
            period=1e9,
            lifetime=lifetime,
            sockets=min(1000, big),
            concurrency=2048,
            start_timeout=300,
            stop_timeout=5,
            prefix="big-",
        )
        fleet = Fleet(config)
        log(f"{big:,} registrations over 1000 sockets ...")
        await fleet.start()
        registered_at = time.monotonic()
        rss1 = rss_mib(server.pid)
        out["memory_100k"] = {
            "registered": fleet.stats.registered,
            "seconds": fleet.stats.registration_seconds,
            "per_s": fleet.stats.registrations_per_second,
            "rss0_mib": rss0,
            "rss_mib": rss1,
            "kib_per_registration": (rss1 - rss0) * 1024 / max(1, fleet.stats.registered),
        }
        seconds = fleet.stats.registration_seconds
        log(f"  {fleet.stats.registered:,} registered in {seconds:.1f}s, RSS {rss1:.0f} MiB")
        # Stop the fleet without de-registering or updating: every registration must now expire.
        await fleet.stop(deregister=False)
        if lifetime > 300:
            return  # waiting for that expiry would take too long here
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as api:
            deadline = registered_at + lifetime + 120
            clients = -1
            while time.monotonic() < deadline:
                clients = int((await api.get("/api/health")).json()["clients"])
                if clients == 0:
                    break
                await asyncio.sleep(1.0)
            out["memory_100k"]["expired_after_s"] = time.monotonic() - registered_at
            out["memory_100k"]["left_after_expiry"] = clients
            out["memory_100k"]["lifetime"] = lifetime
            out["memory_100k"]["rss_after_expiry_mib"] = rss_mib(server.pid)
            waited = out["memory_100k"]["expired_after_s"]
            log(f"  expiry: {clients} left {waited:.0f}s after registering (lifetime {lifetime}s)")


# ------------------------------------------------------------------------------------------- report


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def render(results: dict[str, Any], command: str) -> str:
    echo = results["echo"]
    best_echo = max(echo.values())
    loops = "uvloop" if results.get("uvloop") else "asyncio"
    s = results["server"]
    ingest = s["ingest"]["max_sustained"]
    m10, m100 = s["memory_10k"], s["memory_100k"]
    storm = s["storm"]
    rest = s["rest"]
    lines = [
        BEGIN,
        "## Fleet: the management server under load",
        "",
        f"Measured {results['date']} on {results['machine']}, with `{command}`.",
        "Everything on 127.0.0.1; the fleet (load generator) runs in the benchmark process and competes",
        "with the server for the same cores, so server figures are a floor.",
        f"Load generator and echo/aiocoap clients on {loops}; SPMP server options: "
        f"`{' '.join(results['server'].get('server_args', [])) or 'defaults'}`.",
        "",
        "| measurement | value | vs best echo | target (issue 6) |",
        "|---|---:|---:|---|",
        f"| bare asyncio UDP echo, stock transport | {echo['stock']:,.0f} round trips/s | "
        f"{echo['stock'] / best_echo:.2f} | |",
        f"| bare asyncio UDP echo, `max_size` 4 KiB | {echo['tuned']:,.0f} round trips/s | "
        f"{echo['tuned'] / best_echo:.2f} | |",
        f"| aiocoap 0.4.17 answering CON GET | {results['aiocoap']:,.0f} requests/s | "
        f"{results['aiocoap'] / best_echo:.3f} | |",
        f"| SPMP notification ingest into SQLite (CON, sustained, no loss) | {ingest:,.0f} notifications/s | "
        f"{ingest / best_echo:.3f} | ≥ 0.50 of echo |",
        f"| SPMP registration storm, {storm['registered']:,} devices | {storm['per_s']:,.0f} registrations/s "
        f"({storm['seconds']:.1f} s, {storm['failed']} failed) | {storm['per_s'] / best_echo:.3f} | 10k in < 10 s |",
        f"| background Discover + calibration backup after the storm | settled {storm.get('settle_s', 0):.0f} s "
        f"after the last registration ({storm.get('backlog_left', -1)} left) | | lags, never blocks |",
        f"| REST read latency while ingesting {rest['ingest_rate']:,.0f}/s | p50 {rest['p50_ms']:.1f} ms, "
        f"p99 {rest['p99_ms']:.1f} ms ({rest['requests']} requests, {rest['errors']} errors; "
        f"{rest.get('stored', 0):,} of {rest.get('sent', 0):,} notifications stored) | | p99 < 100 ms |",
        f"| server RSS per registration at {storm['registered']:,} | {m10['kib_per_registration']:.1f} KiB "
        f"({m10['rss0_mib']:.0f} → {m10['rss_settled_mib']:.0f} MiB) | | |",
        f"| server RSS per registration at {m100['registered']:,} | {m100['kib_per_registration']:.1f} KiB "
        f"({m100['rss0_mib']:.0f} → {m100['rss_mib']:.0f} MiB; {m100['per_s']:,.0f} registrations/s) | | "
        "100k < 1 GiB |",
        *(
            [
                f"| expiry of those {m100['registered']:,} (lifetime {m100['lifetime']} s, fleet stopped) | "
                f"{m100['left_after_expiry']} left {m100['expired_after_s']:.0f} s after registering | | all expire |"
            ]
            if "lifetime" in m100
            else []
        ),
        "",
        "Ingest steps (offered → sent/stored per second, drain time after the step):",
        "",
        "| offered/s | sent/s | stored/s | acked | RST | drain s | sustained |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    closed = s["ingest"].get("closed_loop")
    for step in [*s["ingest"]["steps"], *([closed] if closed else [])]:
        offered = f"{step['offered']:,.0f}" if step.get("offered") else f"closed loop, {step['window']} in flight"
        lines.append(
            f"| {offered} | {step['sent_per_s']:,.0f} | {step['stored_per_s']:,.0f} | {step['acked']:,} "
            f"| {step['rst']:,} | {step['drain_s']:.1f} | {'yes' if step['sustained'] else 'no'} |"
        )
    lines += [
        "",
        "How: the echo baseline and the ingest phase use the same load generator, `benchmarks/_blast.c`",
        "(compiled with gcc at benchmark time; pre-encoded datagrams, ids patched in place, sendto from",
        f"several sockets, replies counted at the sockets): echo closed loop with {ECHO_WINDOW} in flight over",
        f"{ECHO_SOCKETS} sockets. aiocoap is driven by a Python UDP client. The SPMP server runs",
        "`ManagementServer` with",
        "`SqliteStore` and the REST API in its own process, with the defaults except the per-address",
        "registration rate limit, lifted because every simulated device shares 127.0.0.1. The storm uses",
        f"one UDP socket per device (`spmp.fleet`); ingest observes /3316/0/5700 on {s['observe']['observed']:,}",
        "devices through the REST API, then the generator sends CON notifications from those devices' own",
        "sockets (tokens, Observe values and message ids per device) at rising offered rates;",
        "stored points are counted in the SQLite file. The 100k figure uses 1000 sockets shared by 100",
        "devices each and Discover-on-register off (the storm only registers), RSS from /proc.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(target: Path, section: str) -> None:
    text = target.read_text() if target.exists() else "# Performance\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    target.write_text(text)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "uvloop": args.uvloop,
    }
    if "echo" in args.phases:
        results["echo"] = await bench_echo(args.seconds)
    if "aiocoap" in args.phases:
        results["aiocoap"] = await bench_aiocoap(args.seconds)
    results["server"] = await bench_server(args)
    return results


PHASES = ("echo", "aiocoap", "storm", "ingest", "rest", "big")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--observed", type=int, default=2000, help="devices observed for the ingest phase")
    parser.add_argument("--big", type=int, default=100_000, help="registrations for the memory figure")
    parser.add_argument(
        "--big-lifetime", type=int, default=3600, help="lifetime of the big fleet; <= 300 s also waits for expiry"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each baseline measurement")
    parser.add_argument("--write", type=Path, help="update the fleet section of this Markdown file")
    parser.add_argument("--profile", help="run the SPMP server under cProfile and dump the stats here")
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (ingest and rest include the storm)",
    )
    parser.add_argument(
        "--rates",
        default="2000,5000,10000,15000,20000,25000,30000,40000,50000,60000",
        help="offered notification rates of the ingest steps, until one is not sustained",
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="run this process (the fleet, the echo and aiocoap clients) on uvloop"
    )
    parser.add_argument("--step-seconds", type=float, default=6.0, help="length of each ingest step")
    parser.add_argument(
        "--server-arg",
        dest="server_args",
        action="append",
        default=[],
        help="extra option for the SPMP server process (benchmarks/_fleet_procs.py spmp), e.g. --inline",
    )
    args = parser.parse_args()
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    unknown = args.phases - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    args.rates = [float(r) for r in args.rates.split(",")]
    if args.uvloop:
        import uvloop

        results = uvloop.run(run(args))
    else:
        results = asyncio.run(run(args))
    command = "python benchmarks/bench_fleet.py " + " ".join(sys.argv[1:])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if set(PHASES) - args.phases:
        print(json.dumps(results, indent=2))
        return
    section = render(results, command.strip())
    print(section)
    if args.write:
        write_section(args.write, section)
        log(f"wrote the fleet section of {args.write}")


if __name__ == "__main__":
    main()
