"""SenML JSON (content format 110, RFC 8428 §5 with the LwM2M rules of TS Core 1.1 §7.4.3).

Opaque values travel in ``vd`` as base64url without padding, object links in ``vlo`` as
``"OBJECT:INSTANCE"``. The record logic lives in :mod:`spmp.lwm2m.codecs.senml`; this module only
turns bytes into records and back, with the nesting guard that must run before :func:`json.loads`.
"""

from __future__ import annotations

import json
import re

from spmp.lwm2m.codecs import register
from spmp.lwm2m.codecs._common import LIMITS, Limits, check_size
from spmp.lwm2m.codecs.senml import SenmlCodec, opaque_to_base64url
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError

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

    def dump(self, records: list[dict[str, object]]) -> bytes:
        return dump_json(records, self.fmt)

    def opaque(self, data: bytes) -> object:
        return opaque_to_base64url(data)


CODEC = SenmlJsonCodec()
register(CODEC)
