"""LwM2M JSON (content format 11543, legacy 1543): the LwM2M 1.0 format of TS 1.0.2 §6.4.4.

A document is ``{"bn": base name, "bt": base time, "e": [entries]}``; each entry has a name ``n``
(appended to ``bn``), an optional time ``t`` (added to ``bt``) and one value: ``v`` for numbers and
Time, ``sv`` for String, Corelnk and Opaque (base64), ``bv`` for Boolean, ``ov`` for Objlnk
(``"3:0"``). TS 1.0 clients may leave out ``bn`` and name entries relative to the request path;
that is accepted wherever the request path is known.

LwM2M 1.0 has no composite operations; for the multi-path API, entries are named by absolute
path and grouped by ``bn`` exactly like SenML (see :mod:`spmp.lwm2m.codecs.senml`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

from spmp.lwm2m.codecs import TimestampedNodes, register
from spmp.lwm2m.codecs._common import LIMITS, Limits
from spmp.lwm2m.codecs.senml import (
    Leaf,
    assemble,
    check_node_path,
    leaves,
    now,
    number_value,
    objlnk_value,
    opaque_from_base64,
    parse_name,
    resource_model_at,
    time_number,
    to_datetime,
    wire_value,
)
from spmp.lwm2m.codecs.senml_json import dump_json, load_json
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError, PathError
from spmp.lwm2m.model import ModelLookup, ResourceModel, ResourceType
from spmp.lwm2m.node import Node
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import Value

FMT = "lwm2m+json"

_FIELDS = ("v", "sv", "bv", "ov")
_FIELD_FOR_TYPE = {
    ResourceType.STRING: "sv",
    ResourceType.CORELNK: "sv",
    ResourceType.OPAQUE: "sv",
    ResourceType.INTEGER: "v",
    ResourceType.UNSIGNED_INTEGER: "v",
    ResourceType.FLOAT: "v",
    ResourceType.TIME: "v",
    ResourceType.BOOLEAN: "bv",
    ResourceType.OBJLNK: "ov",
}

Entry = tuple[int, Path, str, object, float | None, Path]
"""(index, path, value field, raw value, resolved time, group path)."""


def _value(field: str, raw: object, kind: ResourceType, where: str) -> Value:
    expected = _FIELD_FOR_TYPE.get(kind)
    if expected is None:
        raise CodecError("an executable resource carries no value", content_format=FMT, where=where)
    if field != expected:
        raise CodecError(f"{kind.value} is carried in '{expected}', not '{field}'", content_format=FMT, where=where)
    if field == "v":
        return number_value(raw, kind, FMT, where)
    if field == "bv":
        if type(raw) is not bool:
            raise CodecError("'bv' must be a boolean", content_format=FMT, where=where)
        return raw
    if type(raw) is not str:
        raise CodecError(f"'{field}' must be a string", content_format=FMT, where=where)
    if field == "ov":
        return objlnk_value(raw, FMT, where)
    if kind is ResourceType.OPAQUE:
        return opaque_from_base64(raw, FMT, where)
    if not raw.isascii():
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise CodecError("string is not valid Unicode", content_format=FMT, where=where) from None
    return raw


def _number(document: Mapping[str, object], key: str, where: str) -> float | None:
    found = document.get(key)
    if found is None:
        return None
    if type(found) not in (int, float) or not abs(found) <= 1e15:  # type: ignore[arg-type]
        raise CodecError(f"'{key}' must be a number of seconds", content_format=FMT, where=where)
    return found  # type: ignore[return-value]


def _group(base_name: str) -> Path | None:
    text = base_name[:-1] if base_name.endswith("/") else base_name
    try:
        found = Path.parse(text) if text.startswith("/") and len(text) <= 64 else None
    except PathError:
        return None
    return found if found is not None and found.ids else None


class LwM2mJsonCodec:
    content_format = ContentFormat.LWM2M_JSON

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.limits = limits

    # --- decoding ---

    def _entries(self, payload: bytes, base: Path | None) -> list[Entry]:
        document = load_json(payload, FMT, self.limits)
        if not isinstance(document, dict):
            raise CodecError(f"an LwM2M JSON document is an object, got {type(document).__name__}", content_format=FMT)
        base_name = document.get("bn", "")
        if type(base_name) is not str:
            raise CodecError("'bn' must be a string", content_format=FMT)
        base_time = _number(document, "bt", "document")
        entries = document.get("e")
        if not isinstance(entries, list):
            raise CodecError("'e' must be an array of entries", content_format=FMT)
        if len(entries) > self.limits.max_records:
            raise CodecError(f"{len(entries)} entries exceed {self.limits.max_records}", content_format=FMT)
        group = _group(base_name)
        out: list[Entry] = []
        for index, entry in enumerate(entries):
            where = f"entry {index}"
            if not isinstance(entry, dict):
                raise CodecError("an entry is an object", content_format=FMT, where=where)
            name = entry.get("n", "")
            if type(name) is not str:
                raise CodecError("'n' must be a string", content_format=FMT, where=where)
            present = [f for f in _FIELDS if f in entry]
            if len(present) != 1:
                raise CodecError(f"an entry needs exactly one value, got {present}", content_format=FMT, where=where)
            offset = _number(entry, "t", where)
            path = parse_name(base_name + name, FMT, where, base)
            stamp = None if base_time is None and offset is None else (base_time or 0) + (offset or 0)
            key = group if group is not None and path.starts_with(group) else path
            out.append((index, path, present[0], entry[present[0]], stamp, key))
        return out

    def _typed(
        self, entry: Entry, models: ModelLookup, seen: set[object], *, timed: bool = False
    ) -> tuple[Path, Value, ResourceModel]:
        index, path, field, raw, stamp, _ = entry
        where = f"entry {index}"
        if not timed:
            stamp = None  # outside a time series, a path may carry one value only
        if (stamp, path) in seen:
            raise CodecError(f"{path} appears twice", content_format=FMT, where=where)
        seen.add((stamp, path))
        model = resource_model_at(path, models, FMT, where)
        return path, _value(field, raw, model.type, where), model

    def decode(self, payload: bytes, path: Path, models: ModelLookup) -> Node:
        seen: set[object] = set()
        items = [self._typed(e, models, seen) for e in self._entries(payload, path)]
        return assemble(path, items, models, FMT)

    def decode_nodes(self, payload: bytes, models: ModelLookup, base: Path | None = None) -> dict[Path, Node | None]:
        groups: dict[Path, list[tuple[Path, Value, ResourceModel]]] = {}
        seen: set[object] = set()
        for entry in self._entries(payload, base):
            groups.setdefault(entry[5], []).append(self._typed(entry, models, seen))
        return {g: assemble(g, items, models, FMT) for g, items in groups.items()}

    def decode_timestamped(
        self, payload: bytes, models: ModelLookup, base: Path | None = None
    ) -> list[TimestampedNodes]:
        moments: dict[float | None, dict[Path, list[tuple[Path, Value, ResourceModel]]]] = {}
        seen: set[object] = set()
        for entry in self._entries(payload, base):
            item = self._typed(entry, models, seen, timed=True)
            moments.setdefault(entry[4], {}).setdefault(entry[5], []).append(item)
        reference = now()
        return [
            TimestampedNodes(
                None if stamp is None else to_datetime(stamp, reference, FMT, "entry time"),
                {g: assemble(g, items, models, FMT) for g, items in groups.items()},
            )
            for stamp, groups in moments.items()
        ]

    def decode_paths(self, payload: bytes) -> list[Path]:
        raise CodecError("LwM2M JSON carries no path lists (LwM2M 1.0 has no composite operations)", content_format=FMT)

    # --- encoding ---

    def _entry(self, name: str | None, kind: ResourceType, value: Value, where: str) -> dict[str, object]:
        field = _FIELD_FOR_TYPE.get(kind)
        if field is None:
            raise CodecError("an executable resource carries no value", content_format=FMT, where=where)
        wire = wire_value(kind, value, FMT, where)
        if kind is ResourceType.OPAQUE:
            if not isinstance(wire, bytes):
                raise CodecError("an Opaque value must be bytes", content_format=FMT, where=where)
            wire = base64.b64encode(wire).decode("ascii")
        return {field: wire} if name is None else {"n": name, field: wire}

    def _leaves(self, path: Path, node: Node) -> tuple[bool, list[Leaf]]:
        check_node_path(node, path, FMT)
        return not path.is_resource_instance and not (path.is_resource and not node_is_multiple(node)), leaves(node)

    def encode(self, node: Node, path: Path, models: ModelLookup) -> bytes:
        container, values = self._leaves(path, node)
        where = str(path)
        entries = [self._entry(suffix if container else None, kind, value, where) for suffix, kind, value in values]
        return dump_json({"bn": where + "/" if container else where, "e": entries}, FMT)

    def encode_nodes(self, nodes: Mapping[Path, Node | None], models: ModelLookup) -> bytes:
        present = {p: n for p, n in nodes.items() if n is not None}
        if len(present) == 1:
            ((path, node),) = present.items()
            return self.encode(node, path, models)
        return self._absolute([(None, present)])

    def _absolute(self, series: Sequence[tuple[float | int | None, Mapping[Path, Node | None]]]) -> bytes:
        entries = []
        for stamp, nodes in series:
            for path, node in nodes.items():
                if node is None:
                    continue
                container, values = self._leaves(path, node)
                for suffix, kind, value in values:
                    name = f"{path}/{suffix}" if container else str(path)
                    entry = self._entry(name, kind, value, name)
                    if stamp is not None:
                        entry["t"] = stamp
                    entries.append(entry)
        return dump_json({"e": entries}, FMT)

    def encode_timestamped(self, series: Sequence[TimestampedNodes], models: ModelLookup) -> bytes:
        stamped = [(None if s.timestamp is None else time_number(s.timestamp), s.nodes) for s in series]
        paths = {p for _, nodes in stamped for p, n in nodes.items() if n is not None}
        if len(paths) != 1:
            return self._absolute(stamped)
        # One path throughout (a notification): bn names it, each entry carries its own time.
        (path,) = paths
        entries = []
        bn = ""
        for stamp, nodes in stamped:
            node = nodes.get(path)
            if node is None:
                continue
            container, values = self._leaves(path, node)
            bn = str(path) + "/" if container else str(path)
            for suffix, kind, value in values:
                entry = self._entry(suffix if container else None, kind, value, str(path))
                if stamp is not None:
                    entry["t"] = stamp
                entries.append(entry)
        return dump_json({"bn": bn, "e": entries}, FMT)

    def encode_paths(self, paths: Sequence[Path]) -> bytes:
        raise CodecError("LwM2M JSON carries no path lists (LwM2M 1.0 has no composite operations)", content_format=FMT)


def node_is_multiple(node: Node) -> bool:
    return bool(getattr(node, "multiple", False))


CODEC = LwM2mJsonCodec()
register(CODEC, ContentFormat.OLD_JSON)
