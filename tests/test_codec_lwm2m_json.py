"""LwM2M JSON (11543, legacy 1543): the TS 1.0 examples, malformed input, property tests."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _senml_models import ALL_TYPES_ID, KINDS, MODELS, instances, resources, when
from spmp.lwm2m.codecs import TimestampedNodes, codec_for
from spmp.lwm2m.codecs.lwm2m_json import CODEC
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError
from spmp.lwm2m.model import ResourceType
from spmp.lwm2m.node import Node, ObjectInstance, SingleResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import ObjectLink
from test_codec_senml import DEVICE

F = ResourceType.FLOAT

# TS 1.0.2 §6.4.4 (JSON): Read /3/0, the Device object instance, with "bn".
TS_DEVICE = (
    b'{"bn":"/3/0/","e":[{"n":"0","sv":"Open Mobile Alliance"},{"n":"1","sv":"Lightweight M2M Client"},'
    b'{"n":"2","sv":"345000123"},{"n":"3","sv":"1.0"},{"n":"6/0","v":1},{"n":"6/1","v":5},'
    b'{"n":"7/0","v":3800},{"n":"7/1","v":5000},{"n":"8/0","v":125},{"n":"8/1","v":900},'
    b'{"n":"9","v":100},{"n":"10","v":15},{"n":"11/0","v":0},{"n":"13","v":1367491215},'
    b'{"n":"14","sv":"+02:00"},{"n":"16","sv":"U"}]}'
)
# TS 1.0 §6.4.4 (first edition): the same without "bn", names relative to the request path.
TS_DEVICE_NO_BN = TS_DEVICE.replace(b'"bn":"/3/0/",', b"")
# TS 1.0 §6.4.4: notification of a Temperature resource with historical values, names relative to
# the observed path (here /72/1 → /72/1/2) and times relative to "bt".
TS_HISTORY = b'{"e":[{"n":"2","v":22.4,"t":-5},{"n":"2","v":22.9,"t":-30},{"n":"2","v":24.1,"t":-50}],"bt":25462634}'


def test_registered_with_legacy_number() -> None:
    assert codec_for(ContentFormat.LWM2M_JSON) is CODEC
    assert codec_for(1543) is CODEC


def test_ts_device() -> None:
    assert CODEC.decode(TS_DEVICE, Path.of(3, 0), MODELS) == DEVICE
    assert CODEC.encode(DEVICE, Path.of(3, 0), MODELS) == TS_DEVICE
    assert CODEC.decode(TS_DEVICE_NO_BN, Path.of(3, 0), MODELS) == DEVICE


def test_ts_history() -> None:
    series = CODEC.decode_timestamped(TS_HISTORY, MODELS, base=Path.of(72, 1))
    assert [s.timestamp for s in series] == [when(25462634 - 5), when(25462634 - 30), when(25462634 - 50)]
    assert series[0].nodes == {Path.of(72, 1, 2): SingleResource(2, 22.4, F)}


def test_leshan_timestamped_resource_form() -> None:
    # Leshan LwM2mNodeEncoderTest.json_encode_timestamped_resources.
    path = Path.of(1024, 0, 1)
    series = [TimestampedNodes(when(s), {path: SingleResource(1, v, F)}) for s, v in ((500, 22.9), (510, 22.4))]
    text = CODEC.encode_timestamped(series, MODELS)
    assert text == b'{"bn":"/1024/0/1","e":[{"v":22.9,"t":500},{"v":22.4,"t":510}]}'
    assert CODEC.decode_timestamped(text, MODELS) == series


def test_value_fields() -> None:
    path = Path.of(ALL_TYPES_ID, 0)
    node = ObjectInstance(
        0,
        {
            5: SingleResource(5, b"\x01\x02\x03\x04\x05", ResourceType.OPAQUE),
            7: SingleResource(7, ObjectLink(3, 0), ResourceType.OBJLNK),
            4: SingleResource(4, True, ResourceType.BOOLEAN),
        },
    )
    text = CODEC.encode(node, path, MODELS)
    assert json.loads(text) == {
        "bn": "/30000/0/",
        "e": [{"n": "5", "sv": "AQIDBAU="}, {"n": "7", "ov": "3:0"}, {"n": "4", "bv": True}],
    }
    assert CODEC.decode(text, path, MODELS) == node


BAD = {
    "array root": b"[]",
    "no e": b'{"bn":"/3/0/"}',
    "e not array": b'{"e":{}}',
    "two values": b'{"bn":"/3/0/","e":[{"n":"9","v":1,"sv":"1"}]}',
    "no value": b'{"bn":"/3/0/","e":[{"n":"9"}]}',
    "sv for integer": b'{"bn":"/3/0/","e":[{"n":"9","sv":"1"}]}',
    "float for integer": b'{"bn":"/3/0/","e":[{"n":"9","v":1.5}]}',
    "bad name": b'{"bn":"/3/0/","e":[{"n":"x","v":1}]}',
    "id too large": b'{"bn":"/3/0/","e":[{"n":"65536","v":1}]}',
    "bad base64": b'{"bn":"/30000/0/","e":[{"n":"5","sv":"!!"}]}',
    "trailing garbage": b'{"e":[]}x',
    "duplicate": b'{"bn":"/3/0/","e":[{"n":"9","v":1},{"n":"9","v":2}]}',
    "outside request": b'{"bn":"/4/0/","e":[{"n":"9","v":1}]}',
    "NaN": b'{"bn":"/72/1/","e":[{"n":"2","v":NaN}]}',
    "deep": b'{"e":' + b"[" * 100_000,
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_codec_error(name: str) -> None:
    with pytest.raises(CodecError):
        CODEC.decode(BAD[name], Path.of(3, 0), MODELS)


def test_no_path_lists() -> None:
    with pytest.raises(CodecError):
        CODEC.encode_paths([Path.of(3)])
    with pytest.raises(CodecError):
        CODEC.decode_paths(b"{}")


@given(kind=st.sampled_from(KINDS), data=st.data())
@settings(max_examples=100, deadline=None)
def test_round_trip_every_type_and_level(kind: ResourceType, data: st.DataObject) -> None:
    resource = data.draw(resources(kind))
    cases: list[tuple[Path, Node]] = [(Path.of(ALL_TYPES_ID, 1, resource.id), resource)]
    instance = data.draw(instances(2))
    cases.append((Path.of(ALL_TYPES_ID, 2), instance))
    for path, node in cases:
        assert CODEC.decode(CODEC.encode(node, path, MODELS), path, MODELS) == node
        if not isinstance(node, ObjectInstance) or node.resources:  # no entries, no node
            assert CODEC.decode_nodes(CODEC.encode_nodes({path: node}, MODELS), MODELS) == {path: node}


@given(values=st.lists(st.tuples(st.integers(1, 2**32), st.floats(allow_nan=False, allow_infinity=False)), max_size=4))
@settings(deadline=None)
def test_round_trip_timestamped(values: list[tuple[int, float]]) -> None:
    path = Path.of(72, 1, 2)
    unique = dict(values)
    series = [TimestampedNodes(when(s), {path: SingleResource(2, v, F)}) for s, v in unique.items()]
    assert CODEC.decode_timestamped(CODEC.encode_timestamped(series, MODELS), MODELS) == series


@given(payload=st.binary(max_size=200) | st.text(max_size=100).map(str.encode))
@settings(max_examples=300)
def test_random_input_raises_only_codec_error(payload: bytes) -> None:
    for call in (
        lambda: CODEC.decode(payload, Path.of(3, 0), MODELS),
        lambda: CODEC.decode_nodes(payload, MODELS),
        lambda: CODEC.decode_timestamped(payload, MODELS),
    ):
        with contextlib.suppress(CodecError):
            call()


def test_deep_json_fast() -> None:
    started = time.perf_counter()
    with pytest.raises(CodecError):
        CODEC.decode_nodes(b"[" * 100_000, MODELS)
    assert time.perf_counter() - started < 1
