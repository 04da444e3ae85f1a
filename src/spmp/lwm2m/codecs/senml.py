"""SenML records (RFC 8428) as LwM2M uses them: shared by SenML JSON (110), SenML CBOR (112) and,
for the value and node-building half, by LwM2M JSON (11543) and LwM2M CBOR (11544).

Decoding runs in three steps. A format module parses bytes into raw records (dicts keyed by the
JSON labels ``bn bt n t v vs vb vd vlo``); :func:`resolve` applies base name and base time
(RFC 8428 §4.5) and checks each field's type; :func:`assemble` types the values with the model and
groups them into the node for one path. Encoding goes the other way through :func:`node_records`.

Conventions, all following the TS 1.1 §7.4.3/§7.4.4 examples:

* a single node is written with ``bn`` set to its path (``"/3/0/"`` and relative ``n`` for
  containers, ``{"bn":"/3/0/0","vs":...}`` for one value);
* composite payloads name single values with an absolute ``n`` (``{"n":"/3/0/0",...}``) until a
  container forces a ``bn``; from then on every node starts with its own ``bn``;
* timestamped payloads put ``bt`` on the first record of each instant.

Without the request at hand, :func:`group_of` uses the payload's own structure to decide at which
path a decoded node sits: the base name a record was written under, else the record's own path.

Time: ``bt + t``; a negative result is relative to "now" (RFC 8428 §4.5.3). Positive values are
taken as absolute Unix seconds, even below 2**28, because the TS examples use ``bt: 25462634`` as
an absolute base time and so do deployed servers (Leshan).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time as _time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import ClassVar

from spmp.lwm2m.codecs import TimestampedNodes
from spmp.lwm2m.codecs._common import LIMITS, Limits, checked, object_model, resource_model
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError, InvalidValueError, PathError
from spmp.lwm2m.model import INT64_MAX, INT64_MIN, UINT64_MAX, ModelLookup, ObjectModel, ResourceModel, ResourceType
from spmp.lwm2m.node import (
    MultipleResource,
    Node,
    Object,
    ObjectInstance,
    Resource,
    ResourceInstance,
    SingleResource,
)
from spmp.lwm2m.path import MAX_ID, Path
from spmp.lwm2m.values import ObjectLink, Value, time_to_seconds

VALUE_FIELDS = frozenset(("v", "vs", "vb", "vd", "vlo"))
MAX_NAME_LENGTH = 64
"""A resolved name longer than this cannot be an LwM2M path ("/65534/65534/65534/65534" is 24)."""

FIELD_FOR_TYPE: dict[ResourceType, str] = {
    ResourceType.STRING: "vs",
    ResourceType.CORELNK: "vs",
    ResourceType.INTEGER: "v",
    ResourceType.UNSIGNED_INTEGER: "v",
    ResourceType.FLOAT: "v",
    ResourceType.TIME: "v",
    ResourceType.BOOLEAN: "vb",
    ResourceType.OPAQUE: "vd",
    ResourceType.OBJLNK: "vlo",
}
"""Which SenML value field carries each LwM2M type (TS 1.1 Table 7.4.3-1)."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """One record after base-name and base-time resolution."""

    index: int
    path: Path
    field: str | None
    """The value field (``"v"``, ``"vs"``…), None for a name-only record (a read request)."""
    raw: object
    time: float | None
    """Resolved ``bt + t`` in seconds (still relative if negative); None when neither was given."""
    group: Path
    """Where the decoded node sits when the payload does not come with a request path."""


def _where(index: int) -> str:
    return f"record {index}"


def _is_number(value: object) -> bool:
    if type(value) is int:
        return True
    return isinstance(value, float) and math.isfinite(value)


def _base_path(base_name: str) -> Path | None:
    """The path a base name stands for, or None if it names no object-or-deeper path."""
    text = base_name[:-1] if base_name.endswith("/") else base_name
    if len(text) > MAX_NAME_LENGTH or not text.startswith("/"):
        return None
    try:
        found = Path.parse(text)
    except PathError:
        return None
    return found if found.ids else None


def parse_name(name: str, fmt: str, where: str, base: Path | None = None) -> Path:
    """Turn a resolved name into a path; relative names are allowed only under a known ``base``."""
    if base is not None and not name.startswith("/"):
        prefix = str(base) if base.ids else ""
        name = f"{prefix}/{name}" if name else (prefix or "/")
    if len(name) > MAX_NAME_LENGTH:
        raise CodecError(f"name of {len(name)} characters is not an LwM2M path", content_format=fmt, where=where)
    try:
        return Path.parse(name)
    except PathError as exc:
        raise CodecError(f"name {name!r} is not an LwM2M path: {exc}", content_format=fmt, where=where) from None


def resolve(
    records: object,
    fmt: str,
    *,
    opaque_type: type,
    limits: Limits = LIMITS,
    base: Path | None = None,
    values: bool = True,
) -> list[Resolved]:
    """Resolve base names and times of raw SenML records (RFC 8428 §4.5) and check field types.

    ``values`` says whether every record must carry exactly one value (False for read requests,
    which carry names only). ``opaque_type`` is what ``vd`` holds: ``str`` (base64url) in JSON,
    ``bytes`` in CBOR.
    """
    if not isinstance(records, list):
        raise CodecError(f"a SenML pack is an array, got {type(records).__name__}", content_format=fmt)
    if len(records) > limits.max_records:
        raise CodecError(f"{len(records)} records exceed the limit of {limits.max_records}", content_format=fmt)
    base_name = ""
    base_group: Path | None = None
    base_time: float | int | None = None
    out: list[Resolved] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise CodecError(f"a record is a map, got {type(record).__name__}", content_format=fmt, where=_where(index))
        name = ""
        field: str | None = None
        raw: object = None
        offset: float | int | None = None
        for key, item in record.items():
            if key in ("n", "bn"):
                if type(item) is not str:
                    raise CodecError(f"'{key}' must be a string", content_format=fmt, where=_where(index))
                if key == "n":
                    name = item
                else:
                    base_name = item
                    base_group = _base_path(item)
            elif key in ("bt", "t"):
                if not _is_number(item):
                    raise CodecError(f"'{key}' must be a finite number", content_format=fmt, where=_where(index))
                assert isinstance(item, int | float)
                if abs(item) > 1e15:  # beyond any plausible clock; keeps sums away from float overflow
                    raise CodecError(f"'{key}' {item!r} is out of range", content_format=fmt, where=_where(index))
                if key == "t":
                    offset = item
                else:
                    base_time = item
            elif key in VALUE_FIELDS:
                if field is not None:
                    raise CodecError(
                        f"record carries both '{field}' and '{key}'", content_format=fmt, where=_where(index)
                    )
                field, raw = key, item
                _check_field(key, item, opaque_type, fmt, index)
            elif key in ("bv", "bs", "s"):
                # Base value and sums change what "v" means; LwM2M never sends them, so refuse
                # rather than silently decode a different number.
                message = f"SenML field '{key}' is not supported by LwM2M"
                raise CodecError(message, content_format=fmt, where=_where(index))
            elif isinstance(key, str) and key.endswith("_"):
                message = f"must-understand field '{key}' is not supported"
                raise CodecError(message, content_format=fmt, where=_where(index))
        if values and field is None:
            raise CodecError("record has no value", content_format=fmt, where=_where(index))
        where = _where(index)
        path = parse_name(base_name + name, fmt, where, base)
        stamp = None if base_time is None and offset is None else (base_time or 0) + (offset or 0)
        group = base_group if base_group is not None and path.starts_with(base_group) else path
        out.append(Resolved(index, path, field, raw, stamp, group))
    return out


def _check_field(key: str, item: object, opaque_type: type, fmt: str, index: int) -> None:
    if key == "v":
        if not _is_number(item):
            raise CodecError("'v' must be a finite number", content_format=fmt, where=_where(index))
    elif key == "vb":
        if type(item) is not bool:
            raise CodecError("'vb' must be a boolean", content_format=fmt, where=_where(index))
    elif key == "vd":
        if type(item) is not opaque_type:
            raise CodecError(f"'vd' must be a {opaque_type.__name__}", content_format=fmt, where=_where(index))
    elif type(item) is not str:
        raise CodecError(f"'{key}' must be a string", content_format=fmt, where=_where(index))


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


# --- values -----------------------------------------------------------------------------------


def number_value(raw: object, kind: ResourceType, fmt: str, where: str) -> Value:
    """A numeric wire value as ``kind``; integral floats pass for integers (JSON has one number type)."""
    if type(raw) is bool or not isinstance(raw, int | float):
        raise CodecError(f"{kind.value} needs a number, got {type(raw).__name__}", content_format=fmt, where=where)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise CodecError(f"{raw} is not a valid {kind.value}", content_format=fmt, where=where)
        if kind is ResourceType.FLOAT:
            return raw
        if not raw.is_integer():
            raise CodecError(f"{raw!r} is not a whole number for {kind.value}", content_format=fmt, where=where)
        raw = int(raw)
    return checked(raw, kind, fmt, where)


def opaque_from_base64(text: str, fmt: str, where: str) -> bytes:
    """Decode base64url without padding (RFC 8428 ``vd``); standard base64 and padding are tolerated."""
    body = text.rstrip("=").replace("+", "-").replace("/", "_")
    if len(body) % 4 == 1 or not _BASE64URL.fullmatch(body):
        raise CodecError("opaque value is not base64url", content_format=fmt, where=where)
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise CodecError("opaque value is not base64url", content_format=fmt, where=where) from None


def opaque_to_base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def objlnk_value(raw: object, fmt: str, where: str) -> ObjectLink:
    if type(raw) is not str:
        raise CodecError("an object link is written 'OBJECT:INSTANCE'", content_format=fmt, where=where)
    try:
        return ObjectLink.parse(raw)
    except InvalidValueError as exc:
        raise CodecError(exc.reason, content_format=fmt, where=where) from None


def senml_value(field: str | None, raw: object, kind: ResourceType, fmt: str, where: str) -> Value:
    """The LwM2M value of a SenML value field, checked against the resource type."""
    expected = FIELD_FOR_TYPE.get(kind)
    if expected is None:
        raise CodecError("an executable resource carries no value", content_format=fmt, where=where)
    if field != expected:
        raise CodecError(f"{kind.value} is carried in '{expected}', not '{field}'", content_format=fmt, where=where)
    if expected == "v":
        return number_value(raw, kind, fmt, where)
    if expected == "vd":
        if isinstance(raw, str):
            return opaque_from_base64(raw, fmt, where)
        return checked(raw, kind, fmt, where)
    if expected == "vlo":
        return objlnk_value(raw, fmt, where)
    if kind is ResourceType.STRING and isinstance(raw, str) and not raw.isascii():
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a JSON \\ud800 escape
            raise CodecError("string is not valid Unicode", content_format=fmt, where=where) from None
    return checked(raw, kind, fmt, where)


def wire_value(kind: ResourceType, value: Value, fmt: str, where: str) -> object:
    """The JSON/CBOR-native form of a value: numbers, str, bool, bytes; Time as Unix seconds."""
    if kind is ResourceType.TIME:
        return time_to_seconds(value) if isinstance(value, datetime) else value
    if kind is ResourceType.FLOAT:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise CodecError(f"{value!r} is not a Float", content_format=fmt, where=where)
        number = float(value)
        if not math.isfinite(number):
            raise CodecError(f"{number} cannot be encoded", content_format=fmt, where=where)
        return number
    if kind is ResourceType.OBJLNK:
        return str(value)
    if kind is ResourceType.NONE:
        raise CodecError("an executable resource carries no value", content_format=fmt, where=where)
    return value


def to_datetime(seconds: float, now: float, fmt: str, where: str) -> datetime:
    """Resolved SenML time → aware datetime; negative times count back from ``now``."""
    absolute = now + seconds if seconds < 0 else seconds
    try:
        return datetime.fromtimestamp(absolute, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise CodecError(f"time {seconds} is out of range", content_format=fmt, where=where) from None


def time_number(stamp: datetime) -> int | float:
    """Seconds since the epoch, as an int when whole (as the TS examples write times)."""
    seconds = stamp.timestamp()
    return int(seconds) if seconds.is_integer() else seconds


def now() -> float:
    return _time.time()


# --- nodes from values ------------------------------------------------------------------------

Item = tuple[Path, Value | None, ResourceModel]
"""A typed value at a resource or resource-instance path (None: explicitly absent)."""


def typed_item(
    path: Path, field: str | None, raw: object, models: ModelLookup, fmt: str, *, where: str
) -> tuple[Path, Value, ResourceModel]:
    """Check a resolved value against the model: level, single vs multiple, type."""
    model = resource_model_at(path, models, fmt, where)
    return path, senml_value(field, raw, model.type, fmt, where), model


def resource_model_at(path: Path, models: ModelLookup, fmt: str, where: str) -> ResourceModel:
    ids = path.ids
    if len(ids) < 3:
        raise CodecError(f"a value needs a resource path, got {path}", content_format=fmt, where=where)
    model = resource_model(models, ids[0], ids[2], fmt, f"{where} {path}")
    if len(ids) == 4 and not model.multiple:
        raise CodecError(f"{path}: resource {ids[2]} is single-instance", content_format=fmt, where=where)
    if len(ids) == 3 and model.multiple:
        raise CodecError(f"{path}: resource {ids[2]} is multiple, name an instance", content_format=fmt, where=where)
    return model


def assemble(target: Path, items: Iterable[tuple[Path, Value, ResourceModel]], models: ModelLookup, fmt: str) -> Node:
    """Group typed values (all at or below ``target``) into the node for ``target``."""
    ids = target.ids
    if not ids:
        raise CodecError("the root path holds no single node", content_format=fmt)
    tree: dict[int, dict[int, Value | dict[int, Value]]] = {}
    for path, value, _model in items:
        p = path.ids
        if p[: len(ids)] != ids:
            raise CodecError(f"{path} lies outside the requested {target}", content_format=fmt, where=str(path))
        resources = tree.setdefault(p[1], {})
        if len(p) == 4:
            instances = resources.setdefault(p[2], {})
            assert isinstance(instances, dict)
            instances[p[3]] = value
        else:
            resources[p[2]] = value
    level = len(ids)
    if level == 1:
        return Object(ids[0], {iid: _instance(ids[0], iid, res, models, fmt) for iid, res in tree.items()})
    if level == 2:
        return _instance(ids[0], ids[1], tree.get(ids[1], {}), models, fmt)
    model = resource_model(models, ids[0], ids[2], fmt, str(target))
    found = tree.get(ids[1], {}).get(ids[2])
    if level == 3:
        if found is None:
            if model.multiple:
                return MultipleResource(ids[2], {}, model.type)
            raise CodecError(f"no value for {target}", content_format=fmt, where=str(target))
        return _resource(ids[2], found, model)
    if not model.multiple:
        raise CodecError(f"{target}: resource {ids[2]} is single-instance", content_format=fmt, where=str(target))
    if not isinstance(found, dict) or ids[3] not in found:
        raise CodecError(f"no value for {target}", content_format=fmt, where=str(target))
    return ResourceInstance(ids[3], found[ids[3]], model.type)


def _instance(
    object_id: int, instance_id: int, values: Mapping[int, Value | dict[int, Value]], models: ModelLookup, fmt: str
) -> ObjectInstance:
    model = object_model(models, object_id, fmt)
    resources: dict[int, Resource] = {}
    for rid, value in values.items():
        resource = model.resource(rid)
        assert resource is not None  # typed_item looked it up already
        resources[rid] = _resource(rid, value, resource)
    return ObjectInstance(instance_id, resources)


def _resource(rid: int, value: Value | dict[int, Value], model: ResourceModel) -> Resource:
    if isinstance(value, dict):
        return MultipleResource(rid, value, model.type)
    return SingleResource(rid, value, model.type)


# --- nodes to values --------------------------------------------------------------------------


def check_node_path(node: Node, path: Path, fmt: str) -> None:
    """The node's kind and id must match the path it is encoded at."""
    ids = path.ids
    level = len(ids)
    ok = (
        (isinstance(node, Object) and level == 1 and node.id == ids[0])
        or (isinstance(node, ObjectInstance) and level == 2 and node.id in (None, ids[1]))
        or (isinstance(node, SingleResource | MultipleResource) and level == 3 and node.id == ids[2])
        or (isinstance(node, ResourceInstance) and level == 4 and node.id == ids[3])
    )
    if not ok:
        message = f"a {type(node).__name__} (id {node.id}) cannot sit at {path}"
        raise CodecError(message, content_format=fmt, where=str(path))


