"""Helpers shared by the codecs: model look-ups that fail as CodecError, limits, text forms of values."""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass

from spmp.lwm2m.errors import CodecError, InvalidValueError
from spmp.lwm2m.model import ModelLookup, ObjectModel, ResourceModel, ResourceType
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import ObjectLink, Value, coerce, time_from_seconds, time_to_seconds


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds every decoder enforces so that hostile payloads cannot exhaust memory or time."""

    max_payload_bytes: int = 1 << 20
    """Larger payloads are refused before any parsing (1 MiB; block-wise transfers reassemble first)."""
    max_records: int = 65_536
    """SenML records, TLV entries or CBOR items in one payload."""
    max_depth: int = 16
    """Nesting depth of JSON/CBOR containers."""


LIMITS = Limits()


def check_size(payload: bytes, fmt: str, limits: Limits = LIMITS) -> None:
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise CodecError(f"payload must be bytes, got {type(payload).__name__}", content_format=fmt)
    if len(payload) > limits.max_payload_bytes:
        raise CodecError(
            f"payload of {len(payload)} bytes exceeds the {limits.max_payload_bytes}-byte limit",
            content_format=fmt,
        )


def object_model(models: ModelLookup, object_id: int, fmt: str) -> ObjectModel:
    found = models.object_model(object_id)
    if found is None:
        raise CodecError(f"object {object_id} has no model here", content_format=fmt, where=f"/{object_id}")
    return found


def resource_model(models: ModelLookup, object_id: int, resource_id: int, fmt: str, where: str) -> ResourceModel:
    model = object_model(models, object_id, fmt)
    found = model.resource(resource_id)
    if found is None:
        raise CodecError(
            f"object {object_id} ({model.name}) has no resource {resource_id}", content_format=fmt, where=where
        )
    return found


def model_for_path(models: ModelLookup, path: Path, fmt: str) -> ResourceModel:
    """The resource model a resource or resource-instance path points at."""
    if path.object_id is None or path.resource_id is None:
        raise CodecError(f"path {path} does not name a resource", content_format=fmt, where=str(path))
    return resource_model(models, path.object_id, path.resource_id, fmt, str(path))


def checked(value: object, kind: ResourceType, fmt: str, where: str) -> Value:
    """Coerce a decoded value to its model type, turning value errors into CodecError."""
    try:
        return coerce(value, kind, path=where)
    except InvalidValueError as exc:
        raise CodecError(exc.reason, content_format=fmt, where=where) from None


def value_to_text(value: Value, kind: ResourceType) -> str:
    """The plain-text form (TS Core Appendix C / plain-text format) of a value; Opaque as base64."""
    if kind is ResourceType.BOOLEAN:
        return "1" if value else "0"
    if kind is ResourceType.TIME:
        assert not isinstance(value, str | bytes | ObjectLink | bool | float)
        return str(value if isinstance(value, int) else time_to_seconds(value))
    if kind is ResourceType.FLOAT:
        assert isinstance(value, float | int)
        return float_to_text(float(value))
    if kind is ResourceType.OPAQUE:
        assert isinstance(value, bytes)
        return base64.b64encode(value).decode("ascii")
    return str(value)


def float_to_text(number: float) -> str:
    """Shortest decimal form that reads back to the same double; integers keep no trailing '.0'."""
    if math.isnan(number) or math.isinf(number):
        raise CodecError(f"float {number} has no text form")
    if number.is_integer() and abs(number) < 1e16:
        return str(int(number))
    return repr(number)


def text_to_value(text: str, kind: ResourceType, fmt: str, where: str) -> Value:
    """Parse the plain-text form of a value of type ``kind``; CodecError on anything malformed."""
    try:
        if kind in (ResourceType.STRING, ResourceType.CORELNK):
            return text
        if kind in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.TIME):
            stripped = text.strip()
            body = stripped[1:] if stripped[:1] in "+-" else stripped
            if not body or not body.isascii() or not body.isdigit() or len(body) > 20:
                raise CodecError(f"{text[:40]!r} is not a decimal integer", content_format=fmt, where=where)
            number = int(stripped)
            if kind is ResourceType.TIME:
                return checked(time_from_seconds(number), kind, fmt, where)
            return checked(number, kind, fmt, where)
        if kind is ResourceType.FLOAT:
            stripped = text.strip()
            if len(stripped) > 64 or not stripped or any(c not in "0123456789+-.eE" for c in stripped):
                raise CodecError(f"{text[:40]!r} is not a decimal number", content_format=fmt, where=where)
            parsed = float(stripped)
            if math.isinf(parsed):
                raise CodecError(f"{text[:40]!r} overflows a double", content_format=fmt, where=where)
            return parsed
        if kind is ResourceType.BOOLEAN:
            if text in ("0", "1"):
                return text == "1"
            raise CodecError(f"boolean must be '0' or '1', got {text[:40]!r}", content_format=fmt, where=where)
        if kind is ResourceType.OPAQUE:
            return base64.b64decode(text.encode("ascii"), validate=True)
        if kind is ResourceType.OBJLNK:
            return ObjectLink.parse(text)
    except (ValueError, binascii.Error, UnicodeError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"cannot read {text[:40]!r} as {kind.value}: {exc}", content_format=fmt, where=where) from None
    raise CodecError(f"type {kind.value} has no value to parse", content_format=fmt, where=where)
