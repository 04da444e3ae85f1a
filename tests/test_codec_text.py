"""Single-value formats: text/plain (0), application/octet-stream (42) and application/cbor (60)."""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _models import ALL_TYPES_ID, MODELS, VALUE_TYPES, multiple_id, single_id, values
from spmp.lwm2m.codecs import codec_for
from spmp.lwm2m.codecs._common import Limits
from spmp.lwm2m.codecs.cbor_value import CborValueCodec
from spmp.lwm2m.codecs.opaque import OpaqueCodec
from spmp.lwm2m.codecs.text import TextCodec
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError, UnsupportedContentFormatError
from spmp.lwm2m.model import ResourceType
from spmp.lwm2m.node import MultipleResource, Node, ResourceInstance, SingleResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import ObjectLink, Value

TEXT, OPAQUE, CBOR = TextCodec(), OpaqueCodec(), CborValueCodec()
OPAQUE_T = ResourceType.OPAQUE


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def single_path(kind: ResourceType) -> Path:
    return Path.of(ALL_TYPES_ID, 0, single_id(kind))


def instance_path(kind: ResourceType, instance_id: int = 3) -> Path:
    return Path.of(ALL_TYPES_ID, 0, multiple_id(kind), instance_id)


def test_registered() -> None:
    assert isinstance(codec_for(ContentFormat.TEXT), TextCodec)
    assert isinstance(codec_for(ContentFormat.OPAQUE), OpaqueCodec)
    assert isinstance(codec_for(ContentFormat.CBOR), CborValueCodec)


# --------------------------------------------------------------------------- text/plain


def test_ts_plain_text_example() -> None:
    # TS Core §7.4.1 (Plain Text): "GET /3/0/0" answers "Open Mobile Alliance".
    path = Path.parse("/3/0/0")
    node = TEXT.decode(b"Open Mobile Alliance", path, MODELS)
    assert node == SingleResource(0, "Open Mobile Alliance", ResourceType.STRING)
    assert TEXT.encode(node, path, MODELS) == b"Open Mobile Alliance"


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        (ResourceType.INTEGER, b"-42", -42),
        (ResourceType.INTEGER, b"9223372036854775807", 2**63 - 1),
        (ResourceType.UNSIGNED_INTEGER, b"18446744073709551615", 2**64 - 1),
        (ResourceType.FLOAT, b"3.5", 3.5),
        (ResourceType.FLOAT, b"25", 25.0),
        (ResourceType.FLOAT, b"1e+20", 1e20),
        (ResourceType.BOOLEAN, b"1", True),
        (ResourceType.BOOLEAN, b"0", False),
        (ResourceType.TIME, b"1367491215", datetime(2013, 5, 2, 10, 40, 15, tzinfo=UTC)),
        (ResourceType.OBJLNK, b"66:0", ObjectLink(66, 0)),
        (ResourceType.OBJLNK, b"65535:65535", ObjectLink(65535, 65535)),
        (ResourceType.STRING, "Zürich ✓".encode(), "Zürich ✓"),
        (ResourceType.STRING, b"", ""),
        (ResourceType.CORELNK, b"</3/0>;ver=1.1", "</3/0>;ver=1.1"),
        (ResourceType.OPAQUE, b"AAH/", b"\x00\x01\xff"),  # base64, RFC 4648 §4
    ],
)
def test_text_forms(kind: ResourceType, text: bytes, value: Value) -> None:
    node = SingleResource(single_id(kind), value, kind)
    assert TEXT.decode(text, single_path(kind), MODELS) == node
    assert TEXT.encode(node, single_path(kind), MODELS) == text


