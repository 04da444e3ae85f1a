"""OMA TLV (content format 11542, and the pre-registration number 1542): TS Core §7.4.3.

Each entry is a type byte, an 8- or 16-bit identifier, a 0- to 24-bit length and the value::

    type byte   bits 7-6  00 Object Instance, 01 Resource Instance, 10 Multiple Resource,
                          11 Resource with value
                bit  5    identifier is 16 bits (else 8)
                bits 4-3  length field of 0, 8, 16 or 24 bits
                bits 2-0  the length itself when bits 4-3 are 00

Object Instance TLVs hold Resource and Multiple Resource TLVs; Multiple Resource TLVs hold Resource
Instance TLVs. Values are typed by the model (Appendix C): Integer and Time as 1/2/4/8-byte two's
complement, Unsigned Integer as 1/2/4/8 unsigned bytes, Float as IEEE 754 of 4 or 8 bytes, Boolean
one byte 0/1, Objlnk two uint16 (object, instance), String/Corelnk UTF-8, Opaque raw bytes.

Encoding picks the smallest integer width, 4-byte floats only when exact, and never wraps the body
of an ``/o/i`` payload in an Object Instance TLV. Decoding accepts that wrapper when its id matches,
and at ``/o`` a bare list of resources (a Create that lets the client pick the id), returned as
``ObjectInstance(id=None, ...)``. Every malformed input is a :class:`CodecError` giving what is
wrong, the byte offset of the offending TLV header and the path.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import datetime

from spmp.lwm2m.codecs import register
from spmp.lwm2m.codecs._common import LIMITS, Limits, check_size, object_model
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError, InvalidValueError, UnsupportedContentFormatError
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
from spmp.lwm2m.values import ObjectLink, Value, coerce, time_from_seconds, time_to_seconds

FMT = "application/vnd.oma.lwm2m+tlv"

OBJECT_INSTANCE, RESOURCE_INSTANCE, MULTIPLE_RESOURCE, RESOURCE = 0, 1, 2, 3
_KIND_NAMES = ("Object Instance", "Resource Instance", "Multiple Resource", "Resource")

_Entry = tuple[int, int, int, int, int]
"""A scanned TLV: (kind, identifier, value start, value end, header offset)."""

_Reader = Callable[[bytes, int, int], Value]
_Plan = dict[int, tuple[ResourceModel, _Reader, ResourceType]]
"""Per object model: resource id → (model, value reader, type), executables left out."""

# Enum members bound once: attribute look-ups on an Enum class and Enum hashing are slow in hot loops.
_STRING = ResourceType.STRING
_CORELNK = ResourceType.CORELNK
_INTEGER = ResourceType.INTEGER
_UNSIGNED = ResourceType.UNSIGNED_INTEGER
_FLOAT_T = ResourceType.FLOAT
_BOOLEAN = ResourceType.BOOLEAN
_OPAQUE = ResourceType.OPAQUE
_TIME = ResourceType.TIME
_OBJLNK_T = ResourceType.OBJLNK
_INT_SIZES = (1, 2, 4, 8)
_FLOAT = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")
_OBJLNK = struct.Struct(">HH")


# ---------------------------------------------------------------------------------------------- decoding


class _BadValueError(Exception):
    """A value's bytes do not fit its type; turned into a CodecError with the location."""


def _read_string(data: bytes, start: int, end: int) -> Value:
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadValueError(f"invalid UTF-8 at byte {start + exc.start}") from None


def _read_integer(data: bytes, start: int, end: int) -> Value:
    if end - start not in _INT_SIZES:
        raise _BadValueError(f"{end - start} bytes; an integer has 1, 2, 4 or 8")
    return int.from_bytes(data[start:end], "big", signed=True)


def _read_unsigned(data: bytes, start: int, end: int) -> Value:
    if end - start not in _INT_SIZES:
        raise _BadValueError(f"{end - start} bytes; an unsigned integer has 1, 2, 4 or 8")
    return int.from_bytes(data[start:end], "big")


def _read_float(data: bytes, start: int, end: int) -> Value:
    if end - start in (4, 8):
        number: float = (_FLOAT if end - start == 4 else _DOUBLE).unpack_from(data, start)[0]
        return number
    raise _BadValueError(f"{end - start} bytes; a float has 4 or 8")


def _read_boolean(data: bytes, start: int, end: int) -> Value:
    if end - start != 1 or data[start] > 1:
        raise _BadValueError(f"{data[start:end][:8].hex()!r} is not a single byte 0 or 1")
    return data[start] == 1


