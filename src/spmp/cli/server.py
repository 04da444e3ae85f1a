"""``spmp server`` and ``spmp psk``: the LwM2M management server and the PSKs devices present to it.

``server`` runs CoAPS (and plain CoAP with ``--insecure``) with the REST API, on uvloop when it is
installed, optionally as one node of a PostgreSQL cluster; ``psk add``/``psk list`` manage the
device PSKs in the data directory's store.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Coroutine
from pathlib import Path as FilePath
from typing import Annotated, Any

import typer
from rich.table import Table

from spmp.cli._common import (
    DEFAULT_DATA_DIR,
    KEY_FILE_HELP,
    CaOption,
    CertOption,
    DataOption,
    KeyOption,
    _bound_port,
    _fail,
    _hex_key,
    _key_text,
    _out,
    _registry,
    _start_api,
    _store_path,
    _url_host,
    _with_store,
    _x509,
)
from spmp.coap.dtls import X509Credentials
from spmp.server import ManagementServer
from spmp.store import PostgresStore, SecurityInfo, SqliteStore, Store, StoreError, open_store


def server(  # noqa: PLR0917 - Typer maps each parameter to an option
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (CoAP, CoAPS and the REST API).")
    ] = "127.0.0.1",
    coap_port: Annotated[
        int, typer.Option("--coap-port", help="Plain CoAP port (only with --insecure).", min=0, max=65535)
    ] = 5683,
    coaps_port: Annotated[
        int, typer.Option("--coaps-port", help="CoAP over DTLS (PSK) port.", min=0, max=65535)
    ] = 5684,
    api_port: Annotated[int, typer.Option("--api-port", help="REST API port.", min=0, max=65535)] = 8080,
    data: DataOption = DEFAULT_DATA_DIR,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Also accept plain, unauthenticated CoAP on --coap-port.")
    ] = False,
    api_token: Annotated[
        str | None,
        typer.Option("--api-token", help="Bearer token for the REST API (default: SPMP_API_TOKEN or DIR/api-token)."),
    ] = None,
    cert: CertOption = None,
    key: KeyOption = None,
    ca: CaOption = None,
    store_url: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Store URL instead of DIR/spmp.db, e.g. postgresql://user:password@host:5432/spmp: "
            "several servers on one PostgreSQL database form a cluster (docs/cluster.md).",
        ),
    ] = None,
    node_id: Annotated[
        str | None,
        typer.Option("--node-id", help="This server's name in a cluster (default with PostgreSQL: the host name)."),
    ] = None,
    use_uvloop: Annotated[
        bool | None,
        typer.Option(
            "--uvloop/--no-uvloop",
            help="Run on uvloop (pip install 'spmp[fast]'); default: when it is installed (docs/performance.md).",
        ),
    ] = None,
) -> None:
    """Run the LwM2M management server (CoAPS with PSKs from `spmp psk add`) and its REST API.

    The API token is --api-token, else SPMP_API_TOKEN, else the one kept in DIR/api-token (generated
    and printed once at first start). With --cert/--key/--ca, CoAPS also accepts X.509 clients whose
    certificate chains to the CA; such a client must register with its certificate's CN as endpoint
    name. With --store postgresql://..., several servers (each with its own --node-id) share one
    database behind a UDP load balancer (docs/cluster.md). Stop with Ctrl-C.
    """
    db = _store_path(data)
    certificates = _x509(cert, key, ca)
    try:
        store = open_store(store_url) if store_url else SqliteStore(db)
    except StoreError as exc:
        _fail(str(exc))
    if isinstance(store, PostgresStore):
        node_id = node_id or socket.gethostname()
        store.node_id = node_id
    try:
        _run_event_loop(
            _serve(
                host,
                coap_port,
                coaps_port,
                api_port=api_port,
                db=db,
                insecure=insecure,
                api_token=api_token,
                certificates=certificates,
                store=store,
                node_id=node_id or "",
            ),
            use_uvloop,
        )
    except KeyboardInterrupt:
        pass
    except StoreError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot listen: {exc}")


def _run_event_loop(main: Coroutine[Any, Any, None], use_uvloop: bool | None) -> None:
    """``asyncio.run(main)``, on uvloop when asked for (``True``) or, by default, when it is installed."""
    if use_uvloop is not False:
        try:
            import uvloop  # noqa: PLC0415 - optional (spmp[fast])
        except ImportError:
            if use_uvloop:
                main.close()
                _fail("--uvloop needs uvloop: pip install 'spmp[fast]'")
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


async def _serve(
    host: str,
    coap_port: int,
    coaps_port: int,
    *,
    api_port: int,
    db: FilePath,
    insecure: bool,
    api_token: str | None,
    certificates: X509Credentials | None = None,
    store: Store | None = None,
    node_id: str = "",
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with store if store is not None else SqliteStore(db) as opened:
        mgmt = ManagementServer(
            opened,
            _registry(),
            host=host,
            coap_port=coap_port,
            coaps_port=coaps_port,
            insecure=insecure,
            certificates=certificates,
            node_id=node_id,
        )
        await mgmt.start()
        api_task: asyncio.Task[None] | None = None
        try:
            api_task, api_url = _start_api(mgmt, opened, api_token, (host, api_port), db.parent)
            coaps = _bound_port(mgmt.coaps_address, coaps_port)
            coap = _bound_port(mgmt.coap_address, coap_port)
            typer.echo(
                f"spmp server: coaps://{_url_host(host)}:{coaps}"
                + (f", coap://{_url_host(host)}:{coap}" if insecure else "")
                + f", API {api_url}"
                + f", data {db.parent}"
                + (f", cluster node {node_id!r}" if mgmt.cluster is not None else ""),
                err=True,
            )
            await stop.wait()
        finally:
            if api_task is not None:
                api_task.cancel()
                await asyncio.gather(api_task, return_exceptions=True)
            await mgmt.stop()


psk_app = typer.Typer(
    help="Manage the PSK credentials devices use towards the management server.", no_args_is_help=True
)


@psk_app.command("add")
def psk_add(
    endpoint: Annotated[str, typer.Option("--endpoint", help="The device's LwM2M endpoint name.")],
    identity: Annotated[str, typer.Option("--identity", help="The PSK identity the device presents in DTLS.")],
    key: Annotated[str | None, typer.Option("--key", help="The pre-shared key, in hexadecimal.")] = None,
    key_file: Annotated[
        str | None,
        typer.Option(
            "--key-file", metavar="FILE", help=f"Read the hexadecimal key from FILE (- for stdin): {KEY_FILE_HELP}."
        ),
    ] = None,
    data: DataOption = DEFAULT_DATA_DIR,
) -> None:
    """Add or replace an endpoint's PSK (a running server picks it up within 30 s).

    Give the key with --key HEX, or better with --key-file FILE or --key-file - (stdin), which
    keep it out of `ps` and shell history: `spmp psk add --endpoint e --identity i --key-file - < e.hex`.
    """
    text = _key_text(key, key_file, "--key", "--key-file")
    if text is None:
        _fail("give the key with --key HEX or --key-file FILE (- for stdin)")
    secret = _hex_key(text, "--key-file" if key_file is not None else "--key")
    if not secret or not identity or not endpoint:
        _fail("--endpoint, --identity and --key must not be empty")

    async def put(store: Store) -> None:
        await store.put_security(SecurityInfo(endpoint, identity, secret))

    _with_store(put)(data)
    typer.echo(f"PSK stored for endpoint {endpoint!r} (identity {identity!r}, {len(secret)}-byte key)")


@psk_app.command("list")
def psk_list(data: DataOption = DEFAULT_DATA_DIR) -> None:
    """List endpoints with a PSK: endpoint, identity and key length (keys are never printed)."""

    async def fetch(store: Store) -> list[SecurityInfo]:
        return await store.list_security()

    infos: list[SecurityInfo] = _with_store(fetch)(data)
    table = Table(title=f"PSK credentials ({len(infos)})", title_justify="left")
    table.add_column("endpoint")
    table.add_column("identity")
    table.add_column("key", justify="right")
    for info in sorted(infos, key=lambda i: i.endpoint):
        table.add_row(info.endpoint, info.psk_identity, f"{len(info.psk_key)} bytes")
    _out().print(table)
