"""The ``spmp`` command: run the servers, devices and simulators of SPMP, and inspect LwM2M data.

Every subcommand has ``--help``. Exit status: 0 on success, 2 for bad input (an unknown object, a
payload that does not decode, bad options), 1 for an internal error (a bug: rerun with
``--log-level DEBUG`` for the traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine, Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path as FilePath
from typing import Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from spmp import __version__
from spmp import logging as spmp_logging
from spmp.bootstrap.psk import ensure_server_psk
from spmp.bootstrap.server import BootstrapError, BootstrapServer, SessionResult, parse_address
from spmp.bootstrap.session import needs_generated_psk
from spmp.coap.dtls import X509Credentials
from spmp.lwm2m import (
    ContentFormat,
    Lwm2mError,
    ModelRegistry,
    MultipleResource,
    Node,
    Object,
    ObjectInstance,
    ObjectModel,
    Path,
    ResourceInstance,
    ResourceModel,
    SingleResource,
    Value,
    codecs,
    instance_from_model,
)
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.objects.docs import render_markdown
from spmp.server import ManagementServer
from spmp.store import (
    DEFAULT_ENDPOINT,
    BootstrapConfig,
    NotFound,
    PostgresStore,
    SecurityInfo,
    SecurityMode,
    SecurityScope,
    ServerAccount,
    SqliteStore,
    Store,
    StoreError,
    open_store,
)

log = logging.getLogger(__name__)

app = typer.Typer(
    name="spmp",
    help="SPMP: manage solar-powered telecom sites over LwM2M.\n\n"
    "Servers: `server` (LwM2M management server + REST API), `bootstrap` (bootstrap server; also its "
    "configurations and factory PSKs), `psk` (device PSKs). Devices and simulators: `client`, `charger` "
    "(a solar charger, simulated or read over Modbus), `modbus-sim`, `bts` (a BTS over NETCONF), `fleet` "
    "(many devices, load tests), `demo` (the whole system on loopback), `scenario`. LwM2M data: `objects`, "
    "`decode`, `codecs-demo`. Every command has --help; exit status 0 ok, 2 bad input, 1 internal error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_INPUT = 2
EXIT_INTERNAL = 1


class PayloadFormat(StrEnum):
    """Content formats the ``decode`` command accepts, by their short names."""

    TLV = "tlv"
    SENML_JSON = "senml-json"
    SENML_CBOR = "senml-cbor"
    LWM2M_JSON = "lwm2m-json"
    LWM2M_CBOR = "lwm2m-cbor"
    TEXT = "text"
    OPAQUE = "opaque"
    CBOR = "cbor"

    @property
    def content_format(self) -> ContentFormat:
        return _CONTENT_FORMATS[self]


_CONTENT_FORMATS = {
    PayloadFormat.TLV: ContentFormat.TLV,
    PayloadFormat.SENML_JSON: ContentFormat.SENML_JSON,
    PayloadFormat.SENML_CBOR: ContentFormat.SENML_CBOR,
    PayloadFormat.LWM2M_JSON: ContentFormat.LWM2M_JSON,
    PayloadFormat.LWM2M_CBOR: ContentFormat.LWM2M_CBOR,
    PayloadFormat.TEXT: ContentFormat.TEXT,
    PayloadFormat.OPAQUE: ContentFormat.OPAQUE,
    PayloadFormat.CBOR: ContentFormat.CBOR,
}


class LogFormat(StrEnum):
    KV = "kv"
    JSON = "json"


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


# --------------------------------------------------------------------------------------------- main


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"spmp {__version__}")
        raise typer.Exit


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_show_version, is_eager=True),
    ] = False,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level",
            envvar="SPMP_LOG_LEVEL",
            help="Least severe log level to print to stderr: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
        ),
    ] = "WARNING",
    log_format: Annotated[
        LogFormat,
        typer.Option("--log-format", envvar="SPMP_LOG_FORMAT", help="Log lines as key=value pairs or JSON objects."),
    ] = LogFormat.KV,
) -> None:
    """SPMP: manage solar-powered telecom sites over LwM2M.

    Logs go to stderr as structured lines (quiet by default); secrets such as PSKs, keys, tokens
    and passwords are always masked.
    """
    try:
        spmp_logging.configure(log_level, "json" if log_format is LogFormat.JSON else "kv")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--log-level") from None
    log.debug("cli started", extra={"version": __version__, "argv": spmp_logging.redact_argv(sys.argv[1:])})


# ------------------------------------------------------------------------------------------ objects


@app.command()
def objects(
    object_id: Annotated[
        int | None,
        typer.Option("--id", help="Show the resources of this object (for example 3316) instead of the list."),
    ] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the generated Markdown reference of every object model.")
    ] = False,
) -> None:
    """List the LwM2M object models SPMP knows: id, name, version, instances, resources.

    Examples: `spmp objects`, `spmp objects --id 3316`, `spmp objects --markdown > docs/objects.md`.
    """
    registry = _registry()
    if markdown:
        if object_id is not None:
            _fail("--markdown documents every object; leave out --id")
        text = render_markdown(registry)
        typer.echo(text, nl=not text.endswith("\n"))
        return
    if object_id is not None:
        model = registry.object_model(object_id)
        if model is None:
            known = ", ".join(str(i) for i in registry.object_ids())
            _fail(f"no object model with id {object_id}; known ids: {known}")
        _out().print(_resource_table(model, registry.versions(object_id)))
        return
    _out().print(_object_table(registry))


def _object_table(models: Iterable[ObjectModel]) -> Table:
    rows = list(models)
    table = Table(title=f"LwM2M object models ({len(rows)})", title_justify="left")
    table.add_column("ID", justify="right", style="cyan")
    table.add_column("Name")
    table.add_column("Version", justify="right")
    table.add_column("Instances")
    table.add_column("Resources", justify="right")
    for model in rows:
        table.add_row(
            str(model.id),
            model.name,
            model.version,
            "multiple" if model.multiple else "single",
            str(len(model.resources)),
        )
    return table


def _resource_table(model: ObjectModel, versions: list[str]) -> Table:
    instances = "multiple instances" if model.multiple else "single instance"
    title = f"{model.id} {model.name} v{model.version} ({instances}, {model.urn})"
    older = [v for v in versions if v != model.version]
    caption = f"other versions known: {', '.join(older)}" if older else None
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("ID", justify="right", style="cyan")
    table.add_column("Name")
    table.add_column("Ops")
    table.add_column("Instances")
    table.add_column("Mandatory")
    table.add_column("Type")
    table.add_column("Range")
    table.add_column("Units")
    for resource in sorted(model.resources.values(), key=lambda r: r.id):
        table.add_row(
            str(resource.id),
            resource.name,
            resource.operations.value or "-",
            "multiple" if resource.multiple else "single",
            "yes" if resource.mandatory else "no",
            resource.type.value,
            resource.range.text,
            resource.units,
        )
    return table


# ------------------------------------------------------------------------------------------- decode


def _read_payload(argument: str) -> bytes:
    if argument == "-":
        return sys.stdin.buffer.read()
    if argument.startswith("@"):
        name = argument[1:]
        try:
            return FilePath(name).read_bytes()
        except OSError as exc:
            _fail(f"cannot read payload file {name!r}: {exc.strerror or exc}")
    text = "".join(argument.split()).replace(":", "")
    if text[:2].lower() == "0x":
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError:
        _fail(f"payload {argument!r} is not hexadecimal bytes (use @FILE for a binary file, - for stdin)")


@app.command()
def decode(
    payload: Annotated[
        str,
        typer.Argument(
            metavar="HEX|@FILE|-",
            help="The payload: hex bytes (spaces and colons allowed), @FILE for a file's raw bytes, - for stdin.",
            show_default=False,
        ),
    ],
    payload_format: Annotated[
        PayloadFormat,
        typer.Option("--format", "-f", help="The payload's content format.", case_sensitive=False),
    ],
    path: Annotated[
        str, typer.Option("--path", "-p", help="The LwM2M path the payload is for, such as /3/0 or /3316/0/5700.")
    ],
) -> None:
    """Decode an LwM2M payload with the built-in object models and print its node tree.

    Example: `spmp decode --format tlv --path /3/0 'C8 00 14 4F70656E204D6F62696C6520416C6C69616E6365'`.
    """
    data = _read_payload(payload)
    try:
        where = Path.parse(path)
    except Lwm2mError as exc:
        _fail(str(exc))
    registry = _registry()
    try:
        node = codecs.decode(data, where, payload_format.content_format, registry)
    except Lwm2mError as exc:
        _fail(f"cannot decode {len(data)} bytes as {payload_format.value} at {where}: {exc}")
    except Exception as exc:
        log.debug("decoder crashed", exc_info=True, extra={"format": payload_format.value, "path": str(where)})
        _fail(f"internal error in the {payload_format.value} decoder: {exc!r} (a bug; --log-level DEBUG shows it)", 1)
    header = f"{where}  ({payload_format.value}, {len(data)} bytes)"
    _out().print(render_tree(node, where, registry, header))


def _format_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        shown = value[:32].hex(" ")
        return f"0x[{shown}{' …' if len(value) > 32 else ''}] ({len(value)} bytes)"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _resource_label(resource_id: int, model: ResourceModel | None) -> Text:
    label = Text(str(resource_id), style="cyan")
    label.append(f" {model.name}" if model is not None else " (unknown resource)")
    return label


def _add_resource(tree: Tree, resource: SingleResource | MultipleResource, model: ObjectModel | None) -> None:
    resource_model = model.resource(resource.id) if model is not None else None
    label = _resource_label(resource.id, resource_model)
    units = f" {resource_model.units}" if resource_model is not None and resource_model.units else ""
    if isinstance(resource, SingleResource):
        label.append(" = ")
        label.append(_format_value(resource.value) + units, style="green")
        label.append(f"  {resource.type.value}", style="dim")
        tree.add(label)
        return
    label.append(f"  {resource.type.value}[{len(resource.instances)}]", style="dim")
    branch = tree.add(label)
    for instance_id, value in sorted(resource.instances.items()):
        item = Text(f"[{instance_id}] = ")
        item.append(_format_value(value) + units, style="green")
        branch.add(item)


def _add_instance(tree: Tree, instance: ObjectInstance, model: ObjectModel | None) -> None:
    label = Text("instance ")
    label.append("(new)" if instance.id is None else str(instance.id), style="cyan")
    branch = tree.add(label)
    for _, resource in sorted(instance.resources.items()):
        _add_resource(branch, resource, model)


def render_tree(node: Node, path: Path, models: ModelRegistry, header: str = "") -> Tree:
    """A rich tree of a decoded node, labelled with the model's names and units."""
    object_id = path.object_id
    model = models.object_model(object_id) if object_id is not None else None
    title = Text(header or str(path), style="bold")
    if model is not None:
        title.append(f"  {model.id} {model.name}", style="bold magenta")
    tree = Tree(title)
    if isinstance(node, Object):
        for _, instance in sorted(node.instances.items()):
            _add_instance(tree, instance, model)
    elif isinstance(node, ObjectInstance):
        _add_instance(tree, node, model)
    elif isinstance(node, SingleResource | MultipleResource):
        _add_resource(tree, node, model)
    else:
        _add_resource_instance(tree, node, path, model)
    return tree


