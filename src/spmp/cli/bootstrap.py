"""``spmp bootstrap``: the LwM2M bootstrap server and what it provisions (docs/bootstrap.md).

With no subcommand it runs the server; ``config`` manages which management servers each endpoint is
given, ``psk`` the factory PSKs devices present, and ``start`` runs a server-initiated bootstrap
towards one device.
"""

from __future__ import annotations

import asyncio
import json
import signal
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

from spmp.bootstrap.psk import ensure_server_psk
from spmp.bootstrap.server import BootstrapError, BootstrapServer, SessionResult, parse_address
from spmp.bootstrap.session import needs_generated_psk
from spmp.cli._common import (
    DEFAULT_DATA_DIR,
    KEY_FILE_HELP,
    DataOption,
    _bound_port,
    _fail,
    _hex_key,
    _key_text,
    _out,
    _registry,
    _store_path,
    _url_host,
    _with_store,
    log,
)
from spmp.store import (
    DEFAULT_ENDPOINT,
    BootstrapConfig,
    SecurityInfo,
    SecurityMode,
    SecurityScope,
    ServerAccount,
    SqliteStore,
    Store,
    StoreError,
)

bootstrap_app = typer.Typer(
    help="Run the LwM2M bootstrap server (no subcommand) or manage what it provisions.",
    invoke_without_command=True,
)
bootstrap_config_app = typer.Typer(help="Which management servers each endpoint is given.", no_args_is_help=True)
bootstrap_psk_app = typer.Typer(help="Factory (bootstrap) PSKs devices present to the bootstrap server.")
bootstrap_app.add_typer(bootstrap_config_app, name="config")
bootstrap_app.add_typer(bootstrap_psk_app, name="psk", no_args_is_help=True)

EndpointOption = Annotated[
    str, typer.Option("--endpoint", help="The device's endpoint name, or '*' for the default configuration.")
]


class BootstrapSecurity(StrEnum):
    PSK = "psk"
    NOSEC = "nosec"


@bootstrap_app.callback()
def bootstrap(  # noqa: PLR0917 - Typer maps each parameter to an option
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    coap_port: Annotated[
        int, typer.Option("--coap-port", help="Plain CoAP port (only with --insecure).", min=0, max=65535)
    ] = 5783,
    coaps_port: Annotated[
        int, typer.Option("--coaps-port", help="CoAP over DTLS (PSK) port.", min=0, max=65535)
    ] = 5784,
    data: DataOption = DEFAULT_DATA_DIR,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Also accept plain CoAP (endpoints without a bootstrap PSK).")
    ] = False,
) -> None:
    """Run the LwM2M bootstrap server until Ctrl-C (see docs/bootstrap.md).

    Devices present their factory PSK (`spmp bootstrap psk add`) and get the management servers of
    their configuration (`spmp bootstrap config set`). Example: `spmp bootstrap --data /var/lib/spmp`.
    """
    if ctx.invoked_subcommand is not None:
        return
    db = _store_path(data)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with SqliteStore(db) as store:
            server = BootstrapServer(
                store, _registry(), host=host, coap_port=coap_port, coaps_port=coaps_port, insecure=insecure
            )
            async with server:
                where = _url_host(host)
                plain = f", coap://{where}:{_bound_port(server.coap_address, coap_port)}" if insecure else ""
                coaps = _bound_port(server.coaps_address, coaps_port)
                typer.echo(f"spmp bootstrap: coaps://{where}:{coaps}{plain}, data {db.parent}", err=True)
                await stop.wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    except StoreError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot listen: {exc}")


