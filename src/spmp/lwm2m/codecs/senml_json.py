"""SenML JSON (content format 110, RFC 8428 §5 with the LwM2M rules of TS Core 1.1 §7.4.3).

Opaque values travel in ``vd`` as base64url without padding, object links in ``vlo`` as
``"OBJECT:INSTANCE"``. The record logic lives in :mod:`spmp.lwm2m.codecs.senml`; this module only
turns bytes into records and back, with the nesting guard that must run before :func:`json.loads`.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from json.encoder import encode_basestring  # what json.dumps uses for str with ensure_ascii=False

from spmp.lwm2m.codecs import register
from spmp.lwm2m.codecs._common import LIMITS, Limits, check_size
from spmp.lwm2m.codecs.senml import SenmlCodec, opaque_to_base64url
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError
from spmp.lwm2m.model import INT64_MAX, INT64_MIN, UINT64_MAX, ResourceType
from spmp.lwm2m.node import MultipleResource, ObjectInstance, SingleResource
from spmp.lwm2m.values import ObjectLink, Value

FMT = "senml+json"

# Strings are removed before counting brackets; possessive quantifiers keep the scan linear.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"')
_BRACKET = re.compile(r"[\[\]{}]")


def check_json_depth(text: str, limit: int, fmt: str) -> None:
    """Refuse JSON nested deeper than ``limit`` without parsing it (json.loads would recurse)."""
    if text.count("[") + text.count("{") <= limit:
        return
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > limit:
                raise CodecError(f"JSON nesting deeper than {limit}", content_format=fmt)
        else:
            depth -= 1


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not allowed")


def load_json(payload: bytes, fmt: str, limits: Limits) -> object:
    """Bytes → JSON value, raising only CodecError: size, UTF-8, nesting, syntax, NaN/Infinity."""
    check_size(payload, fmt, limits)
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"offset {exc.start}"
        raise CodecError(f"payload is not UTF-8: {exc.reason}", content_format=fmt, where=where) from None
    check_json_depth(text, limits.max_depth, fmt)
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise CodecError(f"invalid JSON: {exc.msg}", content_format=fmt, where=f"offset {exc.pos}") from None
    except (ValueError, RecursionError) as exc:  # huge integers, NaN/Infinity
        raise CodecError(f"invalid JSON: {exc}", content_format=fmt) from None


def dump_json(document: object, fmt: str) -> bytes:
    try:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise CodecError(f"cannot encode: {exc}", content_format=fmt) from None


class SenmlJsonCodec(SenmlCodec):
    content_format = ContentFormat.SENML_JSON
    fmt = FMT
    opaque_type = str

    def __init__(self, limits: Limits = LIMITS) -> None:
        super().__init__(limits)

    def load(self, payload: bytes) -> object:
        return load_json(payload, self.fmt, self.limits)

    def fast_load(self, payload: bytes) -> object | None:
        """json.loads straight away: the fast path accepts only depth 2 and checks every value, and
        anything json.loads refuses (including nesting past the recursion limit) goes to :meth:`load`,
        which runs the nesting guard first and words the error."""
        check_size(payload, self.fmt, self.limits)
        try:
            records: object = json.loads(bytes(payload).decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return None
        return records

    def _encode_instance_fast(self, instance: ObjectInstance, where: str) -> bytes | None:
        """The text json.dumps would make of the records RecordWriter builds, written directly."""
        records: list[str] = []
        for rid, resource in instance.resources.items():
            if type(rid) is not int:
                return None
            if type(resource) is SingleResource:
                field = _json_field(resource.type, resource.value)
                if field is None:
                    return None
                records.append(f'{{"n":"{rid}",{field}}}')
            elif type(resource) is MultipleResource:
                kind = resource.type
                for ri, item in resource.instances.items():
                    field = _json_field(kind, item)
                    if field is None or type(ri) is not int:
                        return None
                    records.append(f'{{"n":"{rid}/{ri}",{field}}}')
            else:
                return None
        if records:
            records[0] = '{"bn":' + encode_basestring(where + "/") + "," + records[0][1:]
        try:
            return ("[" + ",".join(records) + "]").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: the general path words the error
            return None

    def dump(self, records: list[dict[str, object]]) -> bytes:
        return dump_json(records, self.fmt)

    def opaque(self, data: bytes) -> object:
        return opaque_to_base64url(data)


def _json_field(kind: ResourceType, value: Value) -> str | None:
    """``"v":48.5`` etc. as json.dumps writes the value RecordWriter would put there; None if unusual."""
    if kind is _T_FLOAT:
        if type(value) is float and math.isfinite(value):
            return '"v":' + float.__repr__(value)
    elif kind is _T_STRING or kind is _T_CORELNK:
        if type(value) is str:
            return '"vs":' + encode_basestring(value)
    elif kind is _T_INTEGER:
        if type(value) is int and INT64_MIN <= value <= INT64_MAX:
            return '"v":' + int.__repr__(value)
    elif kind is _T_UNSIGNED:
        if type(value) is int and 0 <= value <= UINT64_MAX:
            return '"v":' + int.__repr__(value)
    elif kind is _T_TIME:
        if type(value) is datetime:
            return '"v":' + int.__repr__(int(value.timestamp()))
    elif kind is _T_BOOLEAN:
        if type(value) is bool:
            return '"vb":true' if value else '"vb":false'
    elif kind is _T_OPAQUE:
        if type(value) is bytes:
            return '"vd":"' + opaque_to_base64url(value) + '"'
    elif kind is _T_OBJLNK and type(value) is ObjectLink:
        return f'"vlo":"{value.object_id}:{value.instance_id}"'
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

CODEC = SenmlJsonCodec()
register(CODEC)