def _add_resource_instance(tree: Tree, node: ResourceInstance, path: Path, model: ObjectModel | None) -> None:
    resource_id = path.resource_id
    resource_model = model.resource(resource_id) if model is not None and resource_id is not None else None
    label = _resource_label(resource_id if resource_id is not None else -1, resource_model)
    label.append(f" [{node.id}] = ")
    label.append(_format_value(node.value), style="green")
    label.append(f"  {node.type.value}", style="dim")
    tree.add(label)


# --------------------------------------------------------------------------------------------- demo

DEMO_DEVICE: Mapping[int, Value | Mapping[int, Value]] = {
    0: "SPMP Demo Solar",
    1: "SC-48-60",
    2: "SN-000042",
    3: "1.4.2",
    6: {0: 7, 1: 2},
    7: {0: 61200, 1: 52800},
    8: {0: 5200, 1: 5800},
    9: 87,
    11: {0: 0},
    13: datetime(2024, 6, 21, 12, 0, tzinfo=UTC),
    14: "+03:00",
    15: "Africa/Nairobi",
    16: "U",
}
"""An example charger's Device object (/3/0): solar (7) and external battery (2) power sources."""

DEMO_FORMATS = (
    PayloadFormat.TLV,
    PayloadFormat.SENML_JSON,
    PayloadFormat.SENML_CBOR,
    PayloadFormat.LWM2M_JSON,
    PayloadFormat.LWM2M_CBOR,
)