@bootstrap_config_app.command("set")
def bootstrap_config_set(  # noqa: PLR0917 - Typer maps each parameter to an option
    endpoint: EndpointOption,
    servers: Annotated[
        list[str], typer.Option("--server", help="A management server URI; repeat for several (telco, cloud).")
    ],
    ssids: Annotated[
        list[int] | None,
        typer.Option("--ssid", help="Short Server IDs, one per --server (missing ones count up from the last; 101)."),
    ] = None,
    security: Annotated[
        list[BootstrapSecurity] | None,
        typer.Option("--security", help="psk or nosec, one per --server or one for all (default: psk for coaps://)."),
    ] = None,
    lifetime: Annotated[int, typer.Option("--lifetime", help="Registration lifetime in seconds.")] = 300,
    pmin: Annotated[int | None, typer.Option("--pmin", help="Default minimum notification period (s).")] = None,
    pmax: Annotated[int | None, typer.Option("--pmax", help="Default maximum notification period (s).")] = None,
    binding: Annotated[str, typer.Option("--binding", help="Binding letters (U for UDP).")] = "U",
    keep_existing: Annotated[
        bool, typer.Option("--keep-existing", help="Do not Bootstrap-Delete /0 and /1 first.")
    ] = False,
    data: DataOption = DEFAULT_DATA_DIR,
) -> None:
    """Set which management servers an endpoint (or '*', every endpoint without its own) is given.

    PSK accounts get the endpoint's own PSK (identity = endpoint name): generated now for a named
    endpoint, at its first bootstrap for '*', and stored where the management server reads it.
    Example: `spmp bootstrap config set --endpoint '*' --server coaps://telco:5684 --server coaps://cloud:5684`.
    """
    wanted = list(ssids or [])
    while len(wanted) < len(servers):
        wanted.append(wanted[-1] + 1 if wanted else 101)
    modes = list(security or [])
    if len(modes) not in (0, 1, len(servers)) or len(wanted) != len(servers):
        _fail("give --ssid and --security once per --server (or --security once for all)")
    from spmp.client.accounts import AccountError, parse_uri  # noqa: PLC0415

    for uri in servers:
        try:
            parse_uri(uri)
        except AccountError as exc:
            _fail(f"--server: {exc}")
    try:
        accounts = tuple(
            ServerAccount(
                ssid,
                uri,
                _bootstrap_security_mode(uri, modes[0] if len(modes) == 1 else modes[i] if modes else None),
                lifetime=lifetime,
                default_pmin=pmin,
                default_pmax=pmax,
                binding=binding,
            )
            for i, (uri, ssid) in enumerate(zip(servers, wanted, strict=True))
        )
        config = BootstrapConfig(endpoint, accounts, delete_existing=not keep_existing)
    except ValueError as exc:
        _fail(str(exc))

    async def put(store: Store) -> bool:
        await store.put_bootstrap_config(config)
        if endpoint != DEFAULT_ENDPOINT and needs_generated_psk(config):
            return (await ensure_server_psk(store, endpoint))[1]
        return False

    generated = _with_store(put)(data)
    typer.echo(f"bootstrap configuration of {endpoint!r}: {len(accounts)} server(s)")
    if generated:
        typer.echo(f"generated the management-server PSK of {endpoint!r} (identity {endpoint!r}; key not shown)")


def _bootstrap_security_mode(uri: str, chosen: BootstrapSecurity | None) -> SecurityMode:
    if chosen is None:
        return SecurityMode.PSK if uri.lower().startswith("coaps://") else SecurityMode.NO_SEC
    return SecurityMode.PSK if chosen is BootstrapSecurity.PSK else SecurityMode.NO_SEC


@bootstrap_config_app.command("list")
def bootstrap_config_list(data: DataOption = DEFAULT_DATA_DIR) -> None:
    """List bootstrap configurations: endpoint, servers, whether /0 and /1 are deleted first."""

    async def fetch(store: Store) -> list[BootstrapConfig]:
        return await store.list_bootstrap_configs()

    configs: list[BootstrapConfig] = _with_store(fetch)(data)
    table = Table(title=f"Bootstrap configurations ({len(configs)})", title_justify="left")
    for column in ("endpoint", "servers", "delete existing"):
        table.add_column(column)
    for config in configs:
        servers = ", ".join(f"{s.short_server_id} {s.uri} ({s.security_mode.name})" for s in config.servers)
        table.add_row(config.endpoint, servers, "yes" if config.delete_existing else "no")
    _out().print(table)