def _read_time(data: bytes, start: int, end: int) -> Value:
    seconds = _read_integer(data, start, end)
    assert isinstance(seconds, int)
    try:
        return time_from_seconds(seconds)
    except InvalidValueError as exc:  # beyond the years datetime can hold
        raise _BadValueError(exc.reason) from None


def _read_objlnk(data: bytes, start: int, end: int) -> Value:
    if end - start != 4:
        raise _BadValueError(f"{end - start} bytes; an object link has 4")
    object_id, instance_id = _OBJLNK.unpack_from(data, start)
    return ObjectLink._trusted(object_id, instance_id)  # two uint16: always in range


def _read_opaque(data: bytes, start: int, end: int) -> Value:
    return data[start:end]


_VALUE_READERS: dict[ResourceType, _Reader] = {
    _STRING: _read_string,
    _CORELNK: _read_string,
    _INTEGER: _read_integer,
    _UNSIGNED: _read_unsigned,
    _FLOAT_T: _read_float,
    _BOOLEAN: _read_boolean,
    _TIME: _read_time,
    _OBJLNK_T: _read_objlnk,
    _OPAQUE: _read_opaque,
}

_PLANS: dict[int, tuple[ObjectModel, _Plan]] = {}


def _plan(model: ObjectModel) -> _Plan:
    """The decoding plan of an object model, built once (models are immutable and few)."""
    cached = _PLANS.get(id(model))
    if cached is not None and cached[0] is model:  # holding the model keeps its id from being reused
        return cached[1]
    plan = {
        rid: (resource, _VALUE_READERS[resource.type], resource.type)
        for rid, resource in model.resources.items()
        if resource.type in _VALUE_READERS
    }
    if len(_PLANS) >= 4096:  # only a caller minting models per request gets here; stay bounded
        _PLANS.clear()
    _PLANS[id(model)] = (model, plan)
    return plan


_SinglePlan = dict[int, tuple[_Reader, ResourceType]]
_SINGLE_PLANS: dict[int, tuple[ObjectModel, _SinglePlan]] = {}


def _single_plan(model: ObjectModel) -> _SinglePlan:
    """Resource id → (value reader, type) for the single, valued resources of a model, built once."""
    cached = _SINGLE_PLANS.get(id(model))
    if cached is not None and cached[0] is model:
        return cached[1]
    plan = {rid: (reader, kind) for rid, (resource, reader, kind) in _plan(model).items() if not resource.multiple}
    if len(_SINGLE_PLANS) >= 4096:
        _SINGLE_PLANS.clear()
    _SINGLE_PLANS[id(model)] = (model, plan)
    return plan


