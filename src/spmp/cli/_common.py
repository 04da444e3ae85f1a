"""What the ``spmp`` command modules share; it imports none of them, so each can import it.

Exit codes and the red error line (``_fail``), the output console and logger, the data directory and
its SQLite store (``DataOption``, ``_store_path``, ``_with_store``), hexadecimal keys given as options
or read from key files, the X.509 options, host and port formatting, and the REST API starter that
``server`` and ``demo`` share.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path as FilePath
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from spmp.coap.dtls import X509Credentials
from spmp.lwm2m import ModelRegistry
from spmp.lwm2m.objects import default_registry
from spmp.server import ManagementServer
from spmp.store import NotFound, SqliteStore, Store, StoreError

# One logger for the whole command, named as before the split into modules.
log = logging.getLogger("spmp.cli")

EXIT_INPUT = 2
EXIT_INTERNAL = 1


def _out() -> Console:
    # Created per call so that a replaced sys.stdout (tests, redirection) is honoured. When the output
    # is not a terminal and COLUMNS is unset, use 120 columns rather than rich's 80 (logs, pipes).
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, markup=False, emoji=False, width=120 if wide else None)


def _fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    Console(stderr=True, highlight=False, markup=False, emoji=False).print(
        Text(f"error: {message}", style="bold red"), soft_wrap=True
    )
    raise typer.Exit(code)


def _registry() -> ModelRegistry:
    return default_registry()


DEFAULT_DATA_DIR = FilePath("spmp-data")
DataOption = Annotated[
    FilePath, typer.Option("--data", help="Data directory; the SQLite store is DIR/spmp.db.", file_okay=False)
]


def _store_path(data: FilePath) -> FilePath:
    """``DIR/spmp.db``, creating DIR; a red error (exit 2) when DIR cannot be created."""
    _data_dir(data)
    return data / "spmp.db"


def _data_dir(data: FilePath) -> FilePath:
    """Create a data directory (and its parents) if missing; a red error (exit 2) when that fails."""
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"cannot use data directory {str(data)!r}: {exc.strerror or exc}")
    if not data.is_dir():
        _fail(f"cannot use data directory {str(data)!r}: not a directory")
    return data


KEY_FILE_HELP = "keeps the key out of `ps` and shell history"


def _key_text(key: str | None, key_file: str | None, option: str, file_option: str) -> str | None:
    """The hexadecimal key of ``option``, or read from ``file_option`` (a file, ``-`` for stdin).

    Whitespace in the file (a trailing newline, spaced bytes) is ignored. None when neither is given.
    """
    if key is not None and key_file is not None:
        _fail(f"give {option} or {file_option}, not both")
    if key_file is None:
        return key
    try:
        text = sys.stdin.read() if key_file == "-" else FilePath(key_file).read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot read {file_option} {key_file!r}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        _fail(f"{file_option} {key_file!r} is not text: it must hold the key in hexadecimal")
    return "".join(text.split())


def _hex_key(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        _fail(f"{what} must be hexadecimal, for example 73656372657431")


CertOption = Annotated[
    FilePath | None, typer.Option("--cert", help="X.509 mode: our certificate (PEM; intermediates may follow).")
]
KeyOption = Annotated[FilePath | None, typer.Option("--key", help="X.509 mode: our private key (PEM, unencrypted).")]
CaOption = Annotated[
    FilePath | None, typer.Option("--ca", help="X.509 mode: the CA certificate(s) (PEM) the peer's must chain to.")
]


def _x509(cert: FilePath | None, key: FilePath | None, ca: FilePath | None) -> X509Credentials | None:
    """The --cert/--key/--ca triple as credentials (None when none is given); a red error if unusable."""
    if cert is None and key is None and ca is None:
        return None
    if cert is None or key is None or ca is None:
        _fail("X.509 mode needs all three of --cert, --key and --ca")
    try:
        return X509Credentials.from_files(cert, key, ca)
    except (OSError, ValueError) as exc:
        _fail(f"cannot use the X.509 credentials: {exc}")


def _with_store(action: Any) -> Any:
    """Run ``action(store)`` on the data directory's store; store errors become a red line."""

    async def body(db: FilePath) -> Any:
        async with SqliteStore(db) as store:
            return await action(store)

    def run(data: FilePath) -> Any:
        try:
            return asyncio.run(body(_store_path(data)))
        except (StoreError, NotFound) as exc:
            _fail(str(exc))

    return run


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bound_port(bound: tuple[str, int] | None, asked: int) -> int:
    """The port a server actually listens on (what port 0 became), else the one asked for."""
    return bound[1] if bound is not None else asked


def _start_api(
    mgmt: ManagementServer, store: Store, explicit_token: str | None, address: tuple[str, int], data: FilePath
) -> tuple[asyncio.Task[None] | None, str]:
    """Serve the REST API in a task: (the task, its URL), or log why it is not available: (None, why).

    The port is bound here, before anything is printed: one in use is a red error (exit 2).
    """
    try:
        from spmp.api import bind, serve  # noqa: PLC0415 - uvicorn is heavy; only the server needs it
        from spmp.api.app import create_app  # noqa: PLC0415
        from spmp.api.token import load_or_create_token  # noqa: PLC0415
    except ImportError as exc:
        log.warning("API not available", extra={"reason": str(exc)})
        return None, "not available"
    host, port = address
    try:
        sock = bind(host, port)
    except OSError as exc:
        _fail(f"cannot listen on the API port {_url_host(host)}:{port} (--api-port): {exc.strerror or exc}")
    try:
        token, created = load_or_create_token(data, explicit_token)
    except ValueError as exc:
        sock.close()
        _fail(str(exc))
    except OSError as exc:
        sock.close()
        _fail(f"cannot keep the API token in {str(data)!r}: {exc.strerror or exc}")
    if created:
        typer.echo(f"API token (kept in {data / 'api-token'}): {token}", err=True)
    api = create_app(mgmt, store, token)
    url = f"http://{_url_host(host)}:{sock.getsockname()[1]}"
    return asyncio.get_running_loop().create_task(serve(api, host, port, sock=sock)), url
