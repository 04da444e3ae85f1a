"""The notification fast path: decode common notifications straight to telemetry rows.

The general path (:meth:`ObservationManager._decode_series`) decodes a payload into the node tree with
the client's model and flattens it into :class:`~spmp.store.TelemetryPoint` s. That is right for every
payload but costs a model look-up, a node tree and a point object per value. A server ingesting 10k
notifications/s mostly sees the same few shapes, so an observation keeps a :class:`DecodePlan`, built
once per (registration model, content format), that turns those shapes into rows
``(endpoint, path, epoch ms, type name, value)`` directly:

* plain text (0) at a single-value resource path: Float, Integer, Unsigned Integer, Boolean, String;
* TLV (11542) at an ``/o/i`` path of single-value resources (the codec's own one-pass reader);
* SenML CBOR (112) without time fields whose records carry ``bn``/``n`` and one of ``v``/``vs``/``vb``
  for single-value resources or resource instances (names resolved once per plan).

Anything else, and anything a fast reader is not sure about (surrounding whitespace, NaN, a value of
the wrong CBOR type, an unknown resource, a duplicate name, time fields...), returns None and the
caller takes the general path, which also words the error. So the fast path stores exactly what the
general path stores, or defers to it; ``tests/test_server_fastpath.py`` checks that property.
"""

from __future__ import annotations

import math
from typing import Final

from spmp.lwm2m.codecs._common import LIMITS
from spmp.lwm2m.codecs.senml_cbor import SenmlCborCodec
from spmp.lwm2m.codecs.tlv import _instance_fast, _single_plan, _SinglePlan
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import Lwm2mError
from spmp.lwm2m.model import INT64_MAX, INT64_MIN, UINT64_MAX, ModelLookup, ResourceType
from spmp.lwm2m.node import SingleResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import ObjectLink, time_to_seconds
from spmp.store import TelemetryValue

__all__ = ["DecodePlan", "TelemetryRow", "plan_for"]

TelemetryRow = tuple[str, str, int, str, TelemetryValue]
"""(endpoint, path, epoch milliseconds, LwM2M type name, value)."""

_FLOAT: Final = ResourceType.FLOAT
_INTEGER: Final = ResourceType.INTEGER
_UNSIGNED: Final = ResourceType.UNSIGNED_INTEGER
_BOOLEAN: Final = ResourceType.BOOLEAN
_STRING: Final = ResourceType.STRING
_CORELNK: Final = ResourceType.CORELNK
_TEXT_KINDS: Final = frozenset({_FLOAT, _INTEGER, _UNSIGNED, _BOOLEAN, _STRING, _CORELNK})
_FLOAT_CHARS: Final = b"0123456789+-.eE"
_DIGITS: Final = b"0123456789"
_MAX_PAYLOAD: Final = LIMITS.max_payload_bytes
_SENML: Final = SenmlCborCodec()
_MAX_NAMES: Final = 512
"""SenML names remembered per plan (a client's notifications name the same few paths again and again)."""

_GENERAL, _TEXT, _TLV, _SENML_CBOR = -1, 0, 1, 2
_UNRESOLVED: Final[tuple[str, ResourceType]] = ("", ResourceType.NONE)