Leaf = tuple[str, ResourceType, Value]
"""A value below a node: the name relative to the node ("6/0", "" for the node itself), type, value."""


def leaves(node: Node) -> list[Leaf]:
    """Flatten a node into its values, in the node's own order."""
    if isinstance(node, SingleResource | ResourceInstance):
        return [("", node.type, node.value)]
    if isinstance(node, MultipleResource):
        return [(str(ri), node.type, v) for ri, v in node.instances.items()]
    if isinstance(node, ObjectInstance):
        return _instance_leaves(node, "")
    out: list[Leaf] = []
    for iid, instance in node.instances.items():
        out.extend(_instance_leaves(instance, f"{iid}/"))
    return out


def _instance_leaves(instance: ObjectInstance, prefix: str) -> list[Leaf]:
    out: list[Leaf] = []
    for rid, resource in instance.resources.items():
        if isinstance(resource, MultipleResource):
            kind = resource.type
            out.extend((f"{prefix}{rid}/{ri}", kind, v) for ri, v in resource.instances.items())
        else:
            out.append((f"{prefix}{rid}", resource.type, resource.value))
    return out


@dataclass(slots=True)
class RecordWriter:
    """Builds SenML records (dicts in JSON label order) for nodes, tracking the active base name."""

    fmt: str
    opaque: Callable[[bytes], object]
    records: list[dict[str, object]]
    bn_active: bool = False

    def add(self, path: Path, node: Node, *, force_bn: bool, base_time: int | float | None = None) -> None:
        check_node_path(node, path, self.fmt)
        single = isinstance(node, SingleResource | ResourceInstance)
        values = leaves(node)
        if not values:
            return
        where = str(path)
        first = True
        for suffix, kind, value in values:
            field = FIELD_FOR_TYPE.get(kind)
            if field is None:
                raise CodecError("an executable resource carries no value", content_format=self.fmt, where=where)
            wire = wire_value(kind, value, self.fmt, where)
            if field == "vd":
                if not isinstance(wire, bytes):
                    raise CodecError("an Opaque value must be bytes", content_format=self.fmt, where=where)
                wire = self.opaque(wire)
            record: dict[str, object]
            if not first:
                record = {"n": suffix, field: wire}
            elif single and not (force_bn or self.bn_active):
                record = {"n": where, field: wire} if base_time is None else {"bt": base_time, "n": where, field: wire}
            else:
                record = {"bn": where if single else where + "/"}
                if base_time is not None:
                    record["bt"] = base_time
                if not single:
                    record["n"] = suffix
                record[field] = wire
                self.bn_active = True
            first = False
            self.records.append(record)