@app.command("codecs-demo")
def codecs_demo() -> None:
    """Encode an example Device object (/3/0) in several content formats and decode it back."""
    registry = _registry()
    model = registry.object_model(3)
    if model is None:
        _fail("the built-in models have no Device object (3)", EXIT_INTERNAL)
    values = {rid: value for rid, value in DEMO_DEVICE.items() if model.resource(rid) is not None}
    instance = instance_from_model(model, 0, values)
    where = Path.of(3, 0)
    out = _out()
    out.print(Text("SPMP demo: one charger's Device object (/3/0) on the wire", style="bold"))
    out.print(render_tree(instance, where, registry, "/3/0  (the values)"))
    failures = 0
    for fmt in DEMO_FORMATS:
        name = f"{fmt.value} (content format {int(fmt.content_format)})"
        try:
            payload = codecs.encode(instance, where, fmt.content_format, registry)
            decoded = codecs.decode(payload, where, fmt.content_format, registry)
        except Lwm2mError as exc:
            out.print(Text(f"- {name}: not available: {exc}", style="yellow"), soft_wrap=True)
            continue
        same = decoded == instance
        failures += not same
        verdict = Text("round trip ok", style="green") if same else Text("ROUND TRIP DIFFERS", style="bold red")
        line = Text(f"- {name}: {len(payload)} bytes, ")
        line.append(verdict)
        out.print(line, soft_wrap=True)
        shown = payload.decode() if fmt in (PayloadFormat.SENML_JSON, PayloadFormat.LWM2M_JSON) else payload.hex(" ")
        out.print(Text(f"  {shown[:160]}{' …' if len(shown) > 160 else ''}", style="dim"), soft_wrap=True)
    if failures:
        _fail(f"{failures} format(s) did not decode to the values they encoded", EXIT_INTERNAL)


