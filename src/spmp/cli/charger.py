"""``spmp charger`` and ``spmp modbus-sim``: one SPMP charger, and a Modbus controller to try it with.

``charger`` runs a charger as an LwM2M client, simulated or reading a real controller over Modbus
TCP, optionally linked to its BTS over NETCONF; ``modbus-sim`` serves a simulated charge controller
(docs/modbus.md). The charger and Modbus modules are imported only when a command runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

import typer

from spmp.cli._common import KEY_FILE_HELP, _fail, _hex_key, _key_text, _registry, _url_host


def _charger_accounts(  # noqa: PLR0917 - the command's options, passed on
    server_uri: str | None,
    bootstrap_uri: str | None,
    psk_identity: str | None,
    psk_key: str | None,
    insecure: bool,
    lifetime: int,
) -> tuple[Any, Any]:
    """The Security and Server objects of a device: factory bootstrap or one direct server."""
    from spmp.client.accounts import AccountError, ServerSpec, direct_servers, factory_bootstrap, parse_uri  # noqa: PLC0415

    if (server_uri is None) == (bootstrap_uri is None):
        _fail("give exactly one of --server and --bootstrap")
    uri = server_uri or bootstrap_uri or ""
    try:
        secure = parse_uri(uri).secure
    except AccountError as exc:
        _fail(str(exc))
    key: bytes | None = None
    if secure:
        if not psk_identity or not psk_key:
            _fail("coaps:// needs --psk-identity and --psk-key (or --psk-key-file)")
        key = _hex_key(psk_key, "the pre-shared key")
    elif not insecure:
        _fail("coap:// is unauthenticated and unencrypted (NoSec): add --insecure to use it anyway")
    else:
        typer.echo("warning: NoSec mode, the LwM2M traffic is neither authenticated nor encrypted", err=True)
    if server_uri is not None:
        return direct_servers([ServerSpec(server_uri, lifetime=lifetime, psk_identity=psk_identity, psk_key=key)])
    return factory_bootstrap(uri, psk_identity, key)


def _modbus_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        _fail(f"--modbus wants HOST:PORT, for example 192.0.2.10:502, not {text!r}")
    return host.strip("[]"), int(port)


def _modbus_target(modbus: str | None, map_file: FilePath | None, unit: int | None) -> tuple[str, int, Any, int] | None:
    """--modbus, --modbus-map and --modbus-unit as (host, port, register map or None, unit id)."""
    if modbus is None:
        if map_file is not None or unit is not None:
            _fail("--modbus-map and --modbus-unit need --modbus HOST:PORT")
        return None
    host, port = _modbus_address(modbus)
    mapping: Any = None
    if map_file is not None:
        from spmp.charger.modbus.mapping import MappingError, load_map  # noqa: PLC0415

        try:
            mapping = load_map(map_file)
        except MappingError as exc:
            _fail(f"--modbus-map: {exc}")
    return host, port, mapping, 1 if unit is None else unit


ModbusMapOption = Annotated[
    FilePath | None,
    typer.Option(
        "--modbus-map",
        metavar="FILE",
        help="Register map of the controller (TOML, docs/modbus.md; default: the built-in TriStar MPPT map).",
        dir_okay=False,
    ),
]
ModbusUnitOption = Annotated[
    int | None,
    typer.Option(
        "--modbus-unit", metavar="N", help="Modbus unit (slave) id of the controller [default: 1].", min=0, max=255
    ),
]


def charger_command(  # noqa: PLR0917 - Typer maps each parameter to an option
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="LwM2M endpoint name (default: charger-SEED).")
    ] = None,
    bootstrap_uri: Annotated[
        str | None, typer.Option("--bootstrap", help="Bootstrap from this server (coaps://host:port): factory mode.")
    ] = None,
    psk_identity: Annotated[str | None, typer.Option("--psk-identity", help="DTLS PSK identity.")] = None,
    psk_key: Annotated[str | None, typer.Option("--psk-key", help="DTLS pre-shared key, in hexadecimal.")] = None,
    psk_key_file: Annotated[
        str | None,
        typer.Option(
            "--psk-key-file",
            metavar="FILE",
            help=f"Read the hexadecimal pre-shared key from FILE (- for stdin): {KEY_FILE_HELP}.",
        ),
    ] = None,
    server_uri: Annotated[
        str | None, typer.Option("--server", help="Register directly with this LwM2M server instead.")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow plain coap:// (NoSec: no authentication, no encryption).")
    ] = False,
    modbus: Annotated[
        str | None,
        typer.Option(
            "--modbus", help="Read a real charge controller over Modbus TCP at HOST:PORT instead of simulating."
        ),
    ] = None,
    modbus_map: ModbusMapOption = None,
    modbus_unit: ModbusUnitOption = None,
    lat: Annotated[float, typer.Option("--lat", help="Latitude of the simulated site.")] = 0.0,
    lon: Annotated[float, typer.Option("--lon", help="Longitude of the simulated site.")] = 0.0,
    speed: Annotated[
        float, typer.Option("--speed", help="Simulated seconds per wall second (ignored with --modbus).", min=0.001)
    ] = 60.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated weather and sensor errors.")] = 0,
    lifetime: Annotated[int, typer.Option("--lifetime", help="Registration lifetime in seconds.", min=1)] = 300,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop (and de-register) after this many wall seconds.")
    ] = None,
    bts: Annotated[
        str | None,
        typer.Option("--bts", help="The BTS's NETCONF server (HOST:PORT): Smart Load (BTS) 26244 mirrors it."),
    ] = None,
    bts_user: Annotated[str, typer.Option("--bts-user", help="SSH user on the BTS.")] = "spmp",
    bts_password: Annotated[
        str | None, typer.Option("--bts-password", envvar="SPMP_BTS_PASSWORD", help="SSH password on the BTS.")
    ] = None,
    bts_host_key_fingerprint: Annotated[
        str | None,
        typer.Option(
            "--bts-host-key-fingerprint",
            help="Accept only this BTS SSH host key (SHA256:..., as ssh-keygen -lf prints it); "
            "default: trust the first key seen and record it in DIR/known_hosts.",
        ),
    ] = None,
    rules: Annotated[
        str,
        typer.Option("--rules", help="Smart-load rules at the first start: default (docs/smart-load.md) or none."),
    ] = "none",
    data: Annotated[
        FilePath,
        typer.Option(
            "--data",
            help="Charger data directory: smart-load state (smart-load.json) and the BTS's host key (known_hosts).",
            file_okay=False,
        ),
    ] = FilePath("spmp-charger"),
) -> None:
    """Run one SPMP charger (LwM2M client) until Ctrl-C, then de-register.

    Factory mode: `spmp charger --bootstrap coaps://127.0.0.1:5784 --psk-identity ID --psk-key-file KEYFILE`
    (--psk-key-file - reads stdin; --psk-key HEX works too but shows the key in `ps`).
    With --modbus HOST:PORT the measurements come from a real controller: a TriStar MPPT by default,
    another one with --modbus-map FILE (its register map) and --modbus-unit N. No hardware at hand?
    `spmp modbus-sim` serves a simulated controller to try it with.
    """
    name = endpoint or f"charger-{seed}"
    psk_key = _key_text(psk_key, psk_key_file, "--psk-key", "--psk-key-file")
    address = _modbus_target(modbus, modbus_map, modbus_unit)
    accounts = _charger_accounts(server_uri, bootstrap_uri, psk_identity, psk_key, insecure, lifetime)
    if rules not in ("default", "none"):
        _fail("--rules is default or none")
    link: Any = None
    if bts is not None:
        from spmp.charger.runner import BtsLink  # noqa: PLC0415

        bts_host, _, bts_port = bts.rpartition(":")
        if not bts_host or not bts_port.isdigit() or not 0 < int(bts_port) < 65536:
            _fail(f"--bts wants HOST:PORT, for example 192.0.2.20:830, not {bts!r}")
        if bts_host_key_fingerprint is not None:
            from spmp.charger.netconf.hostkeys import normalize_fingerprint  # noqa: PLC0415

            try:
                bts_host_key_fingerprint = normalize_fingerprint(bts_host_key_fingerprint)
            except ValueError as exc:
                _fail(f"--bts-host-key-fingerprint: {exc}")
        link = BtsLink(
            bts_host.strip("[]"),
            int(bts_port),
            username=bts_user,
            password=bts_password,
            host_key_fingerprint=bts_host_key_fingerprint,
        )
    elif bts_host_key_fingerprint is not None:
        _fail("--bts-host-key-fingerprint needs --bts")
    try:
        asyncio.run(
            _run_charger(
                name,
                accounts,
                address,
                lat=lat,
                lon=lon,
                speed=speed,
                seed=seed,
                duration=duration,
                bts=link,
                rules=rules,
                data=data,
            )
        )
    except KeyboardInterrupt:
        return


async def _run_charger(
    endpoint: str,
    accounts: tuple[Any, Any],
    modbus: tuple[str, int, Any, int] | None,
    *,
    lat: float,
    lon: float,
    speed: float,
    seed: int,
    duration: float | None,
    bts: Any = None,
    rules: str = "none",
    data: FilePath | None = None,
) -> None:
    from spmp.charger.clock import SimClock  # noqa: PLC0415
    from spmp.charger.device import ChargerDevice, ModbusMeasurementSource  # noqa: PLC0415
    from spmp.charger.runner import ChargerRunner, simulated_charger  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    registry = _registry()
    modbus_source: Any = None
    if modbus is not None:
        from spmp.charger.modbus.source import ModbusSource  # noqa: PLC0415

        modbus_source = ModbusSource(modbus[0], modbus[1], modbus[3], modbus[2])
        device = ChargerDevice(
            ModbusMeasurementSource(modbus_source),
            SimClock(datetime.now(UTC), 1.0),
            registry,
            serial=endpoint,
            sample_interval=2.0,
            factory_calibrated=False,
            adc_error=0.0,
        )
        what = f"Modbus controller {modbus_source.endpoint} unit {modbus_source.unit_id}"
        what += f" ({modbus_source.mapping.name or 'register map'})" if modbus[2] is not None else ""
    else:
        device = simulated_charger(registry, lat=lat, lon=lon, seed=seed, speed=speed, serial=endpoint)
        what = f"simulated site ({lat:g}, {lon:g}) at {speed:g}x"
    runner = ChargerRunner(endpoint, device, accounts, registry, bts=bts, rules=rules, data_dir=data)
    if bts is not None:
        what += f", BTS {bts.host}:{bts.port} over NETCONF, rules {rules}"
    try:
        await runner.start()
        typer.echo(f"spmp charger {endpoint!r}: {what}; Ctrl-C to de-register and stop", err=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
    finally:
        await runner.stop()
        if modbus_source is not None:
            modbus_source.close()


# --------------------------------------------------------------------------------------- modbus-sim


def modbus_sim_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Modbus TCP port (0: any free port).", min=0, max=65535)] = 5020,
    map_file: Annotated[
        FilePath | None,
        typer.Option(
            "--map",
            metavar="FILE",
            help="Register map to serve (TOML, docs/modbus.md; default: the built-in TriStar MPPT map).",
            dir_okay=False,
        ),
    ] = None,
    unit: Annotated[int, typer.Option("--unit", metavar="N", help="Modbus unit id to answer as.", min=0, max=255)] = 1,
) -> None:
    """Serve a simulated charge controller over Modbus TCP: try `spmp charger --modbus` without hardware.

    It answers with fixed values of a 48 V site at midday (battery 56.4 V, absorbing), encoded as the
    register map says. Example: `spmp modbus-sim --port 5020`, then in another shell
    `spmp charger --server coap://127.0.0.1:5683 --insecure --modbus 127.0.0.1:5020`. Stop with Ctrl-C.
    """
    from spmp.charger.modbus.mapping import MappingError, load_map  # noqa: PLC0415
    from spmp.charger.modbus.simulator import DEMO_VALUES, ChargerSimulator  # noqa: PLC0415

    try:
        mapping = load_map(map_file) if map_file is not None else None
        simulator = ChargerSimulator(mapping, host=host, port=port, unit_id=unit)
        simulator.update({q: v for q, v in DEMO_VALUES.items() if q in simulator.quantities})
    except MappingError as exc:
        _fail(f"--map: {exc}")
    except (KeyError, ValueError) as exc:
        _fail(f"--map: cannot serve the demo values with this map: {exc}")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await simulator.start()
        except RuntimeError as exc:  # pymodbus's "Could not start listen": say why, as the OS does
            _tcp_port_free(host, port)
            raise OSError(str(exc)) from None
        async with simulator:
            typer.echo(
                f"spmp modbus-sim: Modbus TCP on {_url_host(simulator.host)}:{simulator.port}, unit {unit}, "
                f"{simulator.mapping.name or 'register map'}; Ctrl-C to stop",
                err=True,
            )
            await stop.wait()

    _tcp_port_free(host, port)
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        _fail(f"cannot listen on {_url_host(host)}:{port}: {exc.strerror or exc}")


def _tcp_port_free(host: str, port: int) -> None:
    """A red error (exit 2) when ``host:port`` cannot be listened on (in use, no such address)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
            probe.listen()
    except OSError as exc:
        _fail(f"cannot listen on {_url_host(host)}:{port}: {exc.strerror or exc}")
