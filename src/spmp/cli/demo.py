"""``spmp demo``: the whole system on loopback, with a live table of what the server receives.

A bootstrap server, the management server with its REST API, and N simulated sites, each with an
in-process BTS, bootstrapping from factory credentials and observed by the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from spmp.bootstrap.psk import ensure_server_psk
from spmp.bootstrap.server import BootstrapServer
from spmp.cli._common import DEFAULT_DATA_DIR, DataOption, _fail, _out, _registry, _start_api, _store_path, log
from spmp.server import ManagementServer
from spmp.store import (
    DEFAULT_ENDPOINT,
    BootstrapConfig,
    SecurityInfo,
    SecurityMode,
    SecurityScope,
    ServerAccount,
    SqliteStore,
    StoreError,
)

DEMO_SITES = (
    ("Nairobi", -1.29, 36.82),
    ("Abuja", 9.08, 7.40),
    ("Lusaka", -15.39, 28.32),
    ("Kathmandu", 27.72, 85.32),
    ("Dhaka", 23.81, 90.41),
    ("Lima", -12.05, -77.04),
)
ALERT_NAMES = (
    "short circuit",
    "over-voltage",
    "over-current",
    "LVD",
    "LVR",
    "over-temp",
    "under-temp",
    "reverse polarity",
    "HVD",
    "open circuit",
    "ground fault",
    "sensor fault",
    "overload",
)
OPER_STATES = {1: "unknown", 2: "charging", 3: "float", 4: "idle", 5: "discharging"}
# The demo table fits an 80-column terminal: short headers and cells; only the site name is cut (…).
DEMO_STAGES = {1: "?", 2: "charge", 3: "float", 4: "idle", 5: "dischg"}
DEMO_ALERTS_WIDTH = 14  # alerts wrap within this width, so one site's alerts do not squeeze the names


def demo(
    sites: Annotated[int, typer.Option("--sites", help="Number of simulated sites.", min=1, max=len(DEMO_SITES))] = 3,
    speed: Annotated[float, typer.Option("--speed", help="Simulated seconds per wall second.", min=0.001)] = 60.0,
    api_port: Annotated[int, typer.Option("--api-port", help="REST API port.", min=0, max=65535)] = 8080,
    data: DataOption = DEFAULT_DATA_DIR,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
) -> None:
    """Run the whole system on loopback: bootstrap server, management server + REST API, N chargers.

    Each simulated site starts from factory credentials, bootstraps over DTLS, registers, and the
    server observes its Port Status, battery and alerts. A live table shows what the server
    receives, until Ctrl-C (or --duration); then every charger de-registers. Data: DIR/spmp.db.
    """
    db = _store_path(data)
    try:
        asyncio.run(_run_demo(sites, speed, api_port, db, duration))
    except KeyboardInterrupt:
        pass
    except StoreError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot listen: {exc}")


async def _run_demo(count: int, speed: float, api_port: int, db: FilePath, duration: float | None) -> None:
    import secrets  # noqa: PLC0415

    from rich.live import Live  # noqa: PLC0415

    from spmp.charger.runner import ChargerRunner, simulated_charger  # noqa: PLC0415
    from spmp.client.accounts import factory_bootstrap  # noqa: PLC0415
    from spmp.client.registration import ClientOptions  # noqa: PLC0415

    host = "127.0.0.1"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    registry = _registry()
    out = _out()
    async with SqliteStore(db) as store:
        mgmt = ManagementServer(store, registry, host=host, coap_port=0, coaps_port=0, psk_refresh=0.5)
        bootstrap_server = BootstrapServer(store, registry, host=host, coap_port=0, coaps_port=0)
        runners: list[ChargerRunner] = []
        bts_servers: list[Any] = []
        api_task: asyncio.Task[None] | None = None
        watcher: asyncio.Task[None] | None = None
        try:
            await mgmt.start()
            await bootstrap_server.start()
            assert mgmt.coaps_address is not None and bootstrap_server.coaps_address is not None
            mgmt_uri = f"coaps://{host}:{mgmt.coaps_address[1]}"
            bs_uri = f"coaps://{host}:{bootstrap_server.coaps_address[1]}"
            await store.put_bootstrap_config(
                BootstrapConfig(DEFAULT_ENDPOINT, (ServerAccount(101, mgmt_uri, SecurityMode.PSK, lifetime=300),))
            )
            api_task, api_url = _start_api(mgmt, store, None, (host, api_port), db.parent)
            api = f"{api_url}/api/clients" if api_task is not None else api_url
            out.print(
                f"spmp demo: bootstrap {bs_uri}, management {mgmt_uri}, API {api} "
                f"(token in {db.parent / 'api-token'}), data {db.parent}",
                soft_wrap=True,
            )
            latest: dict[str, dict[str, Any]] = {}
            subscription = mgmt.events.subscribe(kinds={"registered", "notification", "deregistered"})
            watcher = loop.create_task(_demo_watch(mgmt, subscription, latest, out))
            for index, (place, lat, lon) in enumerate(DEMO_SITES[:count]):
                endpoint = f"demo-site-{index + 1}"
                factory = await store.get_security(endpoint, SecurityScope.BOOTSTRAP)
                if factory is None:
                    factory = SecurityInfo(endpoint, f"{endpoint}-factory", secrets.token_bytes(16))
                    await store.put_security(factory, SecurityScope.BOOTSTRAP)
                await ensure_server_psk(store, endpoint)  # what bootstrap will give it, known to the server now
                await bootstrap_server.psks.load()
                if mgmt.psk_cache is not None:
                    await mgmt.psk_cache.load()
                device = simulated_charger(registry, lat=lat, lon=lon, seed=index + 1, speed=speed, serial=place)
                accounts = factory_bootstrap(bs_uri, factory.psk_identity, factory.psk_key)
                options = ClientOptions(local_host=host, retry_initial=0.5, retry_max=5.0)
                link = _demo_bts(db.parent / f"bts-{endpoint}", host, bts_servers)
                runner = ChargerRunner(
                    endpoint,
                    device,
                    accounts,
                    registry,
                    options=options,
                    bts=link,
                    rules="default",
                    data_dir=db.parent / f"charger-{endpoint}",
                )
                runners.append(runner)
                await runner.start()
            deadline = None if duration is None else loop.time() + duration
            live = (
                Live(_demo_table(runners, latest, speed), console=out, auto_refresh=False) if out.is_terminal else None
            )
            with live if live is not None else contextlib.nullcontext():
                while not stop.is_set() and (deadline is None or loop.time() < deadline):
                    wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - loop.time()))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
                    if live is not None:
                        live.update(_demo_table(runners, latest, speed), refresh=True)
            if live is None:
                out.print(_demo_table(runners, latest, speed))
        finally:
            await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)
            for bts_server in bts_servers:
                bts_server.close()
            out.print(f"spmp demo: {len(runners)} site(s) de-registered, stopping")
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            if api_task is not None:
                api_task.cancel()
                await asyncio.gather(api_task, return_exceptions=True)
            await bootstrap_server.stop()
            await mgmt.stop()


def _demo_bts(data: FilePath, host: str, servers: list[Any]) -> Any:
    """An in-process BTS for one demo site: NETCONF over SSH on a free loopback port, data in ``data``."""
    import secrets  # noqa: PLC0415

    from spmp.bts import BtsDevice, BtsNetconfServer, load_or_create_host_key  # noqa: PLC0415
    from spmp.charger.netconf.hostkeys import fingerprint  # noqa: PLC0415
    from spmp.charger.runner import BtsLink  # noqa: PLC0415

    device = BtsDevice(data)
    password = secrets.token_urlsafe(16)
    host_key = load_or_create_host_key(data)
    server = BtsNetconfServer(device, host_key=host_key, host=host, port=0, users={"spmp": password})
    server.start()
    servers.append(server)
    # Pinned: the demo knows its own BTS's key (and its port changes every run, so first use would not mean much).
    return BtsLink(
        host,
        server.port,
        username="spmp",
        password=password,
        device=device,
        refresh_interval=2.0,
        host_key_fingerprint=fingerprint(host_key),
    )


async def _demo_watch(
    mgmt: ManagementServer, subscription: Any, latest: dict[str, dict[str, Any]], out: Console
) -> None:
    """Keep the newest value of every path per site; observe each site once it registers."""
    async for event in subscription:
        if event.kind == "registered":
            out.print(f"site {event.endpoint} registered ({event.data.get('address')})")
            mgmt._spawn(_demo_observe(mgmt, event.endpoint))
        elif event.kind == "notification":
            latest.setdefault(event.endpoint, {}).update(event.data.get("values", {}))
        elif event.kind == "deregistered":
            latest.pop(event.endpoint, None)


async def _demo_observe(mgmt: ManagementServer, endpoint: str) -> None:
    from spmp.server.errors import ServerError  # noqa: PLC0415

    try:
        for path in ("/26246/0", "/26243"):
            await mgmt.write_attributes(endpoint, path, ["pmin=1"], timeout=30)  # at most one a second
        for path in ("/26242", "/26246/0", "/26243"):
            await mgmt.observe(endpoint, path, timeout=30)
    except ServerError as exc:
        log.warning("demo: cannot observe", extra={"endpoint": endpoint, "error": str(exc)})


def _demo_table(runners: list[Any], latest: dict[str, dict[str, Any]], speed: float) -> Table:
    table = Table(
        title=f"SPMP demo: {len(runners)} sites, clock {speed:g}x, device time UTC (Ctrl-C to stop)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 0),
    )
    table.add_column("site")  # wraps nothing: its cells are no_wrap Text cut with an ellipsis
    for name, justify in (
        ("time", "left"),
        ("SOC%", "right"),
        ("bat V", "right"),
        ("PV W", "right"),
        ("load W", "right"),
        ("stage", "left"),
        ("BTS", "left"),
        ("rules", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("alerts", overflow="fold", max_width=DEMO_ALERTS_WIDTH)
    for runner in runners:
        values = latest.get(runner.endpoint, {})
        ports = runner.device.ports

        def power(index: int, values: dict[str, Any] = values) -> float | None:
            v, i = values.get(f"/26242/{index}/1"), values.get(f"/26242/{index}/2")
            return None if v is None or i is None else float(v) * float(i)

        pv = [p for i, p in enumerate(power(i) for i in range(len(ports))) if ports[i].kind.value == "pv"]
        loads = [p for i, p in enumerate(power(i) for i in range(len(ports))) if ports[i].kind.value == "load"]
        stamp = values.get("/26242/0/5518")
        alerts = [
            f"{ports[int(path.split('/')[2])].name} {ALERT_NAMES[int(path.split('/')[3])]}"
            for path, on in sorted(values.items())
            if path.startswith("/26243/")
            and on is True
            and path.split("/")[3].isdigit()
            and int(path.split("/")[3]) < len(ALERT_NAMES)
        ]
        table.add_row(
            Text(f"{runner.endpoint} ({runner.device.serial})", no_wrap=True, overflow="ellipsis"),
            "…" if stamp is None else datetime.fromtimestamp(int(stamp), UTC).strftime("%H:%M"),
            _cell(values.get("/26246/0/26"), "{:.0f}"),
            _cell(values.get("/26246/0/16"), "{:.1f}"),
            _cell(max(0.0, -sum(p for p in pv if p is not None)) if pv and None not in pv else None, "{:.0f}"),
            _cell(sum(p for p in loads if p is not None) if loads and None not in loads else None, "{:.0f}"),
            DEMO_STAGES.get(values.get("/26246/0/13", 0), "…"),
            _demo_bts_cell(runner),
            _demo_rules_cell(runner),
            ", ".join(alerts) or "-",
        )
    return table


def _demo_bts_cell(runner: Any) -> str:
    """The BTS's draw and service, as the charger knows them (its NETCONF bridge and the load port).

    Compact for the 80-column table: ``812W on`` (on air), ``95W emerg`` (emergency calls only),
    ``40W off`` (off air), ``unreach`` (NETCONF unreachable), ``no power`` (its port is switched off).
    """
    bridge = getattr(runner, "bridge", None)
    if bridge is None:
        return "-"
    watts = bridge.power_draw_watts
    if bridge.unreachable:
        return "unreach"
    port = runner.device.source.site.ports.get(runner.bts_port) if hasattr(runner.device.source, "site") else None
    if port is not None and not port.output_on:
        return "no power"
    service = "off"
    if bridge.on_air:
        service = "emerg" if bridge.value(0, 9) is True else "on"
    return f"{'…' if watts is None else f'{watts:.0f}'}W {service}"


def _demo_rules_cell(runner: Any) -> str:
    smart = getattr(runner, "smart_load", None)
    if smart is None:
        return "-"
    rules = smart.engine.rules()
    active = sum(1 for r in rules if smart.engine.is_active(r.id))
    return f"{active}/{len(rules)}"


def _cell(value: Any, fmt: str) -> str:
    return "…" if value is None else fmt.format(value)