def test_text_resource_instance() -> None:
    path = instance_path(ResourceType.INTEGER, 7)
    node = TEXT.decode(b"12", path, MODELS)
    assert node == ResourceInstance(7, 12, ResourceType.INTEGER)
    assert TEXT.encode(node, path, MODELS) == b"12"


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        (ResourceType.STRING, b"\xc3\x28", "invalid UTF-8"),
        (ResourceType.STRING, b"ab\xff", "offset 2"),
        (ResourceType.INTEGER, b"12a", "not a decimal integer"),
        (ResourceType.INTEGER, b"", "not a decimal integer"),
        (ResourceType.INTEGER, b"9223372036854775808", "64 bits"),
        (ResourceType.UNSIGNED_INTEGER, b"-1", "outside"),
        (ResourceType.FLOAT, b"nan", "not a decimal number"),
        (ResourceType.FLOAT, b"1e999", "overflows"),
        (ResourceType.BOOLEAN, b"true", "'0' or '1'"),
        (ResourceType.BOOLEAN, b"2", "'0' or '1'"),
        (ResourceType.OBJLNK, b"66", "OBJECT:INSTANCE"),
        (ResourceType.OBJLNK, b"70000:0", "not in 0..65535"),
        (ResourceType.OPAQUE, b"not base64!", "cannot read"),
        (ResourceType.TIME, b"99999999999999999", "outside the representable range"),
    ],
)
def test_text_errors(kind: ResourceType, text: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        TEXT.decode(text, single_path(kind), MODELS)


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("/3/0", UnsupportedContentFormatError, "not a resource path"),
        ("/3", UnsupportedContentFormatError, "not a resource path"),
        ("/3/0/6", UnsupportedContentFormatError, "is multiple"),
        ("/3/0/9/0", CodecError, "single and has no instances"),
        ("/3/0/4", CodecError, "executable"),
        ("/3/0/99", CodecError, "has no resource 99"),
        ("/4242/0/0", CodecError, "object 4242 has no model"),
    ],
)
def test_single_value_paths(path: str, error: type[Exception], message: str) -> None:
    for codec in (TEXT, OPAQUE, CBOR):
        with pytest.raises(error, match=message):
            codec.decode(b"1", Path.parse(path), MODELS)


@pytest.mark.parametrize(
    ("node", "path"),
    [
        (SingleResource(1, "x", ResourceType.STRING), "/3/0/0"),
        (MultipleResource(6, {0: 1}, ResourceType.INTEGER), "/3/0/6"),
        (SingleResource(6, 1, ResourceType.INTEGER), "/3/0/6/0"),
        (ResourceInstance(1, 1, ResourceType.INTEGER), "/3/0/6/0"),
        (SingleResource(0, "x", ResourceType.STRING), "/3/0"),
    ],
)
def test_single_value_encode_refuses_other_nodes(node: Node, path: str) -> None:
    for codec in (TEXT, OPAQUE, CBOR):
        with pytest.raises(UnsupportedContentFormatError):
            codec.encode(node, Path.parse(path), MODELS)


def test_text_encode_errors() -> None:
    float_path = single_path(ResourceType.FLOAT)
    with pytest.raises(CodecError, match="no text form"):
        TEXT.encode(SingleResource(float_path.resource_id or 0, math.inf, ResourceType.FLOAT), float_path, MODELS)
    with pytest.raises(CodecError, match="no UTF-8 form"):
        TEXT.encode(SingleResource(0, "\udc00", ResourceType.STRING), Path.parse("/3/0/0"), MODELS)
    with pytest.raises(CodecError, match="not a valid Integer"):
        TEXT.encode(SingleResource(9, "100", ResourceType.INTEGER), Path.parse("/3/0/9"), MODELS)


def test_payload_limit() -> None:
    for codec in (TextCodec(Limits(max_payload_bytes=4)), OpaqueCodec(Limits(max_payload_bytes=4))):
        with pytest.raises(CodecError, match="exceeds the 4-byte limit"):
            codec.decode(b"12345", single_path(OPAQUE_T), MODELS)


# --------------------------------------------------------------------------- application/octet-stream


def test_opaque_single_and_instance() -> None:
    raw = bytes(range(256))
    single = SingleResource(single_id(OPAQUE_T), raw, OPAQUE_T)
    assert OPAQUE.decode(raw, single_path(OPAQUE_T), MODELS) == single
    assert OPAQUE.encode(single, single_path(OPAQUE_T), MODELS) == raw
    item = ResourceInstance(3, b"", OPAQUE_T)
    assert OPAQUE.decode(b"", instance_path(OPAQUE_T), MODELS) == item
    assert OPAQUE.encode(item, instance_path(OPAQUE_T), MODELS) == b""


