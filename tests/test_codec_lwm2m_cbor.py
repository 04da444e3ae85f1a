"""LwM2M CBOR (11544, TS Core 1.2 §7.4.7): nested maps keyed by ids, path compression with id
arrays, indefinite lengths; malformed input; property tests.

The byte strings below are the forms shown in AVSystem Anjay Lite's unit tests (an implementation
of the TS 1.2 format), not examples quoted from the TS: no copy of the TS 1.2 §7.4.7 examples as
literal bytes could be found. Searched (stored public code, issues and pages, 2026-11):

* code search: "LwM2M CBOR 11544 test vector", "lwm2m_cbor test", "LwM2M CBOR example from
  specification", "LwM2mNodeCborDecoder"; exact strings "application/vnd.oma.lwm2m+cbor",
  "LWM2M_CBOR", "7.4.7", "Table: 7.4.7", "LwM2M_Core-V1_2", "LwM2M CBOR example";
* AVSystem/Anjay tests/core/io/lwm2m_cbor_in.c and lwm2m_cbor_out.c, and Anjay Lite
  tests/anj/io/lwm2m_cbor_encoder.c: the implementers' own cases (objects 13/14, e.g.
  ``{[13, 26, 1]: 42}``), none citing a TS table;
* eclipse-wakaama/wakaama tests/: CBOR (60) and SenML CBOR only, no LwM2M CBOR;
* eclipse-leshan/leshan LwM2mNodeEncoderTest/LwM2mNodeDecoderTest: no LwM2M CBOR (11544) cases;
* the OMA TS Core 1.2 / 1.2.2 HTML is stored as a page, but only its opening is retrievable, not
  §7.4.7; no issue thread quotes its LwM2M CBOR examples.

When the TS text is at hand, add its examples here as literal bytes with the table number.
"""

from __future__ import annotations

import contextlib
import time

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _senml_models import ALL_TYPES_ID, KINDS, MODELS, ids, instances, resources
from spmp.lwm2m.codecs import TimestampedNodes, codec_for
from spmp.lwm2m.codecs.lwm2m_cbor import CODEC
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError
from spmp.lwm2m.model import ResourceType
from spmp.lwm2m.node import MultipleResource, Node, Object, ObjectInstance, ResourceInstance, SingleResource
from spmp.lwm2m.path import Path
from test_codec_senml import DEVICE

INT = ResourceType.INTEGER


def test_registered() -> None:
    assert codec_for(ContentFormat.LWM2M_CBOR) is CODEC


@pytest.mark.parametrize(
    "payload",
    [
        "a1830300091864",  # {[3, 0, 9]: 100}
        "bf03bf00bf091864ffffff",  # {_ 3: {_ 0: {_ 9: 100}}} (indefinite, as Anjay writes)
        "a103a100a1091864",  # {3: {0: {9: 100}}}
        "a18103a18100a181091864",  # {[3]: {[0]: {[9]: 100}}}
        "a1820300a1091864",  # {[3, 0]: {9: 100}}
    ],
)
def test_path_compression_forms(payload: str) -> None:
    assert CODEC.decode(bytes.fromhex(payload), Path.of(3, 0, 9), MODELS) == SingleResource(9, 100, INT)


def test_device_instance() -> None:
    encoded = CODEC.encode(DEVICE, Path.of(3, 0), MODELS)
    assert cbor2.loads(encoded) == {
        (3, 0): {
            0: "Open Mobile Alliance",
            1: "Lightweight M2M Client",
            2: "345000123",
            3: "1.0",
            6: {0: 1, 1: 5},
            7: {0: 3800, 1: 5000},
            8: {0: 125, 1: 900},
            9: 100,
            10: 15,
            11: {0: 0},
            13: 1367491215,
            14: "+02:00",
            16: "U",
        }
    }
    assert encoded.startswith(bytes.fromhex("a1820300ad00744f70656e"))
    assert CODEC.decode(encoded, Path.of(3, 0), MODELS) == DEVICE
    assert CODEC.decode(encoded, Path.of(3), MODELS) == Object(3, {0: DEVICE})


def test_two_resources_mixed_keys() -> None:
    # {[3, 0]: {9: 42}, [3, 0, 10]: 21}
    payload = bytes.fromhex("a2820300a109182a8303000a15")
    assert CODEC.decode(payload, Path.of(3, 0), MODELS) == ObjectInstance(
        0, {9: SingleResource(9, 42, INT), 10: SingleResource(10, 21, INT)}
    )
    assert CODEC.decode_nodes(payload, MODELS) == {
        Path.of(3, 0): ObjectInstance(0, {9: SingleResource(9, 42, INT)}),
        Path.of(3, 0, 10): SingleResource(10, 21, INT),
    }


