"""SenML CBOR (content format 112, RFC 8428 §6 with TS Core 1.1 §7.4.4), plus the small CBOR reader
and writer that SenML CBOR and LwM2M CBOR share.

Why our own CBOR code: the writer must produce the exact bytes of the TS examples (map keys in
record order, integers in their shortest head, floats in the shortest of half/single/double that
holds the value exactly: RFC 8949 preferred serialization); the reader must bound nesting, item
counts and lengths before allocating anything, refuse tags and simple values LwM2M does not use,
and never let a RecursionError or a cbor2-specific type escape.

For speed, :meth:`SenmlCborCodec.decode` of one object instance first lets cbor2's C decoder read
payloads that cannot break the limits (at most ``max_records`` bytes, so at most as many items;
depth bounded by cbor2's own ``max_depth``; every tag refused), then checks every item of the result
in the fast path of :class:`~spmp.lwm2m.codecs.senml.SenmlCodec`. Whatever cbor2 or the fast path
does not accept is read again by the reader below, which words the error.

Supported on input: definite and indefinite lengths (Anjay writes indefinite maps), integers up to
64 bits, floats (NaN and infinities refused), text, bytes, arrays, maps keyed by integers, text or
arrays of integers, false/true/null, tag 4 (decimal fraction) and tag 1 (epoch time).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, NoReturn

import cbor2

from spmp.lwm2m.codecs import register
from spmp.lwm2m.codecs._common import LIMITS, Limits, check_size
from spmp.lwm2m.codecs.senml import SenmlCodec
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError
from spmp.lwm2m.model import INT64_MAX, INT64_MIN, UINT64_MAX, ResourceType
from spmp.lwm2m.node import MultipleResource, ObjectInstance, SingleResource
from spmp.lwm2m.values import ObjectLink, Value

FMT = "senml+cbor"

_BREAK = object()


class CborReader:
    """Decodes one CBOR data item from ``data`` with the bounds of ``limits``."""

    __slots__ = ("data", "fmt", "items", "limits", "pos")

    def __init__(self, data: bytes, fmt: str, limits: Limits) -> None:
        self.data = data
        self.pos = 0
        self.items = 0
        self.fmt = fmt
        self.limits = limits

    def error(self, message: str) -> CodecError:
        return CodecError(message, content_format=self.fmt, where=f"offset {self.pos}")

    def _take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise self.error("truncated CBOR")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def _head(self) -> tuple[int, int, int | None]:
        """Read an initial byte and argument: (major, info, argument or None if indefinite)."""
        if self.pos >= len(self.data):
            raise self.error("truncated CBOR")
        initial = self.data[self.pos]
        self.pos += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info
        if info <= 27:
            return major, info, int.from_bytes(self._take(1 << (info - 24)), "big")
        if info == 31 and major in (2, 3, 4, 5, 7):
            return major, info, None
        raise self.error(f"reserved CBOR initial byte 0x{initial:02x}")

    def item(self, depth: int = 0) -> object:
        self.items += 1
        if self.items > self.limits.max_records:
            raise self.error(f"more than {self.limits.max_records} CBOR items")
        start = self.pos
        major, info, arg = self._head()
        if major == 0:
            return arg
        if major == 1:
            assert arg is not None
            return -1 - arg
        if major in (2, 3):
            raw = self._string(major, arg, depth) if arg is None else self._take(arg)
            if major == 2:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                self.pos = start
                raise self.error("text string is not UTF-8") from None
        if major == 7:
            return self._simple(info, arg)
        if depth >= self.limits.max_depth:
            raise self.error(f"CBOR nesting deeper than {self.limits.max_depth}")
        if major == 4:
            return self._array(arg, depth + 1)
        if major == 5:
            return self._map(arg, depth + 1)
        return self._tag(arg, depth + 1)

    def _string(self, major: int, arg: None, depth: int) -> bytes:
        chunks: list[bytes] = []
        while True:
            if self.pos < len(self.data) and self.data[self.pos] == 0xFF:
                self.pos += 1
                return b"".join(chunks)
            chunk_major, _, length = self._head()
            if chunk_major != major or length is None:
                raise self.error("bad chunk in an indefinite-length string")
            chunks.append(self._take(length))

    def _count(self, arg: int | None) -> int | None:
        # Every element takes at least one byte: a longer count is a lie, refuse before allocating.
        if arg is not None and arg > len(self.data) - self.pos:
            raise self.error(f"CBOR container claims {arg} elements")
        return arg

    def _array(self, arg: int | None, depth: int) -> list[object]:
        count = self._count(arg)
        out: list[object] = []
        while count is None or len(out) < count:
            value = self._element(depth, indefinite=count is None)
            if value is _BREAK:
                break
            out.append(value)
        return out

    def _element(self, depth: int, *, indefinite: bool) -> object:
        if indefinite and self.pos < len(self.data) and self.data[self.pos] == 0xFF:
            self.pos += 1
            return _BREAK
        return self.item(depth)

    def _map(self, arg: int | None, depth: int) -> dict[object, object]:
        count = self._count(arg)
        out: dict[object, object] = {}
        while count is None or len(out) < count:
            key_at = self.pos
            key = self._element(depth, indefinite=count is None)
            if key is _BREAK:
                break
            if isinstance(key, list):
                if not key or not all(type(k) is int for k in key):
                    self.pos = key_at
                    raise self.error("an array map key must hold integers")
                key = tuple(key)
            elif type(key) is not int and type(key) is not str:
                self.pos = key_at
                raise self.error(f"unsupported map key of type {type(key).__name__}")
            if key in out:
                self.pos = key_at
                raise self.error(f"duplicate map key {key!r}")
            out[key] = self.item(depth)
        return out

    def _tag(self, tag: int | None, depth: int) -> object:
        at = self.pos
        content = self.item(depth)
        if tag == 1 and type(content) in (int, float):
            return content  # epoch-based time: the number itself
        if tag == 4 and isinstance(content, list) and len(content) == 2 and all(type(c) is int for c in content):
            exponent, mantissa = int(content[0]), int(content[1])
            if not -300 <= exponent <= 300:
                raise self.error("decimal fraction exponent out of range")
            if exponent >= 0:
                return mantissa * 10**exponent
            return mantissa / 10 ** (-exponent)
        self.pos = at
        raise self.error(f"unsupported CBOR tag {tag}")

    def _simple(self, info: int, arg: int | None) -> object:
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info in (25, 26, 27):
            assert arg is not None
            size = 1 << (info - 24)
            number: float = struct.unpack(">" + "xxefd"[info - 23], arg.to_bytes(size, "big"))[0]
            if not math.isfinite(number):
                raise self.error("NaN and infinities are not LwM2M values")
            return number
        if arg is None:
            raise self.error("unexpected CBOR break")
        raise self.error(f"unsupported CBOR simple value {arg}")


def loads(payload: bytes, fmt: str, limits: Limits = LIMITS) -> object:
    """One complete CBOR item; trailing bytes, bad structure and excess are CodecError."""
    check_size(payload, fmt, limits)
    reader = CborReader(bytes(payload), fmt, limits)
    value = reader.item()
    if reader.pos != len(reader.data):
        raise reader.error("trailing bytes after the CBOR item")
    return value


# --- writer -----------------------------------------------------------------------------------


def write_head(out: bytearray, major: int, value: int) -> None:
    """The shortest head for ``value`` (RFC 8949 §4.2.1 preferred serialization)."""
    kind = major << 5
    if value < 24:
        out.append(kind | value)
    elif value < 0x100:
        out.append(kind | 24)
        out.append(value)
    elif value < 0x10000:
        out.append(kind | 25)
        out += value.to_bytes(2, "big")
    elif value < 0x100000000:
        out.append(kind | 26)
        out += value.to_bytes(4, "big")
    else:
        out.append(kind | 27)
        out += value.to_bytes(8, "big")


_HALF = struct.Struct(">e")
_SINGLE = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")


def float_bytes(number: float) -> bytes:
    """The shortest of half, single and double precision that holds ``number`` exactly, with its head.

    Every half-precision value is a single-precision value, so single is tried first: most
    measurements are not exact in single precision and then cost one pack and one unpack.
    """
    try:
        single = _SINGLE.pack(number)
    except OverflowError:
        return b"\xfb" + _DOUBLE.pack(number)
    if _SINGLE.unpack(single)[0] != number:
        return b"\xfb" + _DOUBLE.pack(number)
    try:
        half = _HALF.pack(number)
    except OverflowError:
        return b"\xfa" + single
    return b"\xf9" + half if _HALF.unpack(half)[0] == number else b"\xfa" + single


def write_float(out: bytearray, number: float) -> None:
    """The shortest of half, single and double precision that holds ``number`` exactly."""
    out += float_bytes(number)


def write(out: bytearray, value: object, fmt: str) -> None:
    """Append ``value`` (str, int, float, bool, bytes, None, list, dict, tuple key) to ``out``."""
    if isinstance(value, str):
        data = value.encode("utf-8", "strict")
        write_head(out, 3, len(data))
        out += data
    elif isinstance(value, bool):  # before int: bool is an int subclass
        out.append(0xF5 if value else 0xF4)
    elif isinstance(value, int):
        if not -(2**64) <= value < 2**64:
            raise CodecError(f"integer {value} does not fit in CBOR", content_format=fmt)
        if value >= 0:
            write_head(out, 0, value)
        else:
            write_head(out, 1, -1 - value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise CodecError(f"{value} cannot be encoded", content_format=fmt)
        write_float(out, value)
    elif isinstance(value, bytes):
        write_head(out, 2, len(value))
        out += value
    elif value is None:
        out.append(0xF6)
    elif isinstance(value, dict):
        write_head(out, 5, len(value))
        for key, item in value.items():
            write(out, key, fmt)
            write(out, item, fmt)
    elif isinstance(value, list | tuple):
        write_head(out, 4, len(value))
        for item in value:
            write(out, item, fmt)
    else:
        raise CodecError(f"cannot encode a {type(value).__name__} in CBOR", content_format=fmt)


# --- SenML CBOR -------------------------------------------------------------------------------

_LABELS: dict[str, bytes] = {
    "bn": b"\x21",
    "bt": b"\x22",
    "n": b"\x00",
    "v": b"\x02",
    "vs": b"\x03",
    "vb": b"\x04",
    "vd": b"\x08",
    "t": b"\x06",
    "vlo": b"\x63vlo",
}
"""RFC 8428 Table 6 labels; "vlo" is the text label the TS gives Objlnk values."""

_NAMES: dict[int | str, str] = {-2: "bn", -3: "bt", 0: "n", 2: "v", 3: "vs", 4: "vb", 8: "vd", 6: "t", "vlo": "vlo"}
_NAMES.update({-5: "bv", -6: "bs", 5: "s"})  # refused by the resolver with a clear message


class _NoTags(Mapping[int, Any]):
    """cbor2 ``semantic_decoders`` that refuse every tag, before its content is read."""

    def __getitem__(self, tag: int) -> Any:
        return _refuse_tag

    def get(self, tag: int, default: Any = None) -> Any:
        return _refuse_tag

    def __contains__(self, tag: object) -> bool:
        return True

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


def _refuse_tag(*_: object) -> NoReturn:
    raise ValueError("tags are left to the reader")


_NO_TAGS = _NoTags()


def _sentinel_key() -> bytes:
    """16 random bytes without 0x50 (the head of a 16-byte string): see :meth:`SenmlCborCodec.fast_load`."""
    while True:
        key = os.urandom(16)
        if 0x50 not in key:
            return key


_SENTINEL_KEY = _sentinel_key()
_SENTINEL = b"\x50" + _SENTINEL_KEY


class SenmlCborCodec(SenmlCodec):
    content_format = ContentFormat.SENML_CBOR
    fmt = FMT
    opaque_type = bytes
    bn_key: ClassVar[object] = -2
    n_key: ClassVar[object] = 0
    field_keys: ClassVar[Mapping[str, object]] = {"v": 2, "vs": 3, "vb": 4, "vd": 8, "vlo": "vlo"}
    check_key_types = True

    def __init__(self, limits: Limits = LIMITS) -> None:
        super().__init__(limits)

    def fast_load(self, payload: bytes) -> object | None:
        """cbor2 (C) instead of :class:`CborReader` when that cannot break a limit; None otherwise.

        cbor2.loads ignores bytes after the item, so the payload is read as the first element of a
        two-element array whose second element is a 16-byte string known only to this process:
        that element comes back intact only if the payload is exactly one item (a payload that
        ran into it would have to contain the key, or make a string of it that starts with 0x50,
        which the key never holds). Map keys, values, NaN and simple values are checked by the
        fast path; tags, duplicate keys, bad UTF-8 and malformed input make cbor2 raise.
        """
        check_size(payload, self.fmt, self.limits)
        limits = self.limits
        if len(payload) > limits.max_records or limits.max_depth < 2:
            return None
        try:
            wrapped = cbor2.loads(
                b"\x82" + payload + _SENTINEL,
                max_depth=limits.max_depth + 1,
                allow_duplicate_keys=False,
                semantic_decoders=_NO_TAGS,
                tag_hook=_refuse_tag,
            )
        except Exception:  # any failure: the reader decides and words the error
            return None
        if type(wrapped) is not list or len(wrapped) != 2:
            return None
        end = wrapped[1]
        if type(end) is not bytes or end != _SENTINEL_KEY:
            return None
        records: object = wrapped[0]
        return records

    def _encode_instance_fast(self, instance: ObjectInstance, where: str) -> bytes | None:
        """The bytes :meth:`dump` writes for the records RecordWriter builds, written directly."""
        records: list[bytes] = []
        for rid, resource in instance.resources.items():
            if type(rid) is not int:
                return None
            if type(resource) is SingleResource:
                field = _cbor_field(resource.type, resource.value)
                if field is None:
                    return None
                records.append(_name_record(str(rid)) + field)
            elif type(resource) is MultipleResource:
                kind = resource.type
                for ri, item in resource.instances.items():
                    field = _cbor_field(kind, item)
                    if field is None or type(ri) is not int:
                        return None
                    records.append(_name_record(f"{rid}/{ri}") + field)
            else:
                return None
        out = bytearray()
        write_head(out, 4, len(records))
        if records:
            first = records[0]
            bn = (where + "/").encode("utf-8")
            out.append(0xA3)  # {bn, n, value}
            out.append(0x21)
            write_head(out, 3, len(bn))
            out += bn
            out += memoryview(first)[1:]
            records[0] = b""
        out += b"".join(records)
        return bytes(out)

    def load(self, payload: bytes) -> object:
        document = loads(payload, self.fmt, self.limits)
        if not isinstance(document, list):
            return document  # the resolver reports the wrong root
        records: list[object] = []
        for index, record in enumerate(document):
            if not isinstance(record, dict):
                raise CodecError("a record is a map", content_format=self.fmt, where=f"record {index}")
            renamed: dict[str, object] = {}
            for key, value in record.items():
                name = _NAMES.get(key) if type(key) is int or type(key) is str else None
                if name is not None:
                    renamed[name] = value
                elif isinstance(key, str) and key.endswith("_"):
                    renamed[key] = value
            records.append(renamed)
        return records

    def dump(self, records: list[dict[str, object]]) -> bytes:
        out = bytearray()
        write_head(out, 4, len(records))
        fmt = self.fmt
        for record in records:
            write_head(out, 5, len(record))
            for key, value in record.items():
                out += _LABELS[key]
                write(out, value, fmt)
        return bytes(out)

    def opaque(self, data: bytes) -> object:
        return data


_NAME_RECORDS: dict[str, bytes] = {}


def _name_record(name: str) -> bytes:
    """The start of a two-entry record: map head, label n and the name (ASCII digits and '/')."""
    found = _NAME_RECORDS.get(name)
    if found is None:
        data = name.encode("ascii")
        head = bytearray(b"\xa2\x00")
        write_head(head, 3, len(data))
        found = bytes(head) + data
        if len(_NAME_RECORDS) >= 8192:
            _NAME_RECORDS.clear()
        _NAME_RECORDS[name] = found
    return found


def _cbor_head(major: int, value: int) -> bytes:
    """:func:`write_head` as bytes, the one- to three-byte heads without a bytearray."""
    top = major << 5
    if value < 24:
        return bytes((top | value,))
    if value < 0x100:
        return bytes((top | 24, value))
    if value < 0x10000:
        return bytes((top | 25, value >> 8, value & 0xFF))
    out = bytearray()
    write_head(out, major, value)
    return bytes(out)


def _cbor_field(kind: ResourceType, value: Value) -> bytes | None:
    """Label and value as :meth:`SenmlCborCodec.dump` writes what RecordWriter puts there; None if unusual."""
    if kind is _T_FLOAT:
        if type(value) is float and math.isfinite(value):
            return b"\x02" + float_bytes(value)
    elif kind is _T_STRING or kind is _T_CORELNK:
        if type(value) is str:
            try:
                data = value.encode("utf-8")
            except UnicodeEncodeError:
                return None
            size = len(data)
            return (bytes((0x03, 0x60 | size)) if size < 24 else b"\x03" + _cbor_head(3, size)) + data
    elif kind is _T_INTEGER or kind is _T_UNSIGNED or kind is _T_TIME:
        if kind is _T_TIME:
            if type(value) is not datetime:
                return None
            number = int(value.timestamp())
        elif type(value) is int and (
            INT64_MIN <= value <= INT64_MAX if kind is _T_INTEGER else 0 <= value <= UINT64_MAX
        ):
            number = value
        else:
            return None
        if 0 <= number < 24:
            return bytes((0x02, number))
        return b"\x02" + (_cbor_head(0, number) if number >= 0 else _cbor_head(1, -1 - number))
    elif kind is _T_BOOLEAN:
        if type(value) is bool:
            return b"\x04\xf5" if value else b"\x04\xf4"
    elif kind is _T_OPAQUE:
        if type(value) is bytes:
            return b"\x08" + _cbor_head(2, len(value)) + value
    elif kind is _T_OBJLNK and type(value) is ObjectLink:
        data = f"{value.object_id}:{value.instance_id}".encode("ascii")
        return b"\x63vlo" + _cbor_head(3, len(data)) + data
    return None


_T_STRING = ResourceType.STRING
_T_CORELNK = ResourceType.CORELNK
_T_INTEGER = ResourceType.INTEGER
_T_UNSIGNED = ResourceType.UNSIGNED_INTEGER
_T_FLOAT = ResourceType.FLOAT
_T_BOOLEAN = ResourceType.BOOLEAN
_T_OPAQUE = ResourceType.OPAQUE
_T_TIME = ResourceType.TIME
_T_OBJLNK = ResourceType.OBJLNK

CODEC = SenmlCborCodec()
register(CODEC)