# ------------------------------------------------------------------------------------- server, psk

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


@app.command()
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


psk_app = typer.Typer(
    help="Manage the PSK credentials devices use towards the management server.", no_args_is_help=True
)
app.add_typer(psk_app, name="psk")


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


# ---------------------------------------------------------------------------------------- bootstrap

bootstrap_app = typer.Typer(
    help="Run the LwM2M bootstrap server (no subcommand) or manage what it provisions.",
    invoke_without_command=True,
)
bootstrap_config_app = typer.Typer(help="Which management servers each endpoint is given.", no_args_is_help=True)
bootstrap_psk_app = typer.Typer(help="Factory (bootstrap) PSKs devices present to the bootstrap server.")
bootstrap_app.add_typer(bootstrap_config_app, name="config")
bootstrap_app.add_typer(bootstrap_psk_app, name="psk", no_args_is_help=True)
app.add_typer(bootstrap_app, name="bootstrap")

EndpointOption = Annotated[
    str, typer.Option("--endpoint", help="The device's endpoint name, or '*' for the default configuration.")
]


class BootstrapSecurity(StrEnum):
    PSK = "psk"
    NOSEC = "nosec"


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


@app.command("client")
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


# ---------------------------------------------------------------------------------------------- bts


@app.command("bts")
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


# ------------------------------------------------------------------------------------------ charger


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


@app.command("charger")
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


@app.command("modbus-sim")
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


# --------------------------------------------------------------------------------------------- demo

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


@app.command()
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


# ----------------------------------------------------------------------------------------- scenario

scenario_app = typer.Typer(help="Closed-loop simulations of a site with its BTS (docs/smart-load.md).")
app.add_typer(scenario_app, name="scenario")


@scenario_app.command("poor-sun")
def scenario_poor_sun(
    days: Annotated[float, typer.Option("--days", help="Simulated days of poor sun.", min=0.1, max=60)] = 3.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated weather.")] = 1,
    write: Annotated[
        FilePath | None,
        typer.Option(
            "--write", help="Put the results into this Markdown file between its markers (docs/smart-load.md)."
        ),
    ] = None,
) -> None:
    """A 48 V site through days of poor sun, with the default smart-load rules and without: hours on air."""
    from spmp.charger.netconf.scenario import poor_sun_table, run_poor_sun, write_results  # noqa: PLC0415

    with_rules = run_poor_sun(days, seed, rules=True)
    without = run_poor_sun(days, seed, rules=False)
    table = poor_sun_table(with_rules, without, days=days, seed=seed)
    typer.echo(table)
    if write is not None:
        try:
            write_results(write, table)
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot write the results to {str(write)!r}: {getattr(exc, 'strerror', None) or exc}")
        typer.echo(f"results written to {write}", err=True)


# -------------------------------------------------------------------------------------------- fleet

fleet_app = typer.Typer(
    help="Run a simulated fleet of LwM2M devices against a server (load tests; see docs/fleet.md).",
    invoke_without_command=True,
)
app.add_typer(fleet_app, name="fleet")

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


if __name__ == "__main__":  # pragma: no cover
    app()