class DecodePlan:
    """How one observation's notifications in one content format become rows; see the module docstring."""

    __slots__ = ("fmt", "kind", "model", "names", "path", "prefix", "rtype", "tlv", "type_name")

    def __init__(self, model: ModelLookup, fmt: int, kind: int) -> None:
        self.model = model
        self.fmt = fmt
        self.kind = kind
        self.path = ""
        self.type_name = ""
        self.rtype: ResourceType = ResourceType.NONE
        self.prefix = ""
        self.tlv: _SinglePlan = {}
        self.names: dict[str, tuple[str, ResourceType] | None] = {}

    def rows(self, payload: bytes, endpoint: str, now_ms: int, out: list[TelemetryRow]) -> bool:
        """Append the rows of ``payload`` to ``out`` and return True, or return False (out untouched)
        when the general path must decide."""
        kind = self.kind
        if kind == _GENERAL:
            return False
        if kind == _TEXT:
            value = _text_value(payload, self.rtype)
            if value is None:
                return False
            out.append((endpoint, self.path, now_ms, self.type_name, value))
            return True
        if kind == _TLV:
            return self._tlv_rows(payload, endpoint, now_ms, out)
        return self._senml_rows(payload, endpoint, now_ms, out)

    def _tlv_rows(self, payload: bytes, endpoint: str, now_ms: int, out: list[TelemetryRow]) -> bool:
        if len(payload) > _MAX_PAYLOAD:
            return False
        instance = _instance_fast(bytes(payload), self.tlv, 0, LIMITS)
        if instance is None:
            return False
        prefix = self.prefix
        for rid, resource in instance.resources.items():
            assert isinstance(resource, SingleResource)
            value = resource.value
            if isinstance(value, ObjectLink):
                value = str(value)
            elif not isinstance(value, int | float | str | bytes):
                value = time_to_seconds(value)
            out.append((endpoint, prefix + str(rid), now_ms, resource.type.value, value))
        return True

    def _senml_rows(self, payload: bytes, endpoint: str, now_ms: int, out: list[TelemetryRow]) -> bool:
        if len(payload) > _MAX_PAYLOAD:
            return False
        records = _SENML.fast_load(payload)
        if type(records) is not list or not records:
            return False
        rows: list[TelemetryRow] = []
        seen: set[str] = set()
        names = self.names
        base = ""
        for record in records:
            if type(record) is not dict:
                return False
            name = ""
            field = -1
            value: object = None
            for key, item in record.items():
                if key == -2:
                    if type(item) is not str:
                        return False
                    base = item
                elif key == 0:
                    if type(item) is not str:
                        return False
                    name = item
                elif key in (2, 3, 4) and field < 0:
                    field = key
                    value = item
                else:
                    return False  # time fields, other value fields, a second value, unknown keys
            if field < 0:
                return False
            full = base + name
            if full in seen:
                return False
            seen.add(full)
            target = names.get(full, _UNRESOLVED)
            if target is _UNRESOLVED:
                target = self._resolve(full)
            if target is None:
                return False
            type_name, rtype = target
            kind = type(value)
            if rtype is _FLOAT:
                if field != 2 or kind is not float or not math.isfinite(value):  # type: ignore[arg-type]
                    return False
            elif rtype is _INTEGER:
                if field != 2 or kind is not int or not INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
                    return False
            elif rtype is _UNSIGNED:
                if field != 2 or kind is not int or not 0 <= value <= UINT64_MAX:  # type: ignore[operator]
                    return False
            elif rtype is _BOOLEAN:
                if field != 4 or kind is not bool:
                    return False
            elif field != 3 or kind is not str:  # String, Corelnk
                return False
            rows.append((endpoint, full, now_ms, type_name, value))  # type: ignore[arg-type]
        out.extend(rows)
        return True

    def _resolve(self, name: str) -> tuple[str, ResourceType] | None:
        """The type of the value a SenML name holds, when the fast path can take it (else None); cached."""
        names = self.names
        if len(names) >= _MAX_NAMES:
            names.clear()
        target: tuple[str, ResourceType] | None = None
        try:
            path = Path.parse(name)
        except (Lwm2mError, ValueError):
            path = None
        if path is not None and str(path) == name:
            rtype = _value_type(self.model, path)
            if rtype is not None:
                target = (rtype.value, rtype)
        names[name] = target
        return target


def _value_type(model: ModelLookup, path: Path) -> ResourceType | None:
    """The type of the single value at ``path`` (a single resource or an instance of a multiple one),
    if it is one the fast readers handle."""
    if path.object_id is None or path.resource_id is None:
        return None
    object_model = model.object_model(path.object_id)
    resource = None if object_model is None else object_model.resource(path.resource_id)
    if resource is None or resource.type not in _TEXT_KINDS:
        return None
    if path.is_resource and not resource.multiple:
        return resource.type
    if path.is_resource_instance and resource.multiple:
        return resource.type
    return None


def _text_value(payload: bytes, rtype: ResourceType) -> TelemetryValue | None:
    """The value of a plain-text payload, or None when the general reader must decide."""
    size = len(payload)
    if rtype is _FLOAT:
        if not 0 < size <= 64 or payload.translate(None, _FLOAT_CHARS):
            return None
        try:
            number = float(payload)
        except ValueError:
            return None
        return None if math.isinf(number) else number
    if rtype is _INTEGER or rtype is _UNSIGNED:
        body = payload[1:] if payload[:1] in (b"+", b"-") else payload
        if not 0 < len(body) <= 20 or body.translate(None, _DIGITS):
            return None
        integer = int(payload)
        if rtype is _INTEGER:
            return integer if INT64_MIN <= integer <= INT64_MAX else None
        return integer if 0 <= integer <= UINT64_MAX else None
    if rtype is _BOOLEAN:
        if payload == b"1":
            return True
        return False if payload == b"0" else None
    if size > _MAX_PAYLOAD:
        return None
    try:
        return bytes(payload).decode("utf-8")  # String, Corelnk: the text as it is
    except UnicodeDecodeError:
        return None


def plan_for(model: ModelLookup, paths: tuple[Path, ...], composite: bool, fmt: int) -> DecodePlan:
    """The plan for an observation of ``paths`` answered in ``fmt`` (one whose ``rows`` always says
    False when no fast reader fits)."""
    general = DecodePlan(model, fmt, _GENERAL)
    if fmt == ContentFormat.SENML_CBOR:
        return DecodePlan(model, fmt, _SENML_CBOR)
    if composite or len(paths) != 1:
        return general
    path = paths[0]
    if fmt == ContentFormat.TEXT:
        rtype = _value_type(model, path)
        if rtype is None:
            return general
        plan = DecodePlan(model, fmt, _TEXT)
        plan.path = str(path)
        plan.rtype = rtype
        plan.type_name = rtype.value
        return plan
    if fmt in (ContentFormat.TLV, ContentFormat.OLD_TLV) and path.is_object_instance:
        assert path.object_id is not None
        object_model = model.object_model(path.object_id)
        if object_model is None:
            return general
        plan = DecodePlan(model, fmt, _TLV)
        plan.tlv = _single_plan(object_model)
        plan.prefix = f"{path}/"
        return plan
    return general