@bootstrap_config_app.command("show")
def bootstrap_config_show(endpoint: EndpointOption, data: DataOption = DEFAULT_DATA_DIR) -> None:
    """Show what an endpoint would be given (its own configuration, else the default '*')."""

    async def fetch(store: Store) -> BootstrapConfig | None:
        return await store.get_bootstrap_config(endpoint)

    config: BootstrapConfig | None = _with_store(fetch)(data)
    if config is None:
        _fail(f"no bootstrap configuration for {endpoint!r} and no default ('*')")
    typer.echo(json.dumps(_config_json(config), indent=2))


@bootstrap_config_app.command("delete")
def bootstrap_config_delete(endpoint: EndpointOption, data: DataOption = DEFAULT_DATA_DIR) -> None:
    """Delete an endpoint's configuration (it then gets the default '*', if any)."""

    async def delete(store: Store) -> None:
        await store.delete_bootstrap_config(endpoint)

    _with_store(delete)(data)
    typer.echo(f"bootstrap configuration of {endpoint!r} deleted")


@bootstrap_config_app.command("export")
def bootstrap_config_export(
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Only this endpoint.")] = None,
    data: DataOption = DEFAULT_DATA_DIR,
) -> None:
    """Print configurations and the management-server PSKs as JSON, WITH keys (hex).

    For a management server that does not share this data directory: feed each PSK to
    `spmp psk add` there. Treat the output as a secret.
    """

    async def fetch(store: Store) -> tuple[list[BootstrapConfig], list[SecurityInfo]]:
        configs = await store.list_bootstrap_configs()
        psks = await store.list_security(SecurityScope.SERVER)
        return configs, psks

    configs, psks = _with_store(fetch)(data)
    if endpoint is not None:
        configs = [c for c in configs if c.endpoint == endpoint]
        psks = [p for p in psks if p.endpoint == endpoint]
    document = {
        "configs": [_config_json(c) for c in configs],
        "server_psks": [{"endpoint": p.endpoint, "identity": p.psk_identity, "key": p.psk_key.hex()} for p in psks],
    }
    typer.echo(json.dumps(document, indent=2))
    typer.echo(f"exported {len(psks)} PSK(s) in clear: keep this output secret", err=True)


def _config_json(config: BootstrapConfig) -> dict[str, Any]:
    """A configuration for people and scripts; keys are shown only as 'given' or 'per endpoint'."""
    return {
        "endpoint": config.endpoint,
        "delete_existing": config.delete_existing,
        "servers": [
            {
                "ssid": s.short_server_id,
                "uri": s.uri,
                "security": s.security_mode.name,
                "psk": None
                if s.security_mode is not SecurityMode.PSK
                else ("given" if s.psk_key is not None else "per endpoint"),
                "lifetime": s.lifetime,
                "default_pmin": s.default_pmin,
                "default_pmax": s.default_pmax,
                "binding": s.binding,
                "notification_storing": s.notification_storing,
            }
            for s in config.servers
        ],
        "writes": [{"path": w.path, "value": repr(w.value), "type": w.type_name} for w in config.writes],
    }


@bootstrap_psk_app.command("add")
def bootstrap_psk_add(
    endpoint: Annotated[str, typer.Option("--endpoint", help="The device's LwM2M endpoint name.")],
    identity: Annotated[str, typer.Option("--identity", help="The factory PSK identity.")],
    key: Annotated[str | None, typer.Option("--key", help="The factory pre-shared key, in hexadecimal.")] = None,
    key_file: Annotated[
        str | None,
        typer.Option(
            "--key-file", metavar="FILE", help=f"Read the hexadecimal key from FILE (- for stdin): {KEY_FILE_HELP}."
        ),
    ] = None,
    data: DataOption = DEFAULT_DATA_DIR,
) -> None:
    """Add or replace a device's factory (bootstrap) PSK; a running bootstrap server picks it up.

    Give the key with --key HEX, or better with --key-file FILE or --key-file - (stdin), which
    keep it out of `ps` and shell history.
    """
    text = _key_text(key, key_file, "--key", "--key-file")
    if text is None:
        _fail("give the key with --key HEX or --key-file FILE (- for stdin)")
    secret = _hex_key(text, "--key-file" if key_file is not None else "--key")
    if not secret or not identity or not endpoint:
        _fail("--endpoint, --identity and --key must not be empty")

    async def put(store: Store) -> None:
        await store.put_security(SecurityInfo(endpoint, identity, secret), SecurityScope.BOOTSTRAP)

    _with_store(put)(data)
    typer.echo(f"bootstrap PSK stored for {endpoint!r} (identity {identity!r}, {len(secret)}-byte key)")