class _Decoder:
    """One decode call: the payload, the running entry count and the model of the object."""

    __slots__ = ("count", "data", "limits", "model", "plan")

    def __init__(self, data: bytes, limits: Limits, model: ObjectModel) -> None:
        self.data = data
        self.limits = limits
        self.model = model
        self.plan = _plan(model)
        self.count = 0

    def fail(self, message: str, offset: int, *ids: int | None) -> CodecError:
        path = "/" + "/".join(str(i) for i in (self.model.id, *ids) if i is not None)
        return CodecError(message, content_format=FMT, where=f"offset {offset} ({path})")

    def scan(self, start: int, end: int, *ids: int | None) -> list[_Entry]:
        """Split ``data[start:end]`` into TLV entries (headers only; values stay in place)."""
        data = self.data
        entries: list[_Entry] = []
        budget = self.limits.max_records - self.count  # counted per entry, so a flood stops early
        pos = start
        while pos < end:
            header = pos
            if len(entries) >= budget:
                raise self.fail(f"more than {self.limits.max_records} TLV entries", header, *ids)
            type_byte = data[pos]
            id_size = 2 if type_byte & 0x20 else 1
            length_size = (type_byte >> 3) & 0x03
            value_start = pos + 1 + id_size + length_size
            if value_start > end:
                raise self.fail(f"TLV header of {value_start - pos} bytes is cut short", header, *ids)
            identifier = data[pos + 1] if id_size == 1 else (data[pos + 1] << 8) | data[pos + 2]
            if identifier > MAX_ID:
                raise self.fail(f"identifier {identifier} is reserved", header, *ids)
            # bits 2-0 hold the length itself only when there is no length field
            length = int.from_bytes(data[pos + 1 + id_size : value_start], "big") if length_size else type_byte & 0x07
            pos = value_start + length
            if pos > end:
                raise self.fail(
                    f"{_KIND_NAMES[type_byte >> 6]} {identifier} declares {length} bytes, "
                    f"only {end - value_start} remain",
                    header,
                    *ids,
                )
            entries.append((type_byte >> 6, identifier, value_start, pos, header))
        self.count += len(entries)
        return entries

    def instance(self, entries: list[_Entry], instance_id: int | None) -> ObjectInstance:
        resources: dict[int, Resource] = {}
        plan, data = self.plan, self.data
        for entry in entries:
            kind, resource_id, start, end, header = entry
            if resource_id in resources:
                raise self.fail(f"resource {resource_id} appears twice", header, instance_id)
            found = plan.get(resource_id)
            if kind != RESOURCE or found is None or found[0].multiple:
                resources[resource_id] = self.resource(entry, instance_id)  # multiple resources, and every error
                continue
            # The common case inline: a single resource with a value.
            try:
                value = found[1](data, start, end)
            except _BadValueError as exc:
                raise self.fail(f"{found[2].value} value: {exc}", header, instance_id, resource_id) from None
            resources[resource_id] = SingleResource(resource_id, value, found[2])
        return ObjectInstance(instance_id, resources)

    def resource_plan(self, resource_id: int, header: int, instance_id: int | None) -> tuple[ResourceModel, _Reader]:
        found = self.plan.get(resource_id)
        if found is not None:
            return found[0], found[1]
        model = self.model.resource(resource_id)
        if model is None:
            message = f"object {self.model.id} ({self.model.name}) has no resource {resource_id}"
        else:
            message = f"resource {resource_id} ({model.name}) is executable and has no value"
        raise self.fail(message, header, instance_id, resource_id)

    def resource(self, entry: _Entry, instance_id: int | None) -> Resource:
        kind, resource_id, start, end, header = entry
        if kind not in (RESOURCE, MULTIPLE_RESOURCE):
            raise self.fail(
                f"a {_KIND_NAMES[kind]} TLV cannot appear where resources are expected", header, instance_id
            )
        model, read = self.resource_plan(resource_id, header, instance_id)
        if kind == RESOURCE:
            if model.multiple:
                raise self.fail(
                    f"resource {resource_id} ({model.name}) is multiple, got a single-value TLV",
                    header,
                    instance_id,
                    resource_id,
                )
            return SingleResource(resource_id, self.value(read, model, entry, instance_id, resource_id), model.type)
        if not model.multiple:
            raise self.fail(
                f"resource {resource_id} ({model.name}) is single, got a Multiple Resource TLV",
                header,
                instance_id,
                resource_id,
            )
        values: dict[int, Value] = {}
        for child in self.scan(start, end, instance_id, resource_id):
            child_kind, child_id, _, _, child_header = child
            if child_kind != RESOURCE_INSTANCE:
                raise self.fail(
                    f"a {_KIND_NAMES[child_kind]} TLV cannot appear inside a Multiple Resource",
                    child_header,
                    instance_id,
                    resource_id,
                )
            if child_id in values:
                raise self.fail(f"resource instance {child_id} appears twice", child_header, instance_id, resource_id)
            values[child_id] = self.value(read, model, child, instance_id, resource_id, child_id)
        return MultipleResource(resource_id, values, model.type)

    def value(self, read: _Reader, model: ResourceModel, entry: _Entry, *ids: int | None) -> Value:
        try:
            return read(self.data, entry[2], entry[3])
        except _BadValueError as exc:
            raise self.fail(f"{model.type.value} value: {exc}", entry[4], *ids) from None