def test_null_is_an_absent_value_and_paths_are_null_keys() -> None:
    nodes: dict[Path, Node | None] = {Path.of(3, 0, 9): None, Path.of(3, 0, 10): SingleResource(10, 1, INT)}
    assert CODEC.decode_nodes(CODEC.encode_nodes(nodes, MODELS), MODELS) == nodes
    paths = [Path.of(3, 0, 0), Path.of(1, 0), Path.of(3)]
    encoded = CODEC.encode_paths(paths)
    assert cbor2.loads(encoded) == {(3, 0, 0): None, (1, 0): None, 3: None}
    assert CODEC.decode_paths(encoded) == paths


def test_no_timestamps() -> None:
    with pytest.raises(CodecError):
        CODEC.encode_timestamped([TimestampedNodes(None, {}), TimestampedNodes(_when(), {})], MODELS)
    nodes = {Path.of(3, 0, 9): SingleResource(9, 1, INT)}
    encoded = CODEC.encode_timestamped([TimestampedNodes(None, nodes)], MODELS)
    assert CODEC.decode_timestamped(encoded, MODELS) == [TimestampedNodes(None, nodes)]


def _when():  # type: ignore[no-untyped-def]
    from _senml_models import when

    return when(1)


BAD = {
    "not a map": "80",
    "text key": "a16178 01",
    "negative id": "a120a10001",
    "id 65535": "a119ffffa10001",
    "too deep path": "a1850300090000 01",
    "map under instance": "a184030007 00 a10001",
    "array value": "a1830300098101",
    "value at instance": "a182030001",
    "wrong type": "a18303000961 31",
    "multiple without instance": "a183030007 01",
    "unknown object": "a1831927 0f 0000 01",
    "null where a value is needed": "a183030009f6",
    "duplicate leaf": "a2830300090183030009 02",
    "deep": "81" * 1000,
    "indefinite deep": "bf" * 100000,
    "tag": "a1830300 09 d8 20 01",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_codec_error(name: str) -> None:
    with pytest.raises(CodecError):
        CODEC.decode(bytes.fromhex(BAD[name].replace(" ", "")), Path.of(3, 0), MODELS)


@st.composite
def node_at_any_level(draw: st.DrawFn) -> tuple[Path, Node]:
    level = draw(st.integers(1, 4))
    iid = draw(ids)
    if level == 1:
        found = draw(st.lists(instances(), max_size=3))
        # empty maps carry no value, so empty instances below an object are not kept
        return Path.of(ALL_TYPES_ID), Object(ALL_TYPES_ID, {i.id: i for i in found if i.id is not None and i.resources})
    if level == 2:
        return Path.of(ALL_TYPES_ID, iid), draw(instances(iid))
    if level == 3:
        resource = draw(resources())
        return Path.of(ALL_TYPES_ID, iid, resource.id), resource
    resource = draw(resources(draw(st.sampled_from(KINDS)), multiple=True))
    assert isinstance(resource, MultipleResource)
    ri, value = next(iter(resource.instances.items()))
    return Path.of(ALL_TYPES_ID, iid, resource.id, ri), ResourceInstance(ri, value, resource.type)


@given(case=node_at_any_level())
@settings(max_examples=200, deadline=None)
def test_round_trip_every_level_and_type(case: tuple[Path, Node]) -> None:
    path, node = case
    encoded = CODEC.encode(node, path, MODELS)
    assert CODEC.decode(encoded, path, MODELS) == node
    assert CODEC.decode_nodes(encoded, MODELS) == {path: node}


@given(payload=st.binary(max_size=200))
@settings(max_examples=300)
def test_random_bytes_raise_only_codec_error(payload: bytes) -> None:
    _all_decoders(payload)


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.floats() | st.text(max_size=4) | st.binary(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.integers(-2, 70000) | st.lists(st.integers(0, 12), max_size=5).map(tuple), inner, max_size=3
        )
        | st.builds(cbor2.CBORTag, st.sampled_from([1, 4, 24]), inner)
    ),
    max_leaves=15,
)


@given(document=_VALUES)
@settings(max_examples=300)
def test_random_cbor_raises_only_codec_error(document: object) -> None:
    _all_decoders(cbor2.dumps(document))


def _all_decoders(payload: bytes) -> None:
    for call in (
        lambda: CODEC.decode(payload, Path.of(3, 0), MODELS),
        lambda: CODEC.decode_nodes(payload, MODELS),
        lambda: CODEC.decode_timestamped(payload, MODELS),
        lambda: CODEC.decode_paths(payload),
    ):
        with contextlib.suppress(CodecError):
            call()


def test_deep_cbor_fast() -> None:
    started = time.perf_counter()
    with pytest.raises(CodecError):
        CODEC.decode_nodes(b"\xa1\x01" * 100_000, MODELS)
    assert time.perf_counter() - started < 1