# --- the codec behaviour shared by SenML JSON and SenML CBOR ----------------------------------


class SenmlCodec(ABC):
    """Everything of a SenML MultiNodeCodec except turning bytes into records and back.

    :meth:`decode` and :meth:`encode` of one object instance, the common case by far, first try a
    fast path (:meth:`fast_load` and :meth:`_decode_instance_fast`, :meth:`_encode_instance_fast`)
    that handles well-formed payloads in the shape every LwM2M peer writes and returns None for
    anything else; the general path then runs from the original bytes, so errors, limits and
    results are exactly those of the general path. ``tests/test_codec_fastpath.py`` checks that
    both paths agree.
    """

    content_format: ContentFormat
    fmt: str
    opaque_type: type
    bn_key: ClassVar[object] = "bn"
    """How the loaded records of :meth:`fast_load` spell ``bn``, ``n`` and the value fields."""
    n_key: ClassVar[object] = "n"
    field_keys: ClassVar[Mapping[str, object]] = {label: label for label in VALUE_FIELDS}
    check_key_types = False
    """True when :meth:`fast_load` may return map keys other than int or str (CBOR: 2.0 == 2)."""

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.limits = limits
        self._tables: dict[int, tuple[ObjectModel, dict[str, _FastEntry]]] = {}

    def fast_load(self, payload: bytes) -> object | None:
        """Records for the fast path, keyed by :attr:`bn_key` etc.; None sends the payload to :meth:`load`.

        May raise the CodecError :meth:`load` would raise first (size); must raise nothing else.
        """
        return None

    def _encode_instance_fast(self, instance: ObjectInstance, where: str) -> bytes | None:
        """The bytes :meth:`encode` writes for an instance at ``where`` ("/o/i"), or None to take the general path."""
        return None

    def _fast_table(self, model: ObjectModel) -> dict[str, _FastEntry]:
        """Per object model: relative name ("5") → (resource id, type, value key, multiple), built once."""
        cached = self._tables.get(id(model))
        if cached is not None and cached[0] is model:  # holding the model keeps its id from being reused
            return cached[1]
        table: dict[str, _FastEntry] = {}
        for rid, resource in model.resources.items():
            label = FIELD_FOR_TYPE.get(resource.type)
            if label is not None:
                table[str(rid)] = (rid, resource.type, self.field_keys[label], resource.multiple)
        if len(self._tables) >= 4096:  # only a caller minting models per request gets here; stay bounded
            self._tables.clear()
        self._tables[id(model)] = (model, table)
        return table

    def _decode_instance_fast(
        self, records: object, object_id: int, instance_id: int, models: ModelLookup
    ) -> ObjectInstance | None:
        """The instance the general path would decode from ``records``, or None to let it decide.

        Accepts a list of records each holding an optional ``bn`` equal to "/o/i/", an ``n`` naming
        a resource ("5") or resource instance ("5/0") of the model, and exactly one value of the
        model's type in canonical form; no time, no other field, no duplicate. Depth is 2 and every
        item was looked at, so the limits hold as they do for the general path.
        """
        limits = self.limits
        if type(records) is not list or len(records) > limits.max_records or limits.max_depth < 2:
            return None
        model = models.object_model(object_id)
        if model is None:
            return None
        if self.check_key_types and not _int_or_text_keys(records):
            return None
        table = self._fast_table(model)
        prefix = f"/{object_id}/{instance_id}/"
        bn_key, n_key = self.bn_key, self.n_key
        opaque_text = self.opaque_type is str
        resources: dict[int, Resource] = {}
        multiples: dict[int, dict[int, Value]] = {}
        for record in records:
            if type(record) is not dict:
                return None
            if len(record) != 2 and (len(record) != 3 or record.get(bn_key) != prefix):
                return None
            name = record.get(n_key)
            if type(name) is not str:  # also a two-entry record holding bn: no name or no value
                return None
            entry = table.get(name)
            if entry is None or entry[3]:  # "5/0": an instance of a multiple resource
                rid_text, slash, instance_text = name.partition("/")
                entry = table.get(rid_text)
                if not slash or entry is None or not entry[3]:
                    return None
                instance = _small_id(instance_text)
                if instance is None:
                    return None
            else:
                instance = None
            rid, kind, key, _ = entry
            raw = record.get(key)
            value: Value | None
            if kind is _FLOAT:
                if type(raw) is float and raw - raw == 0.0:  # finite
                    value = raw
                elif type(raw) is int and -_EXACT_INT <= raw <= _EXACT_INT:
                    value = float(raw)
                else:
                    return None
            elif kind is _INTEGER:
                if type(raw) is not int or not INT64_MIN <= raw <= INT64_MAX:
                    return None
                value = raw
            elif kind is _STRING:
                if type(raw) is not str or not (raw.isascii() or _utf8_encodable(raw)):
                    return None
                value = raw
            else:
                value = _fast_value(kind, raw, opaque_text)
                if value is None:
                    return None
            if instance is None:
                if rid in resources:
                    return None
                resources[rid] = SingleResource(rid, value, kind)
            else:
                instances = multiples.get(rid)
                if instances is None:
                    instances = multiples[rid] = {}
                    resources[rid] = MultipleResource(rid, instances, kind)
                elif instance in instances:
                    return None
                instances[instance] = value
        return ObjectInstance(instance_id, resources)

    @abstractmethod
    def load(self, payload: bytes) -> object:
        """Parse the payload into raw records (a list of dicts with JSON labels)."""

    @abstractmethod
    def dump(self, records: list[dict[str, object]]) -> bytes:
        """Serialize records (JSON labels) to the wire format."""

    @abstractmethod
    def opaque(self, data: bytes) -> object:
        """How an Opaque value travels in this format (base64url text in JSON, bytes in CBOR)."""

    def _resolve(self, payload: bytes, base: Path | None = None, *, values: bool = True) -> list[Resolved]:
        return resolve(
            self.load(payload), self.fmt, opaque_type=self.opaque_type, limits=self.limits, base=base, values=values
        )

    def _typed(
        self, resolved: Iterable[Resolved], models: ModelLookup, seen: set[object]
    ) -> list[tuple[Resolved, tuple[Path, Value, ResourceModel]]]:
        out = []
        for record in resolved:
            key = (record.time, record.path)
            if key in seen:
                raise CodecError(f"{record.path} appears twice", content_format=self.fmt, where=_where(record.index))
            seen.add(key)
            where = _where(record.index)
            out.append((record, typed_item(record.path, record.field, record.raw, models, self.fmt, where=where)))
        return out

    def encode(self, node: Node, path: Path, models: ModelLookup) -> bytes:
        ids = path.ids
        if type(node) is ObjectInstance and len(ids) == 2 and node.id in (None, ids[1]):
            fast = self._encode_instance_fast(node, f"/{ids[0]}/{ids[1]}")
            if fast is not None:
                return fast
        return self._encode_general(node, path)

    def _encode_general(self, node: Node, path: Path) -> bytes:
        writer = RecordWriter(self.fmt, self.opaque, [])
        writer.add(path, node, force_bn=True)
        return self.dump(writer.records)

    def decode(self, payload: bytes, path: Path, models: ModelLookup) -> Node:
        ids = path.ids
        if len(ids) == 2:
            records = self.fast_load(payload)
            if records is not None:
                fast = self._decode_instance_fast(records, ids[0], ids[1], models)
                if fast is not None:
                    return fast
        return self._decode_general(payload, path, models)

    def _decode_general(self, payload: bytes, path: Path, models: ModelLookup) -> Node:
        resolved = self._resolve(payload, path)
        seen: set[object] = set()
        # A single node has no time series: the time of each record is ignored here.
        items = [item for _, item in self._typed((_untimed(r) for r in resolved), models, seen)]
        return assemble(path, items, models, self.fmt)

    def encode_nodes(self, nodes: Mapping[Path, Node | None], models: ModelLookup) -> bytes:
        writer = RecordWriter(self.fmt, self.opaque, [])
        for path, node in nodes.items():
            if node is not None:  # absent paths are left out of a composite answer (TS Core §6.3.8)
                writer.add(path, node, force_bn=False)
        return self.dump(writer.records)

    def decode_nodes(self, payload: bytes, models: ModelLookup) -> dict[Path, Node | None]:
        groups: dict[Path, list[tuple[Path, Value, ResourceModel]]] = {}
        seen: set[object] = set()
        for record, item in self._typed((_untimed(r) for r in self._resolve(payload)), models, seen):
            groups.setdefault(record.group, []).append(item)
        return {group: assemble(group, items, models, self.fmt) for group, items in groups.items()}

    def encode_timestamped(self, series: Sequence[TimestampedNodes], models: ModelLookup) -> bytes:
        writer = RecordWriter(self.fmt, self.opaque, [])
        # "bt" persists to the end of the pack, so instants without a time must come first.
        ordered = [s for s in series if s.timestamp is None] + [s for s in series if s.timestamp is not None]
        for entry in ordered:
            base_time = None if entry.timestamp is None else time_number(entry.timestamp)
            for path, node in entry.nodes.items():
                if node is None:
                    continue
                before = len(writer.records)
                writer.add(path, node, force_bn=True, base_time=base_time)
                if len(writer.records) > before:
                    base_time = None
        return self.dump(writer.records)

    def decode_timestamped(self, payload: bytes, models: ModelLookup) -> list[TimestampedNodes]:
        moments: dict[float | None, dict[Path, list[tuple[Path, Value, ResourceModel]]]] = {}
        first_index: dict[float | None, int] = {}
        seen: set[object] = set()
        for record, item in self._typed(self._resolve(payload), models, seen):
            moments.setdefault(record.time, {}).setdefault(record.group, []).append(item)
            first_index.setdefault(record.time, record.index)
        reference = now()
        out = []
        for stamp, groups in moments.items():
            where = _where(first_index[stamp])
            when = None if stamp is None else to_datetime(stamp, reference, self.fmt, where)
            nodes: dict[Path, Node | None] = {g: assemble(g, items, models, self.fmt) for g, items in groups.items()}
            out.append(TimestampedNodes(when, nodes))
        return out

    def encode_paths(self, paths: Sequence[Path]) -> bytes:
        return self.dump([{"n": str(path)} for path in paths])

    def decode_paths(self, payload: bytes) -> list[Path]:
        out: list[Path] = []
        seen: set[Path] = set()
        for record in self._resolve(payload, values=False):
            if record.path in seen:
                raise CodecError(f"{record.path} appears twice", content_format=self.fmt, where=_where(record.index))
            seen.add(record.path)
            out.append(record.path)
        return out