def _instance_fast(data: bytes, plan: _SinglePlan, instance_id: int, limits: Limits) -> ObjectInstance | None:
    """An ``/o/i`` payload of single-value Resource TLVs in one pass, or None to let :class:`_Decoder` decide.

    Anything else (an Object Instance wrapper, Multiple Resources, an unknown or executable resource,
    a duplicate, a value that does not fit its type, too many entries) returns None, and the general
    decoder reads the payload again and words the error.
    """
    resources: dict[int, Resource] = {}
    end = len(data)
    budget = limits.max_records if end > 2 * limits.max_records else end  # an entry takes 2 bytes or more
    pos = 0
    lookup = plan.get
    while pos < end:
        type_byte = data[pos]
        if type_byte & 0xC0 != 0xC0 or len(resources) >= budget:
            return None
        if type_byte & 0x20:
            if pos + 2 >= end:
                return None
            identifier = (data[pos + 1] << 8) | data[pos + 2]
            pos += 3
        else:
            if pos + 1 >= end:
                return None
            identifier = data[pos + 1]
            pos += 2
        if type_byte & 0x18:
            length_size = (type_byte >> 3) & 0x03
            length = int.from_bytes(data[pos : pos + length_size], "big")
            pos += length_size
        else:
            length = type_byte & 0x07
        stop = pos + length
        found = lookup(identifier)
        if stop > end or found is None or identifier in resources:
            return None  # also refuses identifier 65535: no model has it
        kind = found[1]
        if kind is _FLOAT_T and length in (4, 8):
            value: Value = (_DOUBLE if length == 8 else _FLOAT).unpack_from(data, pos)[0]
        elif kind is _INTEGER and length in _INT_SIZES:
            value = int.from_bytes(data[pos:stop], "big", signed=True)
        else:
            try:
                value = found[0](data, pos, stop)
            except _BadValueError:
                return None
        resources[identifier] = SingleResource(identifier, value, kind)
        pos = stop
    return ObjectInstance(instance_id, resources)


def _decode(payload: bytes, path: Path, models: ModelLookup, limits: Limits) -> Node:
    object_id = path.object_id
    if object_id is None:
        raise UnsupportedContentFormatError("TLV cannot carry the root path", content_format=FMT, where="/")
    data = bytes(payload)
    found = object_model(models, object_id, FMT)
    if len(path.ids) == 2:
        fast = _instance_fast(data, _single_plan(found), path.ids[1], limits)
        if fast is not None:
            return fast
    decoder = _Decoder(data, limits, found)
    instance_id, resource_id = path.instance_id, path.resource_id
    entries = decoder.scan(0, len(data), instance_id, resource_id, path.resource_instance_id)

    if instance_id is None:  # /o: Object Instance TLVs, or bare resources in a Create
        if entries and all(entry[0] in (RESOURCE, MULTIPLE_RESOURCE) for entry in entries):
            return decoder.instance(entries, None)
        instances: dict[int, ObjectInstance] = {}
        for kind, ident, start, end, header in entries:
            if kind != OBJECT_INSTANCE:
                raise decoder.fail(f"a {_KIND_NAMES[kind]} TLV cannot be mixed with Object Instance TLVs", header)
            if ident in instances:
                raise decoder.fail(f"object instance {ident} appears twice", header)
            instances[ident] = decoder.instance(decoder.scan(start, end, ident), ident)
        return Object(object_id, instances)

    if resource_id is None:  # /o/i: resources, possibly wrapped in one matching Object Instance TLV
        if len(entries) == 1 and entries[0][0] == OBJECT_INSTANCE:
            _, ident, start, end, header = entries[0]
            if ident != instance_id:
                raise decoder.fail(f"Object Instance TLV {ident} does not match the path", header, instance_id)
            entries = decoder.scan(start, end, instance_id)
        return decoder.instance(entries, instance_id)

    if len(entries) != 1:
        raise decoder.fail(
            f"{path} needs exactly one TLV, got {len(entries)}",
            entries[1][4] if entries else 0,
            instance_id,
            resource_id,
        )
    entry = entries[0]
    kind, ident, _, _, header = entry
    if path.resource_instance_id is None:  # /o/i/r
        if ident != resource_id:
            raise decoder.fail(f"TLV for resource {ident} does not match the path", header, instance_id)
        return decoder.resource(entry, instance_id)

    # /o/i/r/ri: one Resource Instance TLV of a multiple resource
    model, read = decoder.resource_plan(resource_id, header, instance_id)
    if not model.multiple:
        raise decoder.fail(
            f"resource {resource_id} ({model.name}) is single and has no instances", header, instance_id, resource_id
        )
    if kind != RESOURCE_INSTANCE or ident != path.resource_instance_id:
        raise decoder.fail(
            f"expected Resource Instance TLV {path.resource_instance_id}, got {_KIND_NAMES[kind]} {ident}",
            header,
            instance_id,
            resource_id,
        )
    return ResourceInstance(ident, decoder.value(read, model, entry, instance_id, resource_id, ident), model.type)


# ---------------------------------------------------------------------------------------------- encoding


class _EncodeError(Exception):
    """A node part that cannot be encoded; the caller that knows the path turns it into a CodecError."""


