"""SenML JSON (110) and SenML CBOR (112): every TS Core 1.1 example of §7.4.3 and §7.4.4 as
literal text and bytes, malformed input, and property tests (round trips, fuzzing)."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _senml_models import ALL_TYPES_ID, KINDS, MODELS, VALUES, ids, instances, resources, when
from spmp.lwm2m.codecs import TimestampedNodes, codec_for, multi_codec_for
from spmp.lwm2m.codecs._common import Limits
from spmp.lwm2m.codecs.senml_cbor import SenmlCborCodec
from spmp.lwm2m.codecs.senml_json import SenmlJsonCodec
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError
from spmp.lwm2m.model import ResourceType
from spmp.lwm2m.node import MultipleResource, Node, Object, ObjectInstance, ResourceInstance, SingleResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import ObjectLink

JSON = multi_codec_for(ContentFormat.SENML_JSON)
CBOR = multi_codec_for(ContentFormat.SENML_CBOR)
BOTH = [JSON, CBOR]
INT, S, F, T, L, B = (
    ResourceType.INTEGER,
    ResourceType.STRING,
    ResourceType.FLOAT,
    ResourceType.TIME,
    ResourceType.OBJLNK,
    ResourceType.BOOLEAN,
)

# --- TS Core 1.1 §7.4.3 SenML JSON examples -------------------------------------------------------

# Table 7.4.3-2: Read /3/0 (Device object instance) in SenML JSON.
TS_DEVICE_JSON = (
    b'[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},{"n":"1","vs":"Lightweight M2M Client"},'
    b'{"n":"2","vs":"345000123"},{"n":"3","vs":"1.0"},{"n":"6/0","v":1},{"n":"6/1","v":5},'
    b'{"n":"7/0","v":3800},{"n":"7/1","v":5000},{"n":"8/0","v":125},{"n":"8/1","v":900},'
    b'{"n":"9","v":100},{"n":"10","v":15},{"n":"11/0","v":0},{"n":"13","v":1367491215},'
    b'{"n":"14","vs":"+02:00"},{"n":"16","vs":"U"}]'
)
# Table 7.4.4-2: the same in SenML CBOR (hex dump of the TS).
TS_DEVICE_CBOR = bytes.fromhex(
    "90a321652f332f302f00613003744f70656e204d6f62696c6520416c6c69616e6365a200613103764c696768747765696768"
    "74204d324d20436c69656e74a20061320369333435303030313233a20061330363312e30a20063362f300201a20063362f31"
    "0205a20063372f3002190ed8a20063372f3102191388a20063382f3002187da20063382f3102190384a2006139021864a200"
    "623130020fa2006431312f300200a200623133021a5182428fa20062313403662b30323a3030a200623136036155"
)
DEVICE = ObjectInstance(
    0,
    {
        0: SingleResource(0, "Open Mobile Alliance", S),
        1: SingleResource(1, "Lightweight M2M Client", S),
        2: SingleResource(2, "345000123", S),
        3: SingleResource(3, "1.0", S),
        6: MultipleResource(6, {0: 1, 1: 5}, INT),
        7: MultipleResource(7, {0: 3800, 1: 5000}, INT),
        8: MultipleResource(8, {0: 125, 1: 900}, INT),
        9: SingleResource(9, 100, INT),
        10: SingleResource(10, 15, INT),
        11: MultipleResource(11, {0: 0}, INT),
        13: SingleResource(13, datetime(2013, 5, 2, 10, 40, 15, tzinfo=UTC), T),
        14: SingleResource(14, "+02:00", S),
        16: SingleResource(16, "U", S),
    },
)

# Table 7.4.3-3: a notification of /72/1/2 with three timestamped values.
TS_TIMESERIES_JSON = (
    b'[{"bn":"/72/","bt":25462634,"n":"1/2","v":22.4,"t":-5},{"n":"1/2","v":22.9,"t":-30},{"n":"1/2","v":24.1,"t":-50}]'
)
# Table 7.4.4-3: the same in SenML CBOR.
TS_TIMESERIES_CBOR = bytes.fromhex(
    "83a521642f37322f221a0184876a0063312f3202fb40366666666666660624"
    "a30063312f3202fb4036e6666666666606381d"
    "a30063312f3202fb40381999999999"
    "9a063831"
)
# Table 7.4.3-4: Read of /65/0 with its object links followed (names relative to bn "/").
TS_OBJLNK_JSON = (
    b'[{"bn":"/","n":"65/0/0/0","vlo":"66:0"},{"n":"65/0/0/1","vlo":"66:1"},'
    b'{"n":"65/0/1","vs":"8613800755500"},{"n":"65/0/2","v":1},'
    b'{"n":"66/0/0","vs":"myService1"},{"n":"66/0/1","vs":"Internet.15.234"},{"n":"66/0/2","vlo":"67:0"},'
    b'{"n":"66/1/0","vs":"myService2"},{"n":"66/1/1","vs":"Internet.15.235"},'
    b'{"n":"66/1/2","vlo":"65535:65535"},{"n":"67/0/0","vs":"85.76.76.84"},{"n":"67/0/1","vs":"85.76.255.255"}]'
)
# Table 7.4.3-5 / 7.4.4-5: Read of the single resource /3/0/0.
TS_SINGLE_JSON = b'[{"bn":"/3/0/0","vs":"Open Mobile Alliance"}]'
TS_SINGLE_CBOR = bytes.fromhex("81a221662f332f302f3003744f70656e204d6f62696c6520416c6c69616e6365")
# Table 7.4.3-6 / 7.4.4-6: Read-Composite request payload (names only).
TS_PATHS_JSON = b'[{"n":"/3/0/0"},{"n":"/3/0/9"},{"n":"/1/0/1"}]'
TS_PATHS_CBOR = bytes.fromhex("83a100662f332f302f30a100662f332f302f39a100662f312f302f31")
# Table 7.4.3-7 / 7.4.4-7: Read-Composite response.
TS_COMPOSITE_JSON = b'[{"n":"/3/0/0","vs":"Open Mobile Alliance"},{"n":"/3/0/9","v":95},{"n":"/1/0/1","v":86400}]'
TS_COMPOSITE_CBOR = bytes.fromhex(
    "83a200662f332f302f3003744f70656e204d6f62696c6520416c6c69616e6365"
    "a200662f332f302f390218"
    "5f"
    "a200662f312f302f31021a00015180"
)
COMPOSITE = {
    Path.of(3, 0, 0): SingleResource(0, "Open Mobile Alliance", S),
    Path.of(3, 0, 9): SingleResource(9, 95, INT),
    Path.of(1, 0, 1): SingleResource(1, 86400, INT),
}
# Table 7.4.3-8 / 7.4.4-8: Write-Composite payload.
TS_WRITE_COMPOSITE_JSON = (
    b'[{"n":"/3311/0/5850","vb":false},{"n":"/3311/1/5850","vb":false},'
    b'{"n":"/3311/2/5851","v":20},{"n":"/3308/0/5900","v":18}]'
)
TS_WRITE_COMPOSITE_CBOR = bytes.fromhex(
    "84a2006c2f333331312f302f3538353004f4a2006c2f333331312f312f3538353004f4"
    "a2006c2f333331312f322f353835310214a2006c2f333330382f302f353930300212"
)
WRITE_COMPOSITE = {
    Path.of(3311, 0, 5850): SingleResource(5850, False, B),
    Path.of(3311, 1, 5850): SingleResource(5850, False, B),
    Path.of(3311, 2, 5851): SingleResource(5851, 20, INT),
    Path.of(3308, 0, 5900): SingleResource(5900, 18, F),
}


def test_registered() -> None:
    assert codec_for(110) is JSON
    assert codec_for(112) is CBOR


def test_ts_device_instance_json_and_cbor() -> None:
    assert JSON.decode(TS_DEVICE_JSON, Path.of(3, 0), MODELS) == DEVICE
    assert CBOR.decode(TS_DEVICE_CBOR, Path.of(3, 0), MODELS) == DEVICE
    # Same JSON text (no whitespace in our output), same CBOR bytes.
    assert JSON.encode(DEVICE, Path.of(3, 0), MODELS) == TS_DEVICE_JSON
    assert CBOR.encode(DEVICE, Path.of(3, 0), MODELS) == TS_DEVICE_CBOR


def test_ts_device_cbor_matches_cbor2_reading() -> None:
    # Cross-check the hex transcription against an independent decoder.
    assert cbor2.loads(TS_DEVICE_CBOR)[0] == {-2: "/3/0/", 0: "0", 3: "Open Mobile Alliance"}


def test_ts_device_decodes_from_object_and_resource_paths() -> None:
    assert JSON.decode(TS_DEVICE_JSON, Path.of(3), MODELS) == Object(3, {0: DEVICE})
    with pytest.raises(CodecError, match="outside"):
        JSON.decode(TS_DEVICE_JSON, Path.of(3, 0, 7), MODELS)


@pytest.mark.parametrize("payload", [TS_TIMESERIES_JSON, TS_TIMESERIES_CBOR])
def test_ts_timeseries(payload: bytes) -> None:
    codec = JSON if payload is TS_TIMESERIES_JSON else CBOR
    series = codec.decode_timestamped(payload, MODELS)
    expected = [(25462634 - 5, 22.4), (25462634 - 30, 22.9), (25462634 - 50, 24.1)]
    assert [s.timestamp for s in series] == [when(t) for t, _ in expected]
    for entry, (_, value) in zip(series, expected, strict=True):
        assert entry.nodes == {Path.of(72): Object(72, {1: ObjectInstance(1, {2: SingleResource(2, value, F)})})}


def test_ts_timeseries_cbor_bytes_are_what_the_ts_shows() -> None:
    assert cbor2.loads(TS_TIMESERIES_CBOR) == [
        {-2: "/72/", -3: 25462634, 0: "1/2", 2: 22.4, 6: -5},
        {0: "1/2", 2: 22.9, 6: -30},
        {0: "1/2", 2: 24.1, 6: -50},
    ]


def test_ts_object_links() -> None:
    nodes = JSON.decode_nodes(TS_OBJLNK_JSON, MODELS)
    # bn "/" names no node, so each record is its own entry.
    assert nodes[Path.of(65, 0, 0, 0)] == ResourceInstance(0, ObjectLink(66, 0), L)
    assert nodes[Path.of(66, 1, 2)] == SingleResource(2, ObjectLink(65535, 65535), L)
    assert nodes[Path.of(67, 0, 1)] == SingleResource(1, "85.76.255.255", S)
    assert len(nodes) == 12
    assert CBOR.decode_nodes(CBOR.encode_nodes(nodes, MODELS), MODELS) == nodes


def test_ts_single_resource() -> None:
    node = SingleResource(0, "Open Mobile Alliance", S)
    assert JSON.encode(node, Path.of(3, 0, 0), MODELS) == TS_SINGLE_JSON
    assert CBOR.encode(node, Path.of(3, 0, 0), MODELS) == TS_SINGLE_CBOR
    assert JSON.decode(TS_SINGLE_JSON, Path.of(3, 0, 0), MODELS) == node
    assert CBOR.decode(TS_SINGLE_CBOR, Path.of(3, 0, 0), MODELS) == node


def test_ts_read_composite_request() -> None:
    paths = [Path.of(3, 0, 0), Path.of(3, 0, 9), Path.of(1, 0, 1)]
    assert JSON.encode_paths(paths) == TS_PATHS_JSON
    assert CBOR.encode_paths(paths) == TS_PATHS_CBOR
    assert JSON.decode_paths(TS_PATHS_JSON) == paths
    assert CBOR.decode_paths(TS_PATHS_CBOR) == paths


def test_ts_read_composite_response() -> None:
    assert JSON.encode_nodes(COMPOSITE, MODELS) == TS_COMPOSITE_JSON
    assert CBOR.encode_nodes(COMPOSITE, MODELS) == TS_COMPOSITE_CBOR
    assert JSON.decode_nodes(TS_COMPOSITE_JSON, MODELS) == COMPOSITE
    assert CBOR.decode_nodes(TS_COMPOSITE_CBOR, MODELS) == COMPOSITE


def test_ts_write_composite() -> None:
    assert JSON.decode_nodes(TS_WRITE_COMPOSITE_JSON, MODELS) == WRITE_COMPOSITE
    assert CBOR.decode_nodes(TS_WRITE_COMPOSITE_CBOR, MODELS) == WRITE_COMPOSITE
    # 18 for a Float is written as a float by us (18.0 / half precision), an integer by the TS.
    assert JSON.decode_nodes(JSON.encode_nodes(WRITE_COMPOSITE, MODELS), MODELS) == WRITE_COMPOSITE


# --- interop forms seen in other implementations ------------------------------------------------


def test_leshan_timestamped_nodes_form() -> None:
    # Leshan's LwM2mNodeEncoderTest.senml_json_encode_timestamped_nodes: bn and bt per instant.
    models_path = Path.of(1024, 0, 0)
    series = [
        TimestampedNodes(when(500000001), {models_path: SingleResource(0, "TestString", S)}),
        TimestampedNodes(
            when(500000002),
            {Path.of(1024, 1): ObjectInstance(1, {2: SingleResource(2, True, B), 1: SingleResource(1, 123.0, F)})},
        ),
    ]
    text = JSON.encode_timestamped(series, MODELS)
    assert json.loads(text) == [
        {"bn": "/1024/0/0", "bt": 500000001, "vs": "TestString"},
        {"bn": "/1024/1/", "bt": 500000002, "n": "2", "vb": True},
        {"n": "1", "v": 123.0},
    ]
    assert JSON.decode_timestamped(text, MODELS) == series
    assert CBOR.decode_timestamped(CBOR.encode_timestamped(series, MODELS), MODELS) == series


def test_wakaama_forms() -> None:
    # Fields in any order, bn without trailing slash joined with an n starting with "/".
    payload = bytes.fromhex("81a321642f322f3300622f30021904d2")
    assert cbor2.loads(payload) == [{-2: "/2/3", 0: "/0", 2: 1234}]
    models_free = CBOR.decode_paths(payload)
    assert models_free == [Path.of(2, 3, 0)]


def test_opaque_is_base64url_without_padding() -> None:
    node = SingleResource(5, b"\xfb\xff", ResourceType.OPAQUE)
    text = JSON.encode(node, Path.of(ALL_TYPES_ID, 0, 5), MODELS)
    assert json.loads(text) == [{"bn": "/30000/0/5", "vd": "-_8"}]
    assert JSON.decode(text, Path.of(ALL_TYPES_ID, 0, 5), MODELS) == node
    # Standard alphabet and padding are tolerated on input.
    assert JSON.decode(b'[{"n":"/30000/0/5","vd":"+/8="}]', Path.of(ALL_TYPES_ID, 0, 5), MODELS) == node


def test_float_encoding_is_shortest_exact() -> None:
    path = Path.of(ALL_TYPES_ID, 0, 3)
    assert CBOR.encode(SingleResource(3, 1.5, F), path, MODELS).endswith(b"\x02\xf9\x3e\x00")
    assert CBOR.encode(SingleResource(3, 100000.0, F), path, MODELS).endswith(b"\x02\xfa\x47\xc3\x50\x00")
    assert CBOR.encode(SingleResource(3, 22.4, F), path, MODELS).endswith(bytes.fromhex("02fb4036666666666666"))


def test_relative_time_counts_back_from_now() -> None:
    payload = b'[{"n":"/72/1/2","v":1.5,"t":-10}]'
    before = time.time()
    (entry,) = JSON.decode_timestamped(payload, MODELS)
    assert entry.timestamp is not None
    assert before - 11 <= entry.timestamp.timestamp() <= time.time() - 9


# --- malformed input ------------------------------------------------------------------------------

BAD_JSON = {
    "not json": b"[{",
    "not utf-8": b'[{"n":"/3/0/9","v":1}]\xff',
    "root object": b'{"n":"/3/0/9","v":1}',
    "record not a map": b"[1]",
    "no value": b'[{"n":"/3/0/9"}]',
    "two values": b'[{"n":"/3/0/9","v":1,"vs":"1"}]',
    "name not a path": b'[{"n":"3/0/9","v":1}]',
    "bn+n overflow": b'[{"bn":"/3/0/9/","n":"1/2","v":1}]',
    "id too large": b'[{"n":"/3/0/65535","v":1}]',
    "long name": b'[{"bn":"/' + b"0" * 100 + b'","n":"1","v":1}]',
    "wrong type": b'[{"n":"/3/0/9","vs":"1"}]',
    "fraction for integer": b'[{"n":"/3/0/9","v":1.5}]',
    "integer too big": b'[{"n":"/3/0/9","v":9223372036854775808}]',
    "NaN": b'[{"n":"/3/0/9","v":NaN}]',
    "Infinity": b'[{"n":"/72/1/2","v":Infinity}]',
    "overflowing float": b'[{"n":"/72/1/2","v":1e999}]',
    "duplicate path": b'[{"n":"/3/0/9","v":1},{"n":"/3/0/9","v":2}]',
    "unknown object": b'[{"n":"/9999/0/0","v":1}]',
    "unknown resource": b'[{"n":"/3/0/99","v":1}]',
    "multiple without instance": b'[{"n":"/3/0/7","v":1}]',
    "single with instance": b'[{"n":"/3/0/9/0","v":1}]',
    "executable": b'[{"n":"/3/0/4","v":1}]',
    "instance-level value": b'[{"n":"/3/0","v":1}]',
    "bad objlnk": b'[{"n":"/66/0/2","vlo":"66"}]',
    "bad base64": b'[{"n":"/30000/0/5","vd":"a"}]',
    "bool v": b'[{"n":"/3/0/9","v":true}]',
    "bt not a number": b'[{"bt":"1","n":"/3/0/9","v":1}]',
    "huge bt": b'[{"bt":1e300,"n":"/3/0/9","v":1}]',
    "must understand": b'[{"n":"/3/0/9","v":1,"x_":1}]',
    "base value": b'[{"n":"/3/0/9","v":1,"bv":1}]',
    "lone surrogate": b'[{"n":"/3/0/14","vs":"\\ud800"}]',
    "huge integer literal": b'[{"n":"/3/0/9","v":' + b"9" * 5000 + b"}]",
}


@pytest.mark.parametrize("name", sorted(BAD_JSON))
def test_bad_json_is_codec_error(name: str) -> None:
    with pytest.raises(CodecError):
        JSON.decode_nodes(BAD_JSON[name], MODELS)


def test_error_names_the_record() -> None:
    with pytest.raises(CodecError) as caught:
        JSON.decode_nodes(b'[{"n":"/3/0/9","v":1},{"n":"/3/0/10","vs":"x"}]', MODELS)
    assert caught.value.where == "record 1"


BAD_CBOR = {
    "truncated": bytes.fromhex("81a2006c2f333331312f302f35383530"),
    "trailing": TS_SINGLE_CBOR + b"\x00",
    "reserved": b"\x1c",
    "lying length": b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff",
    "unsupported tag": bytes.fromhex("81a2006c2f333331312f302f3538353004d820f4"),
    "undefined": bytes.fromhex("81a100f7"),
    "NaN": bytes.fromhex("81a200662f37322f312f3202f97e00"),
    "bad utf-8": bytes.fromhex("81a20062c3280201"),
    "stray break": b"\xff",
    "duplicate key": bytes.fromhex("81a30061660061670201"),
    "float key": bytes.fromhex("81a1f93c0001"),
    "vd as text": bytes.fromhex("81a2006a2f33303030302f302f35086141"),
}


@pytest.mark.parametrize("name", sorted(BAD_CBOR))
def test_bad_cbor_is_codec_error(name: str) -> None:
    with pytest.raises(CodecError):
        CBOR.decode_nodes(BAD_CBOR[name], MODELS)


def test_deep_nesting_is_refused_before_parsing() -> None:
    started = time.perf_counter()
    for payload in (b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'[{"a":' * 50_000):
        with pytest.raises(CodecError, match="nesting"):
            JSON.decode_nodes(payload, MODELS)
    for payload in (b"\x81" * 100_000, b"\x9f" * 100_000, b"\xc4" * 100_000):
        with pytest.raises(CodecError):
            CBOR.decode_nodes(payload, MODELS)
    assert time.perf_counter() - started < 2


def test_limits() -> None:
    small = Limits(max_payload_bytes=40, max_records=2, max_depth=2)
    with pytest.raises(CodecError, match="exceeds"):
        SenmlJsonCodec(small).decode_nodes(TS_COMPOSITE_JSON, MODELS)
    with pytest.raises(CodecError, match="records"):
        SenmlJsonCodec(Limits(max_records=2)).decode_nodes(TS_COMPOSITE_JSON, MODELS)
    with pytest.raises(CodecError, match="items"):
        SenmlCborCodec(Limits(max_records=5)).decode_nodes(TS_COMPOSITE_CBOR, MODELS)
    with pytest.raises(CodecError, match="nesting"):
        SenmlCborCodec(Limits(max_depth=1)).decode_nodes(TS_COMPOSITE_CBOR, MODELS)


def test_indefinite_lengths_are_read() -> None:
    # [_ {_ 0: "/3/0/9", 2: 95}] with an indefinite text name chunked in two.
    payload = bytes.fromhex("9fbf007f622f33642f302f39ff02185fffff")
    assert CBOR.decode_nodes(payload, MODELS) == {Path.of(3, 0, 9): SingleResource(9, 95, INT)}


def test_decimal_fraction_is_read() -> None:
    # 4([-1, 225]) = 22.5 for a Float.
    payload = bytes.fromhex("81a200672f37322f312f3202c4822018e1")
    assert CBOR.decode_nodes(payload, MODELS) == {Path.of(72, 1, 2): SingleResource(2, 22.5, F)}


def test_encoding_errors() -> None:
    with pytest.raises(CodecError):
        JSON.encode(SingleResource(9, 1, INT), Path.of(3, 0, 8), MODELS)
    with pytest.raises(CodecError):
        CBOR.encode(SingleResource(3, float("nan"), F), Path.of(ALL_TYPES_ID, 0, 3), MODELS)
    with pytest.raises(CodecError):
        JSON.encode(SingleResource(0, "\ud800", S), Path.of(3, 0, 0), MODELS)


# --- property tests -------------------------------------------------------------------------------


@st.composite
def node_at_any_level(draw: st.DrawFn) -> tuple[Path, Node]:
    level = draw(st.integers(1, 4))
    iid = draw(ids)
    if level == 1:
        found = draw(st.lists(instances(), max_size=3))
        # empty instances inside an object leave no record behind in SenML
        return Path.of(ALL_TYPES_ID), Object(ALL_TYPES_ID, {i.id: i for i in found if i.id is not None and i.resources})
    if level == 2:
        return Path.of(ALL_TYPES_ID, iid), draw(instances(iid))
    if level == 3:
        resource = draw(resources())
        return Path.of(ALL_TYPES_ID, iid, resource.id), resource
    kind = draw(st.sampled_from(KINDS))
    resource = draw(resources(kind, multiple=True))
    ri = draw(ids)
    return Path.of(ALL_TYPES_ID, iid, resource.id, ri), ResourceInstance(ri, draw(VALUES[kind]), kind)


@pytest.mark.parametrize("codec", BOTH, ids=["json", "cbor"])
@given(case=node_at_any_level())
@settings(max_examples=150, deadline=None)
def test_round_trip_every_level(codec: SenmlJsonCodec, case: tuple[Path, Node]) -> None:
    path, node = case
    assert codec.decode(codec.encode(node, path, MODELS), path, MODELS) == node


@pytest.mark.parametrize("codec", BOTH, ids=["json", "cbor"])
@given(kind=st.sampled_from(KINDS), data=st.data())
@settings(max_examples=100, deadline=None)
def test_round_trip_every_type(codec: SenmlJsonCodec, kind: ResourceType, data: st.DataObject) -> None:
    resource = data.draw(resources(kind))
    path = Path.of(ALL_TYPES_ID, 0, resource.id)
    assert codec.decode(codec.encode(resource, path, MODELS), path, MODELS) == resource


@st.composite
def composites(draw: st.DrawFn) -> dict[Path, Node]:
    out: dict[Path, Node] = {}
    for iid in draw(st.lists(ids, unique=True, max_size=4)):
        if draw(st.booleans()):
            instance = draw(instances(iid))
            if instance.resources:
                out[Path.of(ALL_TYPES_ID, iid)] = instance
        else:
            resource = draw(resources(multiple=False))
            out[Path.of(ALL_TYPES_ID, iid, resource.id)] = resource
    return out


@pytest.mark.parametrize("codec", BOTH, ids=["json", "cbor"])
@given(nodes=composites())
@settings(max_examples=100, deadline=None)
def test_round_trip_composite(codec: SenmlJsonCodec, nodes: dict[Path, Node]) -> None:
    assert codec.decode_nodes(codec.encode_nodes(nodes, MODELS), MODELS) == nodes


@pytest.mark.parametrize("codec", BOTH, ids=["json", "cbor"])
@given(moments=st.lists(st.tuples(st.integers(1, 2**32), composites()), max_size=3), data=st.data())
@settings(max_examples=100, deadline=None)
def test_round_trip_timestamped(
    codec: SenmlJsonCodec, moments: list[tuple[int, dict[Path, Node]]], data: st.DataObject
) -> None:
    seen: set[int] = set()
    series = []
    for seconds, nodes in moments:
        if seconds in seen or not nodes:
            continue
        seen.add(seconds)
        series.append(TimestampedNodes(when(seconds), nodes))
    assert codec.decode_timestamped(codec.encode_timestamped(series, MODELS), MODELS) == series


@given(paths=st.lists(st.lists(ids, max_size=4).map(lambda i: Path(tuple(i))), unique=True, max_size=5))
def test_round_trip_paths(paths: list[Path]) -> None:
    for codec in BOTH:
        assert codec.decode_paths(codec.encode_paths(paths)) == paths


def _decoders(codec: SenmlJsonCodec, payload: bytes) -> None:
    for call in (
        lambda: codec.decode(payload, Path.of(3, 0), MODELS),
        lambda: codec.decode_nodes(payload, MODELS),
        lambda: codec.decode_timestamped(payload, MODELS),
        lambda: codec.decode_paths(payload),
    ):
        with contextlib.suppress(CodecError):
            call()


@given(payload=st.binary(max_size=200))
@settings(max_examples=300)
def test_random_bytes_raise_only_codec_error(payload: bytes) -> None:
    for codec in BOTH:
        _decoders(codec, payload)


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_LABELS = st.sampled_from(["bn", "bt", "n", "t", "v", "vs", "vb", "vd", "vlo", "x", "x_"])
_JSON_VALUES = st.recursive(
    _SCALARS | st.sampled_from(["/3/0/", "/3/0/9", "9", "66:0", "/72/1/2"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_LABELS | st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)


@given(document=_JSON_VALUES)
@settings(max_examples=300)
def test_random_json_raises_only_codec_error(document: object) -> None:
    _decoders(JSON, json.dumps(document).encode())


_CBOR_LABELS = st.sampled_from([-2, -3, 0, 2, 3, 4, 6, 8, "vlo", -5, 1, "x_"])
_CBOR_VALUES = st.recursive(
    _SCALARS | st.binary(max_size=6) | st.sampled_from(["/3/0/", "/3/0/9", "9", "66:0"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_CBOR_LABELS | st.integers(-30, 30), inner, max_size=4)
        | st.builds(cbor2.CBORTag, st.sampled_from([1, 2, 4, 24, 55799]), inner)
    ),
    max_leaves=20,
)


@given(document=_CBOR_VALUES)
@settings(max_examples=300)
def test_random_cbor_raises_only_codec_error(document: object) -> None:
    _decoders(CBOR, cbor2.dumps(document))
