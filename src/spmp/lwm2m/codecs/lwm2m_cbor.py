"""LwM2M CBOR (content format 11544, TS Core 1.2 §7.4.7): nested CBOR maps keyed by path ids.

``{3: {0: {0: "Open Mobile Alliance", 7: {0: 3800, 1: 5000}}}}`` holds /3/0/0 and /3/0/7/0..1.
Path compression: a key may be an array of ids standing for several levels at once
(``{[3, 0, 0]: "Open Mobile Alliance"}``), at any depth and mixed with plain keys. Values are
native CBOR: text (String, Corelnk, and Objlnk as ``"3:0"``), integers, floats, booleans, byte
strings (Opaque), Time as integer seconds (tag 1 accepted). ``null`` marks a path without a value
(Write-Composite deletes, Read-Composite requests). The format carries no timestamps.

Encoding writes each node under one key holding its whole path (a plain id for an object,
an id array below), so that :meth:`decode_nodes` finds the requested paths again: every top-level
key of a decoded payload becomes one entry of the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from spmp.lwm2m.codecs import TimestampedNodes, register
from spmp.lwm2m.codecs._common import LIMITS, Limits, checked
from spmp.lwm2m.codecs.senml import (
    assemble,
    check_node_path,
    number_value,
    objlnk_value,
    resource_model_at,
    wire_value,
)
from spmp.lwm2m.codecs.senml_cbor import loads, write
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError, PathError
from spmp.lwm2m.model import ModelLookup, ResourceModel, ResourceType
from spmp.lwm2m.node import MultipleResource, Node, Object, ObjectInstance, ResourceInstance, SingleResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import Value

FMT = "lwm2m+cbor"

Leaf = tuple[Path, object, Path]
"""(path, raw value, group: the path named by the top-level key the value sits under)."""


def _value(raw: object, kind: ResourceType, where: str) -> Value:
    if kind in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.FLOAT, ResourceType.TIME):
        return number_value(raw, kind, FMT, where)
    if kind is ResourceType.OBJLNK:
        return objlnk_value(raw, FMT, where)
    if kind is ResourceType.NONE:
        raise CodecError("an executable resource carries no value", content_format=FMT, where=where)
    wanted = {ResourceType.BOOLEAN: bool, ResourceType.OPAQUE: bytes}.get(kind, str)
    if type(raw) is not wanted:
        raise CodecError(f"{kind.value} needs a CBOR {wanted.__name__}", content_format=FMT, where=where)
    return checked(raw, kind, FMT, where)


class LwM2mCborCodec:
    content_format = ContentFormat.LWM2M_CBOR

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.limits = limits

    # --- decoding ---

    def _leaves(self, payload: bytes) -> tuple[list[Leaf], list[Path]]:
        """All values with their paths, plus the group of every top-level key (empty ones too)."""
        document = loads(payload, FMT, self.limits)
        if not isinstance(document, dict):
            raise CodecError(f"LwM2M CBOR is a map, got {type(document).__name__}", content_format=FMT)
        out: list[Leaf] = []
        groups: list[Path] = []
        self._walk(document, (), None, out, groups)
        return out, groups

    def _walk(
        self,
        mapping: dict[object, object],
        prefix: tuple[int, ...],
        group: Path | None,
        out: list[Leaf],
        groups: list[Path],
    ) -> None:
        for key, value in mapping.items():
            ids = (key,) if type(key) is int else key
            if not isinstance(ids, tuple):
                raise CodecError(f"map key {key!r} is not a path id", content_format=FMT, where=str(Path(prefix)))
            try:
                path = Path((*prefix, *ids))
            except PathError as exc:
                raise CodecError(f"bad path under {Path(prefix)}: {exc}", content_format=FMT) from None
            own_group = group if group is not None else path
            if group is None:
                groups.append(path)
            if isinstance(value, dict):
                if path.is_resource_instance:
                    raise CodecError("a map below a resource instance", content_format=FMT, where=str(path))
                self._walk(value, path.ids, own_group, out, groups)
            elif isinstance(value, list):
                raise CodecError("arrays are not LwM2M values", content_format=FMT, where=str(path))
            else:
                out.append((path, value, own_group))

    def _typed(self, leaf: Leaf, models: ModelLookup, seen: set[Path]) -> tuple[Path, Value | None, ResourceModel]:
        path, raw, _ = leaf
        where = str(path)
        if path in seen:
            raise CodecError(f"{path} appears twice", content_format=FMT, where=where)
        seen.add(path)
        model = resource_model_at(path, models, FMT, where)
        return path, (None if raw is None else _value(raw, model.type, where)), model

    def decode(self, payload: bytes, path: Path, models: ModelLookup) -> Node:
        seen: set[Path] = set()
        items = []
        for leaf in self._leaves(payload)[0]:
            found, value, model = self._typed(leaf, models, seen)
            if value is None:
                raise CodecError("null is not a value here", content_format=FMT, where=str(found))
            items.append((found, value, model))
        return assemble(path, items, models, FMT)

    def decode_nodes(self, payload: bytes, models: ModelLookup) -> dict[Path, Node | None]:
        leaves, groups = self._leaves(payload)
        seen: set[Path] = set()
        by_group: dict[Path, list[tuple[Path, Value, ResourceModel]]] = {g: [] for g in groups}
        absent: list[Path] = []
        for leaf in leaves:
            found, value, model = self._typed(leaf, models, seen)
            if value is None:
                absent.append(found)
            else:
                by_group[leaf[2]].append((found, value, model))
        out: dict[Path, Node | None] = {}
        for group, items in by_group.items():
            if items or not any(p.starts_with(group) for p in absent):
                out[group] = assemble(group, items, models, FMT)
        for path in absent:
            out[path] = None
        return out

    def decode_timestamped(self, payload: bytes, models: ModelLookup) -> list[TimestampedNodes]:
        return [TimestampedNodes(None, self.decode_nodes(payload, models))]

    def decode_paths(self, payload: bytes) -> list[Path]:
        leaves, _ = self._leaves(payload)
        for path, raw, _ in leaves:
            if raw is not None:
                raise CodecError("a path list holds null values only", content_format=FMT, where=str(path))
        return [path for path, _, _ in leaves]

    # --- encoding ---

    def _content(self, node: Node, path: Path) -> object:
        where = str(path)
        if isinstance(node, SingleResource | ResourceInstance):
            return wire_value(node.type, node.value, FMT, where)
        if isinstance(node, MultipleResource):
            return {ri: wire_value(node.type, v, FMT, f"{where}/{ri}") for ri, v in node.instances.items()}
        if isinstance(node, ObjectInstance):
            return {rid: self._content(resource, path.child(rid)) for rid, resource in node.resources.items()}
        assert isinstance(node, Object)
        return {iid: self._content(instance, path.child(iid)) for iid, instance in node.instances.items()}

    @staticmethod
    def _key(path: Path) -> object:
        if not path.ids:
            raise CodecError("the root path cannot be a key", content_format=FMT)
        return path.ids[0] if path.is_object else path.ids

    def _document(self, nodes: Mapping[Path, Node | None]) -> bytes:
        document: dict[object, object] = {}
        for path, node in nodes.items():
            if node is not None:
                check_node_path(node, path, FMT)
            document[self._key(path)] = None if node is None else self._content(node, path)
        out = bytearray()
        write(out, document, FMT)
        return bytes(out)

    def encode(self, node: Node, path: Path, models: ModelLookup) -> bytes:
        return self._document({path: node})

    def encode_nodes(self, nodes: Mapping[Path, Node | None], models: ModelLookup) -> bytes:
        return self._document(nodes)

    def encode_timestamped(self, series: Sequence[TimestampedNodes], models: ModelLookup) -> bytes:
        merged: dict[Path, Node | None] = {}
        for entry in series:
            if entry.timestamp is not None:
                raise CodecError("LwM2M CBOR carries no timestamps; use SenML", content_format=FMT)
            merged.update(entry.nodes)
        return self._document(merged)

    def encode_paths(self, paths: Sequence[Path]) -> bytes:
        document: dict[object, object] = {self._key(p): None for p in paths}
        out = bytearray()
        write(out, document, FMT)
        return bytes(out)


CODEC = LwM2mCborCodec()
register(CODEC)