def _header(kind: int, identifier: int, length: int) -> bytes:
    if type(identifier) is not int or not 0 <= identifier <= MAX_ID:
        raise _EncodeError(f"identifier {identifier!r} is outside 0..{MAX_ID}")
    type_byte = kind << 6
    if identifier <= 0xFF:
        if length < 8:  # the two most common shapes first
            return bytes((type_byte | length, identifier))
        if length <= 0xFF:
            return bytes((type_byte | 0x08, identifier, length))
        ident = bytes((identifier,))
    else:
        type_byte |= 0x20
        ident = identifier.to_bytes(2, "big")
    if length < 8:
        return bytes((type_byte | length,)) + ident
    if length <= 0xFF:
        return bytes((type_byte | 0x08,)) + ident + bytes((length,))
    if length <= 0xFFFF:
        return bytes((type_byte | 0x10,)) + ident + length.to_bytes(2, "big")
    if length <= 0xFFFFFF:
        return bytes((type_byte | 0x18,)) + ident + length.to_bytes(3, "big")
    raise _EncodeError(f"value of {length} bytes exceeds the 24-bit TLV length")


def _signed(number: int) -> bytes:
    if -0x80 <= number <= 0x7F:
        return number.to_bytes(1, "big", signed=True)
    if -0x8000 <= number <= 0x7FFF:
        return number.to_bytes(2, "big", signed=True)
    if -0x8000_0000 <= number <= 0x7FFF_FFFF:
        return number.to_bytes(4, "big", signed=True)
    return number.to_bytes(8, "big", signed=True)


def _unsigned(number: int) -> bytes:
    for size in _INT_SIZES:
        if number < 1 << (8 * size):
            return number.to_bytes(size, "big")
    raise _EncodeError(f"unsigned integer {number} is outside 0..2^64-1")  # pragma: no cover - coerce() bounds it


def _value_bytes(value: Value, kind: ResourceType, canonical: bool = False) -> bytes:
    """The TLV value of ``value``: canonical values go straight through, others via ``coerce`` once."""
    if kind is _STRING or kind is _CORELNK:
        if isinstance(value, str):
            try:
                return value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise _EncodeError(f"string has no UTF-8 form at character {exc.start}") from None
    elif kind is _INTEGER:
        if type(value) is int and INT64_MIN <= value <= INT64_MAX:
            return _signed(value)
    elif kind is _UNSIGNED:
        if type(value) is int and 0 <= value <= UINT64_MAX:
            return _unsigned(value)
    elif kind is _FLOAT_T:
        if type(value) is float:
            try:
                single = _FLOAT.pack(value)
            except OverflowError:
                return _DOUBLE.pack(value)
            return single if _FLOAT.unpack(single)[0] == value else _DOUBLE.pack(value)  # 4 bytes only when exact
    elif kind is _BOOLEAN:
        if type(value) is bool:
            return b"\x01" if value else b"\x00"
    elif kind is _OPAQUE:
        if type(value) is bytes:
            return value
    elif kind is _TIME:
        if type(value) is datetime and value.tzinfo is not None:
            return _signed(time_to_seconds(value))
    elif kind is _OBJLNK_T and isinstance(value, ObjectLink):
        return _OBJLNK.pack(value.object_id, value.instance_id)
    if canonical:  # pragma: no cover - coerce() returns values the branches above accept
        raise _EncodeError(f"{type(value).__name__} value cannot be encoded as {kind.value}")
    try:
        return _value_bytes(coerce(value, kind), kind, True)
    except InvalidValueError as exc:
        raise _EncodeError(exc.reason) from None


def _resource_bytes(resource: Resource, prefix: str) -> bytes:
    instance_id = None
    try:
        if isinstance(resource, SingleResource):
            value = _value_bytes(resource.value, resource.type)
            return _header(RESOURCE, resource.id, len(value)) + value
        kind = resource.type
        parts = []
        for instance_id, item in resource.instances.items():  # instance_id also names the culprit below
            value = _value_bytes(item, kind)
            parts.append(_header(RESOURCE_INSTANCE, instance_id, len(value)))
            parts.append(value)
        instance_id = None
        body = b"".join(parts)
        return _header(MULTIPLE_RESOURCE, resource.id, len(body)) + body
    except _EncodeError as exc:
        where = f"{prefix}/{resource.id}" + ("" if instance_id is None else f"/{instance_id}")
        raise CodecError(str(exc), content_format=FMT, where=where) from None


