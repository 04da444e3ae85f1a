"""``spmp bts``: the simulated BTS, a NETCONF server over SSH (docs/bts.md).

Its power draw follows its running configuration; its SSH and NETCONF modules are imported only when
the command runs.
"""

from __future__ import annotations

import signal
from pathlib import Path as FilePath
from typing import Annotated

import typer

from spmp.cli._common import _fail


def bts_command(  # noqa: PLR0917 - Typer maps each parameter to an option
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="NETCONF over SSH port.", min=0, max=65535)] = 8300,
    data: Annotated[
        FilePath,
        typer.Option("--data", help="Data directory: running configuration and SSH host key.", file_okay=False),
    ] = FilePath("spmp-bts"),
    user: Annotated[str, typer.Option("--user", help="SSH user name.")] = "spmp",
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            envvar="SPMP_BTS_PASSWORD",
            help="SSH password; without it and --authorized-keys one is generated into DIR/bts-password.",
        ),
    ] = None,
    authorized_keys: Annotated[
        FilePath | None,
        typer.Option("--authorized-keys", help="OpenSSH authorized_keys file: public keys --user may log in with."),
    ] = None,
) -> None:
    """Run the simulated BTS: a NETCONF server over SSH whose power draw follows its configuration.

    Stop with Ctrl-C.
    """
    import secrets  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from spmp.bts import BtsDevice, BtsNetconfServer, load_authorized_keys, load_or_create_host_key  # noqa: PLC0415

    try:
        data.mkdir(parents=True, exist_ok=True)
        keys = {user: load_authorized_keys(authorized_keys)} if authorized_keys is not None else {}
        if password is None and authorized_keys is None:
            password = secrets.token_urlsafe(16)
            password_file = data / "bts-password"
            password_file.touch(mode=0o600, exist_ok=True)
            password_file.chmod(0o600)
            password_file.write_text(password + "\n")
            typer.echo(f"SSH password for {user!r} written to {password_file}", err=True)
        device = BtsDevice(data)
        users = {user: password} if password is not None else {}
        server = BtsNetconfServer(
            device, host_key=load_or_create_host_key(data), host=host, port=port, users=users, authorized_keys=keys
        )
        server.start()
    except (OSError, ValueError) as exc:
        _fail(f"spmp bts: {exc}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(
        f"spmp bts: NETCONF over SSH on {host}:{server.port}, drawing {device.power_draw_watts:.1f} W, data {data}",
        err=True,
    )
    try:
        while not stop.wait(0.5):  # a timed wait, so the signal handler gets to run promptly
            pass
    finally:
        server.close()