def test_opaque_refuses_other_types() -> None:
    with pytest.raises(UnsupportedContentFormatError, match="Opaque values only"):
        OPAQUE.decode(b"x", Path.parse("/3/0/0"), MODELS)
    with pytest.raises(UnsupportedContentFormatError, match="Opaque values only"):
        OPAQUE.encode(SingleResource(0, "x", ResourceType.STRING), Path.parse("/3/0/0"), MODELS)


# --------------------------------------------------------------------------- application/cbor


@pytest.mark.parametrize(
    ("kind", "cbor", "value"),
    [
        (ResourceType.INTEGER, "0a", 10),
        (ResourceType.INTEGER, "20", -1),
        (ResourceType.INTEGER, "19 03e8", 1000),
        (ResourceType.INTEGER, "3b 7fffffffffffffff", -(2**63)),
        (ResourceType.UNSIGNED_INTEGER, "1b ffffffffffffffff", 2**64 - 1),
        (ResourceType.FLOAT, "fa 3fc00000", 1.5),
        (ResourceType.FLOAT, "fb 3fb999999999999a", 0.1),
        (ResourceType.BOOLEAN, "f5", True),
        (ResourceType.BOOLEAN, "f4", False),
        (ResourceType.STRING, "63 616263", "abc"),
        (ResourceType.STRING, "78 18" + "61" * 24, "a" * 24),
        (ResourceType.CORELNK, "64 3c313e3b", "<1>;"),
        (ResourceType.OPAQUE, "43 0001ff", b"\x00\x01\xff"),
        (ResourceType.TIME, "c1 1a 5182428f", datetime(2013, 5, 2, 10, 40, 15, tzinfo=UTC)),  # tag 1, epoch seconds
        (ResourceType.OBJLNK, "64 36363a30", ObjectLink(66, 0)),
    ],
)
def test_cbor_encodings(kind: ResourceType, cbor: str, value: Value) -> None:
    node = SingleResource(single_id(kind), value, kind)
    assert CBOR.decode(h(cbor), single_path(kind), MODELS) == node
    assert CBOR.encode(node, single_path(kind), MODELS) == h(cbor)


@pytest.mark.parametrize(
    ("kind", "cbor", "value"),
    [
        (ResourceType.FLOAT, "f9 3e00", 1.5),  # half precision
        (ResourceType.FLOAT, "f9 7c00", math.inf),
        (ResourceType.FLOAT, "18 19", 25.0),  # an integer for a Float loses nothing
        (ResourceType.INTEGER, "18 0a", 10),  # not the shortest form, still well-formed
        (ResourceType.TIME, "1a 5182428f", datetime(2013, 5, 2, 10, 40, 15, tzinfo=UTC)),  # untagged
        (ResourceType.TIME, "c1 fb 41d4609091e00000", datetime(2013, 5, 2, 10, 39, 3, tzinfo=UTC)),  # float, floored
        (ResourceType.STRING, "7f 62 6162 61 63 ff", "abc"),  # indefinite length
        (ResourceType.OPAQUE, "5f ff", b""),
    ],
)
def test_cbor_accepted_variants(kind: ResourceType, cbor: str, value: Value) -> None:
    assert CBOR.decode(h(cbor), single_path(kind), MODELS) == SingleResource(single_id(kind), value, kind)