@bootstrap_psk_app.command("list")
def bootstrap_psk_list(data: DataOption = DEFAULT_DATA_DIR) -> None:
    """List factory PSKs: endpoint, identity, key length (keys are never printed)."""

    async def fetch(store: Store) -> list[SecurityInfo]:
        return await store.list_security(SecurityScope.BOOTSTRAP)

    infos: list[SecurityInfo] = _with_store(fetch)(data)
    table = Table(title=f"Bootstrap PSKs ({len(infos)})", title_justify="left")
    for column in ("endpoint", "identity", "key"):
        table.add_column(column)
    for info in infos:
        table.add_row(info.endpoint, info.psk_identity, f"{len(info.psk_key)} bytes")
    _out().print(table)


@bootstrap_psk_app.command("delete")
def bootstrap_psk_delete(
    endpoint: Annotated[str, typer.Option("--endpoint", help="The device's LwM2M endpoint name.")],
    data: DataOption = DEFAULT_DATA_DIR,
) -> None:
    """Delete a device's factory PSK (it can then no longer bootstrap over DTLS)."""

    async def delete(store: Store) -> None:
        await store.delete_security(endpoint, SecurityScope.BOOTSTRAP)

    _with_store(delete)(data)
    typer.echo(f"bootstrap PSK of {endpoint!r} deleted")


@bootstrap_app.command("start")
def bootstrap_start(  # noqa: PLR0917 - Typer maps each parameter to an option
    endpoint: Annotated[str, typer.Option("--endpoint", help="The device's LwM2M endpoint name.")],
    address: Annotated[
        str, typer.Option("--address", help="Where the device listens for its bootstrap server: HOST:PORT.")
    ],
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Plain CoAP (keys cross the network in clear) instead of DTLS.")
    ] = False,
    step_timeout: Annotated[
        float, typer.Option("--step-timeout", help="Seconds each step may take, retransmissions included.")
    ] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the session's result as JSON.")] = False,
    data: DataOption = DEFAULT_DATA_DIR,
) -> None:
    """Server-initiated bootstrap: run the bootstrap sequence now towards a device listening at --address.

    One-shot: needs the data directory (configuration, bootstrap PSK), not a running `spmp bootstrap`.
    Over DTLS this command is the DTLS client, with the endpoint's bootstrap PSK. Exit status 0 when
    the device finished, 1 when the session failed (the reason is printed), 2 when it cannot start.
    Example: `spmp bootstrap start --endpoint charger-17 --address 192.0.2.7:56830`.
    """
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        _fail(str(exc))
    if step_timeout <= 0:
        _fail("--step-timeout must be positive")

    async def run(store: Store) -> SessionResult:
        server = BootstrapServer(store, _registry(), insecure=insecure, step_timeout=step_timeout)
        if insecure:
            log.warning("plain coap bootstrap: generated keys cross the network in clear", extra={"endpoint": endpoint})
        try:
            return await server.bootstrap_server_initiated(endpoint, host, port, secure=not insecure)
        except BootstrapError as exc:
            _fail(str(exc))

    result: SessionResult = _with_store(run)(data)
    if as_json:
        typer.echo(json.dumps(result.as_json(), indent=2))
    else:
        for step in result.steps:
            typer.echo(f"{step.code or 'no answer':>9}  {step.step}" + (f"  ({step.detail})" if step.detail else ""))
        for note in result.notes:
            typer.echo(f"     note  {note}")
    if not result.ok:
        _fail(f"bootstrap of {endpoint!r} failed: {result.reason}", code=1)
    typer.echo(f"bootstrap of {endpoint!r} at {result.peer} finished ({len(result.steps)} steps)", err=as_json)