def _instance_body_fast(instance: ObjectInstance) -> bytes | None:
    """The body of an instance whose resources are all single, with values of up to 255 bytes, in
    one loop; None sends the instance to the general encoder (and its errors)."""
    parts: list[bytes] = []
    append = parts.append
    for resource_id, resource in instance.resources.items():
        if type(resource) is not SingleResource or resource.id != resource_id or not 0 <= resource_id <= MAX_ID:
            return None
        value = resource.value
        kind = resource.type
        if kind is _FLOAT_T and type(value) is float:
            try:
                data = _FLOAT.pack(value)
            except OverflowError:
                data = _DOUBLE.pack(value)
            else:
                if _FLOAT.unpack(data)[0] != value:  # 4 bytes only when exact
                    data = _DOUBLE.pack(value)
        else:
            try:
                data = _value_bytes(value, kind)
            except _EncodeError:
                return None
        length = len(data)
        if resource_id <= 0xFF:
            if length < 8:
                append(bytes((0xC0 | length, resource_id)))
            elif length <= 0xFF:
                append(bytes((0xC8, resource_id, length)))
            else:
                return None
        elif length < 8:
            append(bytes((0xE0 | length, resource_id >> 8, resource_id & 0xFF)))
        elif length <= 0xFF:
            append(bytes((0xE8, resource_id >> 8, resource_id & 0xFF, length)))
        else:
            return None
        append(data)
    return b"".join(parts)


def _instance_body(instance: ObjectInstance, prefix: str) -> bytes:
    fast = _instance_body_fast(instance)
    return _instance_body_general(instance, prefix) if fast is None else fast


def _instance_body_general(instance: ObjectInstance, prefix: str) -> bytes:
    parts = []
    for resource_id, resource in instance.resources.items():
        if resource_id != resource.id:
            raise CodecError(f"resource keyed {resource_id} has id {resource.id}", content_format=FMT, where=prefix)
        parts.append(_resource_bytes(resource, prefix))
    return b"".join(parts)


def _wrapped(instance: ObjectInstance, object_id: int) -> bytes:
    prefix = f"/{object_id}/{instance.id}"
    body = _instance_body(instance, prefix)
    assert instance.id is not None
    try:
        return _header(OBJECT_INSTANCE, instance.id, len(body)) + body
    except _EncodeError as exc:
        raise CodecError(str(exc), content_format=FMT, where=prefix) from None


def _encode(node: Node, path: Path) -> bytes:
    object_id = path.object_id
    if object_id is None:
        raise UnsupportedContentFormatError("TLV cannot carry the root path", content_format=FMT, where="/")
    if path.is_object:
        if isinstance(node, Object) and node.id == object_id:
            parts = []
            for instance_id, instance in node.instances.items():
                if instance.id != instance_id:
                    raise CodecError(
                        f"instance keyed {instance_id} has id {instance.id}", content_format=FMT, where=str(path)
                    )
                parts.append(_wrapped(instance, object_id))
            return b"".join(parts)
        if isinstance(node, ObjectInstance):  # a Create payload, with or without the instance id
            return _instance_body(node, str(path)) if node.id is None else _wrapped(node, object_id)
    elif path.is_object_instance:
        if isinstance(node, ObjectInstance) and node.id in (None, path.instance_id):
            return _instance_body(node, str(path))
    elif path.is_resource:
        if isinstance(node, SingleResource | MultipleResource) and node.id == path.resource_id:
            return _resource_bytes(node, str(path.parent))
    elif isinstance(node, ResourceInstance) and node.id == path.resource_instance_id:
        try:
            value = _value_bytes(node.value, node.type)
            return _header(RESOURCE_INSTANCE, node.id, len(value)) + value
        except _EncodeError as exc:
            raise CodecError(str(exc), content_format=FMT, where=str(path)) from None
    ident = getattr(node, "id", None)
    raise UnsupportedContentFormatError(
        f"a {type(node).__name__} with id {ident} cannot be encoded at {path}", content_format=FMT, where=str(path)
    )


class TlvCodec:
    """OMA TLV for objects, object instances, resources and resource instances."""

    content_format = ContentFormat.TLV

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.limits = limits

    def encode(self, node: Node, path: Path, models: ModelLookup) -> bytes:
        return _encode(node, path)

    def decode(self, payload: bytes, path: Path, models: ModelLookup) -> Node:
        check_size(payload, FMT, self.limits)
        return _decode(payload, path, models, self.limits)


register(TlvCodec(), ContentFormat.OLD_TLV)