@pytest.mark.parametrize(
    ("kind", "cbor", "message"),
    [
        (ResourceType.INTEGER, "", "payload ends"),
        (ResourceType.INTEGER, "19 03", "runs past the end"),
        (ResourceType.INTEGER, "0a 0a", "1 bytes follow"),
        (ResourceType.INTEGER, "1c", "reserved additional information"),
        (ResourceType.INTEGER, "1f", "indefinite length"),
        (ResourceType.INTEGER, "80", "cannot be a CBOR array"),
        (ResourceType.INTEGER, "a0", "cannot be a CBOR map"),
        (ResourceType.INTEGER, "f6", "null"),
        (ResourceType.INTEGER, "f7", "undefined"),
        (ResourceType.INTEGER, "ff", "break"),
        (ResourceType.INTEGER, "f8 14", "not well-formed"),
        (ResourceType.INTEGER, "fa 3fc00000", "Integer value cannot be a CBOR float"),
        (ResourceType.INTEGER, "1b 8000000000000000", "64 bits"),
        (ResourceType.INTEGER, "c2 41 01", "tag 2"),
        (ResourceType.INTEGER, "c1 0a", r"tag 1 \(epoch time\) is for Time values, not Integer"),
        (ResourceType.UNSIGNED_INTEGER, "20", "negative integer"),
        (ResourceType.FLOAT, "1b ffffffffffffffff", "cannot be represented as a float"),
        (ResourceType.BOOLEAN, "01", "Boolean value cannot be a CBOR int"),
        (ResourceType.STRING, "43 616263", "String value cannot be a CBOR bytes"),
        (ResourceType.STRING, "62 c328", "not valid UTF-8"),
        (ResourceType.STRING, "63 6162", "runs past the end"),
        (ResourceType.STRING, "7f 41 61 ff", "holds a chunk that is not one"),
        (ResourceType.STRING, "7f 61 61", "payload ends"),
        (ResourceType.OPAQUE, "63 616263", "Opaque value cannot be a CBOR text"),
        (ResourceType.TIME, "fa 3fc00000", "Time value cannot be a CBOR float"),
        (ResourceType.TIME, "c1 f9 7e00", "not a number of seconds"),
        (ResourceType.TIME, "c1 c1 00", "nested CBOR tags"),
        (ResourceType.TIME, "1b 7fffffffffffffff", "outside the representable range"),
        (ResourceType.OBJLNK, "63 363666", "OBJECT:INSTANCE"),
        (ResourceType.OBJLNK, "0a", "Objlnk value cannot be a CBOR int"),
    ],
)
def test_cbor_errors(kind: ResourceType, cbor: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        CBOR.decode(h(cbor), single_path(kind), MODELS)


def test_cbor_indefinite_chunks_are_bounded() -> None:
    codec = CborValueCodec(Limits(max_records=3))
    with pytest.raises(CodecError, match="more than 3 string chunks"):
        codec.decode(h("7f" + "6161" * 4 + "ff"), single_path(ResourceType.STRING), MODELS)


def test_cbor_float_width() -> None:
    path = single_path(ResourceType.FLOAT)
    rid = single_id(ResourceType.FLOAT)
    assert CBOR.encode(SingleResource(rid, 1e300, ResourceType.FLOAT), path, MODELS)[:1] == b"\xfb"
    assert CBOR.encode(SingleResource(rid, -2.0, ResourceType.FLOAT), path, MODELS) == h("fa c0000000")


# --------------------------------------------------------------------------- properties

CODECS_BY_KIND = [(codec, kind) for kind in VALUE_TYPES for codec in (TEXT, CBOR)] + [(OPAQUE, OPAQUE_T)]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_round_trip_every_type(data: st.DataObject) -> None:
    for codec, kind in CODECS_BY_KIND:
        value = data.draw(values(kind))
        single = SingleResource(single_id(kind), value, kind)
        assert codec.decode(codec.encode(single, single_path(kind), MODELS), single_path(kind), MODELS) == single
        item = ResourceInstance(3, value, kind)
        assert codec.decode(codec.encode(item, instance_path(kind), MODELS), instance_path(kind), MODELS) == item


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=32), st.sampled_from(VALUE_TYPES), st.booleans())
def test_random_bytes_raise_only_codec_error(payload: bytes, kind: ResourceType, as_instance: bool) -> None:
    path = instance_path(kind) if as_instance else single_path(kind)
    for codec in (TEXT, OPAQUE, CBOR):
        with contextlib.suppress(CodecError):
            codec.decode(payload, path, MODELS)
