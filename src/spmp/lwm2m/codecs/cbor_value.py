"""application/cbor (content format 60): one resource value as a single CBOR data item (LwM2M 1.1).

TS Core 1.1 §7.4.6 maps LwM2M types to CBOR (RFC 8949) major types:

=================  ====================================================================
Integer            major type 0 or 1
Unsigned Integer   major type 0
Float              major type 7, half (25), single (26) or double (27) precision
Boolean            major type 7, simple values 20 (false) / 21 (true)
String, Corelnk    major type 3 (text string)
Opaque             major type 2 (byte string)
Time               tag 1 (epoch seconds) around an integer, or a bare integer
Objlnk             major type 3, ``"object:instance"``
=================  ====================================================================

We encode Time as tag 1 + integer and Float in single precision when that is exact, else double.
Decoding accepts every form above, definite or indefinite-length strings, integer values for a
Float resource (no information is lost), and a tag-1 float for Time (floored to whole seconds).

The decoder is written by hand rather than with cbor2: the payload is one scalar, so a short
reader that refuses arrays, maps, unknown tags and trailing bytes is simpler to bound than a
general decoder.
"""

from __future__ import annotations

import math
import struct

from spmp.lwm2m.codecs import register
from spmp.lwm2m.codecs._common import LIMITS, Limits, check_size, checked
from spmp.lwm2m.codecs.text import single_value_model, single_value_node, single_value_of
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError, InvalidValueError
from spmp.lwm2m.model import ModelLookup, ResourceType
from spmp.lwm2m.node import Node
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import ObjectLink, Value, time_to_seconds

FMT = "application/cbor"

_UINT, _NINT, _BYTES, _TEXT, _ARRAY, _MAP, _TAG, _SIMPLE = range(8)
_EPOCH_TAG = 1
_MAJOR_NAMES = (
    "unsigned integer",
    "negative integer",
    "byte string",
    "text string",
    "array",
    "map",
    "tag",
    "simple value or float",
)


class _Item:
    """A decoded scalar: its kind (a major type, or ``"float"``/``"bool"``) and Python value."""

    __slots__ = ("kind", "tagged", "value")

    def __init__(self, kind: str, value: object, tagged: bool) -> None:
        self.kind = kind
        self.value = value
        self.tagged = tagged


class _Reader:
    def __init__(self, data: bytes, limits: Limits, where: str) -> None:
        self.data = data
        self.pos = 0
        self.limits = limits
        self.where = where

    def fail(self, message: str, offset: int) -> CodecError:
        return CodecError(message, content_format=FMT, where=f"offset {offset} ({self.where})")

    def head(self) -> tuple[int, int, int | None, int]:
        """Read an initial byte and its argument: (major, additional info, argument or None, offset)."""
        start = self.pos
        if start >= len(self.data):
            raise self.fail("payload ends where a CBOR data item should start", start)
        initial = self.data[start]
        major, info = initial >> 5, initial & 0x1F
        self.pos += 1
        if info < 24:
            return major, info, info, start
        if info == 31:
            return major, info, None, start  # indefinite length, or the "break" stop code
        if info > 27:
            raise self.fail(f"reserved additional information {info} in byte 0x{initial:02x}", start)
        size = 1 << (info - 24)
        end = self.pos + size
        if end > len(self.data):
            raise self.fail(f"{_MAJOR_NAMES[major]} argument of {size} bytes runs past the end", start)
        argument = int.from_bytes(self.data[self.pos : end], "big")
        self.pos = end
        return major, info, argument, start

    def item(self) -> _Item:
        major, info, argument, start = self.head()
        tagged = False
        if major == _TAG:
            if argument != _EPOCH_TAG:
                raise self.fail(f"CBOR tag {argument} is not used by LwM2M single values", start)
            tagged = True
            major, info, argument, start = self.head()
            if major == _TAG:
                raise self.fail("nested CBOR tags are not allowed in a single value", start)
        if major in (_UINT, _NINT):
            if argument is None:
                raise self.fail("an integer cannot have indefinite length", start)
            return _Item("int", argument if major == _UINT else -1 - argument, tagged)
        if major in (_BYTES, _TEXT):
            raw = self.string(major, argument, start)
            if major == _BYTES:
                return _Item("bytes", raw, tagged)
            try:
                return _Item("text", raw.decode("utf-8"), tagged)
            except UnicodeDecodeError as exc:
                raise self.fail(f"text string is not valid UTF-8 ({exc.reason})", start) from None
        if major == _SIMPLE:
            return self.simple(info, argument, start, tagged)
        raise self.fail(f"a single value cannot be a CBOR {_MAJOR_NAMES[major]}", start)

    def string(self, major: int, length: int | None, start: int) -> bytes:
        if length is not None:
            end = self.pos + length
            if end > len(self.data):
                raise self.fail(f"{_MAJOR_NAMES[major]} of {length} bytes runs past the end", start)
            chunk = self.data[self.pos : end]
            self.pos = end
            return chunk
        # Indefinite length: definite-length chunks of the same major type up to a break (0xff).
        chunks: list[bytes] = []
        while True:
            if self.pos < len(self.data) and self.data[self.pos] == 0xFF:
                self.pos += 1
                return b"".join(chunks)
            if len(chunks) >= self.limits.max_records:
                raise self.fail(f"more than {self.limits.max_records} string chunks", self.pos)
            chunk_major, _, chunk_length, chunk_start = self.head()
            if chunk_major != major or chunk_length is None:
                raise self.fail(f"indefinite {_MAJOR_NAMES[major]} holds a chunk that is not one", chunk_start)
            chunks.append(self.string(major, chunk_length, chunk_start))

    def simple(self, info: int, argument: int | None, start: int, tagged: bool) -> _Item:
        if info in (25, 26, 27):
            assert argument is not None
            size = 1 << (info - 24)
            fmt = {2: ">e", 4: ">f", 8: ">d"}[size]
            number: float = struct.unpack(fmt, argument.to_bytes(size, "big"))[0]
            return _Item("float", number, tagged)
        if info == 24 and argument is not None and argument < 32:
            raise self.fail(f"simple value {argument} in two bytes is not well-formed CBOR", start)
        if argument in (20, 21):
            return _Item("bool", argument == 21, tagged)
        if argument is None:
            raise self.fail("unexpected CBOR break code", start)
        names = {22: "null", 23: "undefined"}
        raise self.fail(f"CBOR simple value {names.get(argument, argument)} is not an LwM2M value", start)


