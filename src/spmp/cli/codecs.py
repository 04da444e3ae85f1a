"""``spmp decode`` and ``spmp codecs-demo``: LwM2M payloads in the content formats SPMP speaks.

``decode`` turns a payload (hex, a file or stdin) into a node tree labelled with the object models'
names and units (``render_tree``); ``codecs-demo`` encodes an example Device object in each format
and decodes it back.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path as FilePath
from typing import Annotated

import typer
from rich.text import Text
from rich.tree import Tree

from spmp.cli._common import EXIT_INTERNAL, _fail, _out, _registry, log
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
