"""The SenML fast paths (one object instance) agree with the general path, byte for byte and node for node.

SenmlCodec.encode/decode try a fast path first and fall back to the general one; the fast path
must never produce a result the general path would not. These property tests feed both paths
SenML-shaped documents full of near misses (wrong types, odd names, extra fields, float and bool
map keys, duplicates, NaN, tags) and nodes with non-canonical values.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import cbor2
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from _senml_models import ALL_TYPES_ID, KINDS, MODELS, SINGLE_IDS, instances
from spmp.lwm2m.codecs.senml_cbor import CODEC as CBOR
from spmp.lwm2m.codecs.senml_json import CODEC as JSON
from spmp.lwm2m.errors import CodecError
from spmp.lwm2m.model import ResourceType
from spmp.lwm2m.node import MultipleResource, Node, ObjectInstance, Resource, SingleResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import ObjectLink

PATH = Path.of(ALL_TYPES_ID, 0)
BOTH = [JSON, CBOR]

_NAMES = st.sampled_from(
    [
        *("0", "1", "2", "3", "4", "5", "6", "7", "8", "100", "101/0", "102/3", "103/0", "104/1", "105/2"),
        *("106/0", "107/9", "108/0", "0/1", "100", "05", "101/00", "101/65535", "101/", "1/", "", "/30000/0/1"),
        *("200", "9"),
    ]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**65), 2**65)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["66:0", "65535:65535", "AAE", "a", "\ud800", "é", "</1>", "/30000/0/", "/30000/1/"])
    | st.binary(max_size=4)
)


_FIELDS = {
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
_WIRE: dict[ResourceType, st.SearchStrategy[object]] = {
    ResourceType.STRING: st.text(max_size=6),
    ResourceType.CORELNK: st.text(max_size=6),
    ResourceType.INTEGER: st.integers(-(2**63), 2**63 - 1) | st.integers(-(2**64), 2**64),
    ResourceType.UNSIGNED_INTEGER: st.integers(0, 2**64 - 1) | st.integers(-(2**64), 2**65),
    ResourceType.FLOAT: st.floats() | st.integers(-(2**54), 2**54),
    ResourceType.TIME: st.integers(-(2**40), 2**40) | st.floats(),
    ResourceType.BOOLEAN: st.booleans(),
    ResourceType.OPAQUE: st.binary(max_size=6) | st.sampled_from(["AAE", "a", "_-8", "AA==", "+/8"]),
    ResourceType.OBJLNK: st.sampled_from(["66:0", "65535:65535", "1:", "66:00", "x", "70000:1"]),
}


def _json_records(draw: st.DrawFn) -> list[object]:
    """Mostly well-formed records for the all-types object (30000) at /30000/0, with near misses."""
    labels = st.sampled_from(["bn", "n", "v", "vs", "vb", "vd", "vlo", "bt", "t", "x", "x_", "bv"])
    records: list[object] = []
    for index in range(draw(st.integers(0, 6))):
        record: dict[str, object] = {}
        if (index == 0 and draw(st.booleans())) or draw(st.integers(0, 9)) == 0:
            record["bn"] = draw(st.sampled_from(["/30000/0/", "/30000/0/", "/30000/1/", "/30000/0", "", "/3/0/"]))
        kind = draw(st.sampled_from(KINDS))
        rid = SINGLE_IDS[kind]
        instance = draw(st.sampled_from([None, "0", "1", "7", "65534"]))
        name = str(rid) if instance is None else f"{rid + 100}/{instance}"
        record["n"] = name if draw(st.integers(0, 7)) else draw(_NAMES)
        field = _FIELDS[kind] if draw(st.integers(0, 9)) else draw(st.sampled_from(["v", "vs", "vb", "vd", "vlo"]))
        record[field] = draw(_WIRE[kind]) if draw(st.integers(0, 7)) else draw(_SCALARS)
        if draw(st.integers(0, 9)) == 0:
            record[draw(labels)] = draw(_SCALARS)
        if draw(st.integers(0, 19)) == 0:
            record.pop("n")
        records.append(record)
    if draw(st.integers(0, 19)) == 0:
        records.append(draw(_SCALARS))
    return records


@st.composite
def json_payloads(draw: st.DrawFn) -> bytes:
    records = [record.hex() if isinstance(record, bytes) else record for record in _json_records(draw)]
    for record in records:
        if isinstance(record, dict):
            for key, value in list(record.items()):
                if isinstance(value, bytes):  # base64url as SenML JSON writes it, or not quite
                    record[key] = base64.urlsafe_b64encode(value).decode().rstrip("=" if len(value) % 2 else "")
    return json.dumps(records).encode()


_CBOR_KEYS = {"bn": -2, "n": 0, "v": 2, "vs": 3, "vb": 4, "vd": 8, "vlo": "vlo", "bt": -3, "t": 6, "x": 1, "x_": "x_"}


@st.composite
def cbor_payloads(draw: st.DrawFn) -> bytes:
    records = _json_records(draw)
    converted: list[object] = []
    for record in records:
        if not isinstance(record, dict):
            converted.append(record)
            continue
        out: dict[object, object] = {}
        for key, value in record.items():
            label = _CBOR_KEYS.get(key, 1)
            if isinstance(label, int) and draw(st.integers(0, 14)) == 0:
                label = draw(st.sampled_from([float(label), bool(label % 2), str(label)]))
            tagged = draw(st.integers(0, 19)) == 0
            out[label] = cbor2.CBORTag(draw(st.sampled_from([1, 2, 4, 55799])), value) if tagged else value
        converted.append(out)
    try:
        payload = cbor2.dumps(converted, canonical=draw(st.booleans()))
    except (UnicodeEncodeError, cbor2.CBOREncodeError):  # a lone surrogate has no CBOR form
        assume(False)
    if draw(st.integers(0, 9)) == 0:
        payload += draw(st.binary(min_size=1, max_size=3))
    return payload


def _general_agrees(codec: object, payload: bytes, path: Path) -> None:
    assert isinstance(codec, type(JSON) | type(CBOR))
    records = codec.fast_load(payload)
    fast = None if records is None else codec._decode_instance_fast(records, path.ids[0], path.ids[1], MODELS)
    if fast is not None:
        assert codec._decode_general(payload, path, MODELS) == fast
    # and the public entry point behaves as the general path
    try:
        general: object = codec._decode_general(payload, path, MODELS)
    except CodecError as exc:
        with pytest.raises(CodecError) as caught:
            codec.decode(payload, path, MODELS)
        assert (str(caught.value), caught.value.where) == (str(exc), exc.where)
    else:
        assert codec.decode(payload, path, MODELS) == general


@given(payload=json_payloads())
@settings(max_examples=300, deadline=None)
def test_json_fast_decode_agrees(payload: bytes) -> None:
    _general_agrees(JSON, payload, PATH)


@given(payload=cbor_payloads())
@settings(max_examples=300, deadline=None)
def test_cbor_fast_decode_agrees(payload: bytes) -> None:
    _general_agrees(CBOR, payload, PATH)


@pytest.mark.parametrize("codec", BOTH, ids=["json", "cbor"])
@given(instance=st.integers(0, 3).flatmap(instances))
@settings(max_examples=200, deadline=None)
def test_fast_paths_agree_on_valid_instances(codec: object, instance: ObjectInstance) -> None:
    assert isinstance(codec, type(JSON) | type(CBOR))
    path = Path.of(ALL_TYPES_ID, instance.id or 0)
    payload = codec.encode(instance, path, MODELS)
    assert payload == codec._encode_general(instance, path)
    records = codec.fast_load(payload)
    assert records is not None
    assert codec._decode_instance_fast(records, ALL_TYPES_ID, instance.id or 0, MODELS) == instance
    _general_agrees(codec, payload, path)


_ODD_VALUES = _SCALARS | st.sampled_from(
    [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1),  # naive: non-canonical on purpose
        ObjectLink(3, 0),
        float("nan"),
        float("inf"),
        bytearray(b"x"),
        2**64,
        -(2**63) - 1,
    ]
)


@st.composite
def odd_instances(draw: st.DrawFn) -> ObjectInstance:
    resources: dict[int, Resource] = {}
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from([*KINDS, ResourceType.NONE]))
        rid = draw(st.integers(0, 300))
        if draw(st.booleans()):
            resources[rid] = SingleResource(rid, draw(_ODD_VALUES), kind)  # type: ignore[arg-type]
        else:
            values = draw(st.dictionaries(st.integers(0, 5), _ODD_VALUES, max_size=3))
            resources[rid] = MultipleResource(rid, values, kind)  # type: ignore[arg-type]
    return ObjectInstance(draw(st.sampled_from([None, 0])), resources)


def _outcome(call: object) -> tuple[str, object]:
    assert callable(call)
    try:
        return "ok", call()
    except Exception as exc:  # comparing whatever the general path does
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("codec", BOTH, ids=["json", "cbor"])
@given(instance=odd_instances())
@settings(max_examples=400, deadline=None)
def test_fast_encode_agrees_on_odd_nodes(codec: object, instance: Node) -> None:
    assert isinstance(codec, type(JSON) | type(CBOR))
    fast = _outcome(lambda: codec.encode(instance, PATH, MODELS))
    general = _outcome(lambda: codec._encode_general(instance, PATH))
    assert fast == general


# --- TLV: the one-pass instance decoder and encoder agree with the general ones ----------------

from unittest import mock  # noqa: E402

from _models import ALL_TYPES_ID as TLV_ALL_TYPES_ID  # noqa: E402
from _models import MODELS as TLV_MODELS  # noqa: E402
from _models import VALUE_TYPES, single_id, values  # noqa: E402
from spmp.lwm2m.codecs import tlv  # noqa: E402
from spmp.lwm2m.codecs._common import LIMITS  # noqa: E402


def _tlv_entry(kind: int, identifier: int, value: bytes, length_size: int) -> bytes:
    type_byte = kind << 6 | (0x20 if identifier > 0xFF else 0)
    if length_size == 0 and len(value) < 8:
        type_byte |= len(value)
        length = b""
    else:
        length_size = max(length_size, 1)
        type_byte |= length_size << 3
        length = min(len(value), 256**length_size - 1).to_bytes(length_size, "big")
    return bytes((type_byte,)) + identifier.to_bytes(2 if identifier > 0xFF else 1, "big") + length + value


@st.composite
def tlv_payloads(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        kind = 3 if draw(st.integers(0, 7)) else draw(st.integers(0, 2))
        identifier = draw(st.sampled_from([*range(12), 99, 100, 101, 300, 65535]))
        value = draw(st.sampled_from([b"", b"\x00", b"\x01", b"\x02", b"\x7f\xff", b"\x00\x01\x00\x02"]) | st.binary())
        parts.append(_tlv_entry(kind, identifier, value, draw(st.integers(0, 3))))
    payload = b"".join(parts)
    if draw(st.integers(0, 9)) == 0:
        payload = payload[: draw(st.integers(0, len(payload)))]
    return payload


def _tlv_general(payload: bytes) -> tuple[str, object]:
    """What TlvCodec.decode answers at /32000/0 without the one-pass decoder."""
    with mock.patch.object(tlv, "_instance_fast", lambda *_: None):
        return _outcome(lambda: tlv.TlvCodec().decode(payload, Path.of(TLV_ALL_TYPES_ID, 0), TLV_MODELS))


@given(payload=tlv_payloads())
@settings(max_examples=400, deadline=None)
def test_tlv_fast_decode_agrees(payload: bytes) -> None:
    model = TLV_MODELS.object_model(TLV_ALL_TYPES_ID)
    assert model is not None
    fast = tlv._instance_fast(payload, tlv._single_plan(model), 0, LIMITS)
    if fast is not None:
        assert _tlv_general(payload) == ("ok", fast)
    codec = tlv.TlvCodec()
    assert _outcome(lambda: codec.decode(payload, Path.of(TLV_ALL_TYPES_ID, 0), TLV_MODELS)) == _tlv_general(payload)


@st.composite
def tlv_instances(draw: st.DrawFn) -> ObjectInstance:
    resources: dict[int, Resource] = {}
    for kind in draw(st.lists(st.sampled_from(VALUE_TYPES), max_size=5, unique=True)):
        rid = single_id(kind)
        value = draw(values(kind) | _ODD_VALUES) if draw(st.integers(0, 5)) == 0 else draw(values(kind))
        resources[rid] = SingleResource(rid, value, kind)  # type: ignore[arg-type]
    if draw(st.integers(0, 5)) == 0:
        resources[300] = SingleResource(300, "x", ResourceType.STRING)
    return ObjectInstance(0, resources)


@given(instance=tlv_instances())
@settings(max_examples=400, deadline=None)
def test_tlv_fast_encode_agrees(instance: ObjectInstance) -> None:
    fast = tlv._instance_body_fast(instance)
    general = _outcome(lambda: tlv._instance_body_general(instance, "/32000/0"))
    if fast is not None:
        assert general == ("ok", fast)
    path = Path.of(TLV_ALL_TYPES_ID, 0)
    payload = _outcome(lambda: tlv.TlvCodec().encode(instance, path, TLV_MODELS))
    assert payload == general
