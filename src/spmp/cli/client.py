"""``spmp client``: a plain LwM2M client with a Device object, until Ctrl-C.

It registers directly (PSK, X.509 certificate or NoSec) or through a bootstrap server; the client
engine is imported only when the command runs.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Any

import typer

from spmp.cli._common import (
    KEY_FILE_HELP,
    CaOption,
    CertOption,
    KeyOption,
    _fail,
    _hex_key,
    _key_text,
    _registry,
    _x509,
    log,
)


def client_command(  # noqa: PLR0917 - Typer maps each parameter to an option
    endpoint: Annotated[str, typer.Option("--endpoint", help="The LwM2M endpoint name of this client.")],
    server_uri: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="Register directly with this LwM2M server: coaps://host:5684 (coap://host:5683 only with --insecure).",
        ),
    ] = None,
    bootstrap_uri: Annotated[
        str | None, typer.Option("--bootstrap", help="Bootstrap from this server (coap[s]://host:port) instead.")
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
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow plain coap:// (NoSec: no authentication, no encryption).")
    ] = False,
    lifetime: Annotated[int, typer.Option("--lifetime", help="Registration lifetime in seconds.", min=1)] = 300,
    cert: CertOption = None,
    key: KeyOption = None,
    ca: CaOption = None,
) -> None:
    """Run an LwM2M client with a Device object until Ctrl-C, then de-register.

    Normal case: `spmp client --endpoint E --server coaps://host:5684 --psk-identity ID --psk-key-file KEYFILE`
    (--psk-key-file - reads stdin; --psk-key HEX works too but shows the key in `ps`).
    With --cert/--key/--ca (and --server coaps://…) it uses security mode Certificate: the files go to
    /0/x/3 (certificate), /0/x/5 (key) and /0/x/4 (the CA the server's certificate must chain to).
    """
    from spmp.client.accounts import AccountError, ServerSpec, direct_servers, factory_bootstrap, parse_uri  # noqa: PLC0415

    if (server_uri is None) == (bootstrap_uri is None):
        _fail("give exactly one of --server and --bootstrap")
    uri = server_uri or bootstrap_uri or ""
    try:
        secure = parse_uri(uri).secure
    except AccountError as exc:
        _fail(str(exc))
    psk_key = _key_text(psk_key, psk_key_file, "--psk-key", "--psk-key-file")
    credentials = _x509(cert, key, ca)
    if credentials is not None:
        if server_uri is None or not secure:
            _fail("--cert/--key/--ca need --server coaps://… (certificate mode, no bootstrap)")
        spec = ServerSpec(
            server_uri,
            lifetime=lifetime,
            certificate=(credentials.chain[0], credentials.private_key, credentials.trusted[0]),
        )
        try:
            asyncio.run(_run_client(endpoint, direct_servers([spec])))
        except KeyboardInterrupt:
            return
        return
    psk: bytes | None = None
    if secure:
        if not psk_identity or not psk_key:
            _fail("coaps:// needs --psk-identity and --psk-key (or --psk-key-file)")
        psk = _hex_key(psk_key, "--psk-key-file" if psk_key_file is not None else "--psk-key")
    elif not insecure:
        _fail("coap:// is unauthenticated and unencrypted (NoSec): add --insecure to use it anyway")
    else:
        typer.echo("warning: NoSec mode, the LwM2M traffic is neither authenticated nor encrypted", err=True)
    if server_uri is not None:
        objects = direct_servers([ServerSpec(server_uri, lifetime=lifetime, psk_identity=psk_identity, psk_key=psk)])
    else:
        objects = factory_bootstrap(uri, psk_identity, psk)
    try:
        asyncio.run(_run_client(endpoint, objects))
    except KeyboardInterrupt:
        return  # the signal handler normally gets it first; de-registration ran in _run_client


async def _run_client(endpoint: str, objects: tuple[Any, Any]) -> None:
    from spmp.client.device import device_object  # noqa: PLC0415
    from spmp.client.engine import Lwm2mClient  # noqa: PLC0415
    from spmp.client.tree import ObjectTree  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    registry = _registry()
    tree = ObjectTree(registry)
    for enabler in (*objects, device_object(serial=endpoint, on_reboot=lambda: log.warning("reboot requested"))):
        tree.add(enabler)
    client = Lwm2mClient(endpoint, tree, registry)
    await client.start()
    typer.echo(f"spmp client {endpoint!r} started; Ctrl-C to de-register and stop", err=True)
    try:
        await stop.wait()
    finally:
        await client.stop()