def _to_value(item: _Item, kind: ResourceType, where: str) -> Value:
    """Map a decoded CBOR scalar onto the resource type, refusing the pairs the TS does not allow."""
    if item.tagged and kind is not ResourceType.TIME:
        raise CodecError(f"tag 1 (epoch time) is for Time values, not {kind.value}", content_format=FMT, where=where)
    value = item.value
    accepted: tuple[str, ...]
    if kind is ResourceType.INTEGER:
        accepted = ("int",)
    elif kind is ResourceType.UNSIGNED_INTEGER:
        accepted = ("int",)
        if isinstance(value, int) and value < 0:
            raise CodecError(f"negative integer {value} for an Unsigned Integer", content_format=FMT, where=where)
    elif kind is ResourceType.FLOAT:
        accepted = ("float", "int")
    elif kind is ResourceType.BOOLEAN:
        accepted = ("bool",)
    elif kind in (ResourceType.STRING, ResourceType.CORELNK, ResourceType.OBJLNK):
        accepted = ("text",)
    elif kind is ResourceType.OPAQUE:
        accepted = ("bytes",)
    elif kind is ResourceType.TIME:
        accepted = ("int", "float") if item.tagged else ("int",)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise CodecError(f"epoch time {value} is not a number of seconds", content_format=FMT, where=where)
            value = math.floor(value)  # Time has whole-second resolution
    else:
        raise CodecError(f"type {kind.value} has no value", content_format=FMT, where=where)
    if item.kind not in accepted:
        raise CodecError(f"{kind.value} value cannot be a CBOR {item.kind}", content_format=FMT, where=where)
    if kind is ResourceType.OBJLNK:
        assert isinstance(value, str)
        try:
            return ObjectLink.parse(value)
        except InvalidValueError as exc:
            raise CodecError(exc.reason, content_format=FMT, where=where) from None
    return checked(value, kind, FMT, where)


def _head(major: int, argument: int) -> bytes:
    """The shortest initial byte(s) for a major type and argument (RFC 8949 preferred serialization)."""
    top = major << 5
    if argument < 24:
        return bytes((top | argument,))
    if argument <= 0xFF:
        return bytes((top | 24, argument))
    if argument <= 0xFFFF:
        return bytes((top | 25,)) + argument.to_bytes(2, "big")
    if argument <= 0xFFFFFFFF:
        return bytes((top | 26,)) + argument.to_bytes(4, "big")
    return bytes((top | 27,)) + argument.to_bytes(8, "big")


def _integer(number: int) -> bytes:
    return _head(_UINT, number) if number >= 0 else _head(_NINT, -1 - number)


def _float(number: float) -> bytes:
    try:
        single = struct.pack(">f", number)
    except OverflowError:
        single = b""
    if single and struct.unpack(">f", single)[0] == number:
        return b"\xfa" + single
    return b"\xfb" + struct.pack(">d", number)


def _encode_value(value: Value, kind: ResourceType, where: str) -> bytes:
    if kind in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER):
        assert isinstance(value, int)
        return _integer(value)
    if kind is ResourceType.FLOAT:
        assert isinstance(value, float)
        return _float(value)
    if kind is ResourceType.BOOLEAN:
        return b"\xf5" if value else b"\xf4"
    if kind is ResourceType.OPAQUE:
        assert isinstance(value, bytes)
        return _head(_BYTES, len(value)) + value
    if kind is ResourceType.TIME:
        assert not isinstance(value, str | bytes | float | ObjectLink | int)
        return bytes((0xC0 | _EPOCH_TAG,)) + _integer(time_to_seconds(value))
    try:
        raw = str(value).encode("utf-8")  # String, Corelnk, and Objlnk as "object:instance"
    except UnicodeEncodeError as exc:
        raise CodecError(
            f"string has no UTF-8 form at character {exc.start}", content_format=FMT, where=where
        ) from None
    return _head(_TEXT, len(raw)) + raw


class CborValueCodec:
    """application/cbor: a single resource or resource-instance value as one CBOR data item."""

    content_format = ContentFormat.CBOR

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.limits = limits

    def encode(self, node: Node, path: Path, models: ModelLookup) -> bytes:
        value, kind = single_value_of(node, path, FMT)
        return _encode_value(value, kind, str(path))

    def decode(self, payload: bytes, path: Path, models: ModelLookup) -> Node:
        check_size(payload, FMT, self.limits)
        model = single_value_model(path, models, FMT)
        reader = _Reader(bytes(payload), self.limits, str(path))
        item = reader.item()
        if reader.pos != len(reader.data):
            raise reader.fail(f"{len(reader.data) - reader.pos} bytes follow the single CBOR data item", reader.pos)
        return single_value_node(_to_value(item, model.type, str(path)), model, path)


register(CborValueCodec())
