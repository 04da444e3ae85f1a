"""``spmp fleet``: many lightweight LwM2M devices in one process, for load tests (docs/fleet.md).

With no subcommand it runs the fleet against a server until Ctrl-C or ``--duration``; ``provision``
writes the fleet's derived PSKs into the server's store first.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from spmp.cli._common import DEFAULT_DATA_DIR, DataOption, _fail, _out, _with_store
from spmp.store import Store

fleet_app = typer.Typer(
    help="Run a simulated fleet of LwM2M devices against a server (load tests; see docs/fleet.md).",
    invoke_without_command=True,
)

FleetSecretOption = Annotated[
    str,
    typer.Option(
        "--secret", envvar="SPMP_FLEET_SECRET", help="Fleet secret the device PSKs are derived from (HMAC-SHA256)."
    ),
]
FleetPrefixOption = Annotated[
    str, typer.Option("--psk-prefix", help="Endpoint name and PSK identity prefix: <prefix><n>.")
]


@fleet_app.callback()
def fleet(  # noqa: PLR0917 - Typer maps each parameter to an option
    ctx: typer.Context,
    devices: Annotated[int | None, typer.Option("--devices", help="Number of simulated devices.", min=1)] = None,
    server_uri: Annotated[
        str | None, typer.Option("--server", help="coap://host:port, or coaps://host:port with --psk.")
    ] = None,
    period: Annotated[float, typer.Option("--period", help="Seconds between notifications of an observation.")] = 10.0,
    psk: Annotated[bool, typer.Option("--psk", help="One DTLS PSK session per device.")] = False,
    prefix: FleetPrefixOption = "fleet-",
    secret: FleetSecretOption = "spmp-fleet-load-test-secret",
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop (and de-register) after this many seconds.")
    ] = None,
    sockets: Annotated[
        int | None, typer.Option("--sockets", help="UDP sockets shared by the devices (default: one per device).")
    ] = None,
    non: Annotated[bool, typer.Option("--non", help="Send notifications as NON instead of CON.")] = False,
    lifetime: Annotated[int, typer.Option("--lifetime", help="Registration lifetime in seconds.", min=10)] = 300,
    first: Annotated[int, typer.Option("--first", help="Index of the first device.", min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final summary as JSON.")] = False,
) -> None:
    """Run N lightweight LwM2M devices in one process until Ctrl-C (or --duration), then de-register.

    Example: `spmp fleet --devices 1000 --server coap://127.0.0.1:5683 --period 5`. With --psk, write
    the keys into the server's store first: `spmp fleet provision --devices 1000 --data DIR`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from spmp.fleet import FleetConfig, FleetError  # noqa: PLC0415

    if devices is None or server_uri is None:
        _fail("give --devices and --server (or a subcommand, see --help)")
    try:
        config = FleetConfig(
            devices,
            server_uri,
            period=period,
            psk=psk,
            prefix=prefix,
            secret=secret.encode(),
            sockets=sockets,
            confirmable=not non,
            lifetime=lifetime,
            first=first,
        )
        stats = asyncio.run(_run_fleet(config, duration))
    except FleetError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        return
    summary = stats.as_dict()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"Fleet summary ({config.devices} devices, {server_uri})", title_justify="left")
    table.add_column("counter")
    table.add_column("value", justify="right")
    for name, value in summary.items():
        table.add_row(name.replace("_", " "), json.dumps(value) if isinstance(value, dict) else str(value))
    _out().print(table)


@fleet_app.command("provision")
def fleet_provision(
    devices: Annotated[int, typer.Option("--devices", help="Number of devices to provision.", min=1)],
    data: DataOption = DEFAULT_DATA_DIR,
    prefix: FleetPrefixOption = "fleet-",
    secret: FleetSecretOption = "spmp-fleet-load-test-secret",
    first: Annotated[int, typer.Option("--first", help="Index of the first device.", min=0)] = 0,
) -> None:
    """Write the fleet's device PSKs (identity <prefix><n>) into the server's store (DIR/spmp.db)."""
    from spmp.fleet import provision  # noqa: PLC0415

    async def put(store: Store) -> int:
        return await provision(store, devices, prefix=prefix, secret=secret.encode(), first=first)

    count = _with_store(put)(data)
    typer.echo(f"provisioned {count} fleet PSKs ({prefix}{first}..{prefix}{first + devices - 1})")


async def _run_fleet(config: Any, duration: float | None) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    from spmp.fleet import Fleet  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fleet = Fleet(config)
    stats = fleet.stats
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}, rate-limited {task.fields[limited]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task("registering", total=config.devices, failed=0, limited=0)
        starting = loop.create_task(fleet.start())
        while not starting.done():
            await asyncio.wait({starting}, timeout=0.2)
            done = stats.registered + stats.failed
            progress.update(task, completed=done, failed=stats.failed, limited=stats.rate_limited)
            if stop.is_set():
                break
    try:
        if not starting.done():
            starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        typer.echo(
            f"{stats.registered} registered ({stats.registrations_per_second:.0f}/s), {stats.failed} failed;"
            " running" + (f" {duration:g} s" if duration is not None else " until Ctrl-C"),
            err=True,
        )
        return await fleet.run(duration, stop)
    finally:
        await fleet.stop()