# --- fast-path helpers ------------------------------------------------------------------------

_FastEntry = tuple[int, ResourceType, object, bool]
"""(resource id, type, key of its value field in the loaded records, multiple)."""

# Enum members bound once: attribute look-ups on an Enum class are slow in hot loops.
_STRING = ResourceType.STRING
_CORELNK = ResourceType.CORELNK
_INTEGER = ResourceType.INTEGER
_UNSIGNED = ResourceType.UNSIGNED_INTEGER
_FLOAT = ResourceType.FLOAT
_BOOLEAN = ResourceType.BOOLEAN
_OPAQUE = ResourceType.OPAQUE
_TIME = ResourceType.TIME
_OBJLNK = ResourceType.OBJLNK
_EXACT_INT = 2**53
"""Integers up to this magnitude convert to float exactly (what :func:`coerce` insists on)."""
_KEY_TYPES = frozenset((int, str))


def _int_or_text_keys(records: list[object]) -> bool:
    """True when every record's keys are int or str (2.0 or False would otherwise pass for 2 or 0)."""
    try:
        return _KEY_TYPES.issuperset(map(type, chain.from_iterable(records)))  # type: ignore[arg-type]
    except TypeError:  # a record that is not iterable; the caller refuses it
        return False


def _small_id(text: str) -> int | None:
    """A path level as Path.parse reads it: decimal, no leading zero, 0..MAX_ID; else None."""
    if not text.isdigit() or not text.isascii() or len(text) > 5 or (text[0] == "0" and len(text) > 1):
        return None
    number = int(text)
    return number if number <= MAX_ID else None


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
        return False
    return True


def _fast_value(kind: ResourceType, raw: object, opaque_text: bool) -> Value | None:
    """The less common types for the fast path: the value :func:`senml_value` would return, or None."""
    if kind is _UNSIGNED:
        return raw if type(raw) is int and 0 <= raw <= UINT64_MAX else None
    if kind is _BOOLEAN:
        return raw if type(raw) is bool else None
    if kind is _TIME:
        if type(raw) is not int:
            return None
        try:
            return datetime.fromtimestamp(raw, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if kind is _CORELNK:
        return raw if type(raw) is str else None
    if kind is _OPAQUE:
        if opaque_text:
            if type(raw) is not str:
                return None
            try:
                return opaque_from_base64(raw, "", "")
            except CodecError:
                return None
        return raw if type(raw) is bytes else None
    if kind is _OBJLNK and type(raw) is str:
        try:
            return ObjectLink.parse(raw)
        except InvalidValueError:
            return None
    return None


def _untimed(record: Resolved) -> Resolved:
    if record.time is None:
        return record
    return Resolved(record.index, record.path, record.field, record.raw, None, record.group)
