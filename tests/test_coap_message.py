"""CoAP message codec: RFC 7252 byte vectors, malformed input, typed options, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spmp.coap.errors import CoapError, CoapMessageError, ResponseError
from spmp.coap.message import (
    Block,
    Code,
    Message,
    Option,
    Request,
    Response,
    Type,
    code_str,
    decode,
    encode,
    uint_bytes,
)

# --- RFC 7252 vectors -------------------------------------------------------------------------------


def test_rfc7252_get_temperature() -> None:
    # RFC 7252 §A-style "GET /temperature", CON, MID 0x7d34, no token: Uri-Path delta 11, length 11.
    data = bytes.fromhex("40017d34") + b"\xbb" + b"temperature"
    m = decode(data)
    assert (m.type, m.code, m.mid, m.token) == (Type.CON, Code.GET, 0x7D34, b"")
    assert m.uri_path == ("temperature",)
    assert m.code is Code.GET
    assert encode(m) == data


def test_rfc7252_piggybacked_content() -> None:
    data = bytes.fromhex("60457d34") + b"\xff" + b"22.3 C"
    m = decode(data)
    assert (m.type, m.code, m.mid, m.payload) == (Type.ACK, Code.CONTENT, 0x7D34, b"22.3 C")
    assert encode(m) == data


def test_token_and_repeated_options() -> None:
    data = bytes.fromhex("4201abcd1234") + b"\xb1a" + b"\x01b" + b"\x41x" + b"\x02y=" + b"\xff!"
    m = decode(data)
    assert m.token == b"\x12\x34"
    assert m.uri_path == ("a", "b")
    assert m.uri_query == ("x", "y=")
    assert m.payload == b"!"
    assert encode(m) == data


def test_extended_delta_and_length() -> None:
    long_uri = "coap://h/" + "p" * 291  # 300 bytes: length nibble 14, extension 300 - 269 = 31
    m = Message(Type.CON, Code.GET, 1, b"", [(Option.PROXY_URI, long_uri.encode()), (Option.SIZE1, b"\x05")])
    data = encode(m)
    # Proxy-Uri: delta 35 -> nibble 13 + 22; length 300 -> nibble 14 + 0x001f.
    assert data[4:8] == bytes([0xDE, 22, 0x00, 0x1F])
    # Size1 (60) after 35: delta 25 -> nibble 13 + 12, length 1.
    assert data[8 + 300 : 8 + 302] == bytes([0xD1, 12])
    back = decode(data)
    assert back.proxy_uri == long_uri
    assert back.size1 == 5
    # Delta 269+ uses the two-byte extension.
    m2 = Message(Type.NON, Code.POST, 2, b"t", [(2000, b"")])
    d2 = encode(m2)
    assert d2[5:8] == bytes([0xE0, 0x06, 0xC3])  # 2000 - 269 = 1731 = 0x06c3
    assert decode(d2).options == [(2000, b"")]


def test_empty_messages() -> None:
    assert decode(bytes.fromhex("60001234")) == Message(Type.ACK, Code.EMPTY, 0x1234)
    assert decode(bytes.fromhex("70001234")).type == Type.RST
    assert decode(bytes.fromhex("40001234")).type == Type.CON  # CoAP ping
    assert encode(Message(Type.RST, 0, 0xFFFF)) == bytes.fromhex("7000ffff")


def test_unknown_code_stays_an_int() -> None:
    m = decode(bytes.fromhex("50470001"))  # 2.07: not named, still a valid response code
    assert m.code == 0x47 and not isinstance(m.code, Code)
    assert code_str(m.code) == "2.07"
    assert encode(m) == bytes.fromhex("50470001")


# --- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason", "mid"),
    [
        (b"", "short header", None),
        (b"\x40\x01\x00", "short header", None),
        (bytes.fromhex("80010001"), "unsupported version 2", None),
        (bytes.fromhex("00010001"), "unsupported version 0", None),
        (bytes.fromhex("49010001") + b"x" * 9, "token length 9", 1),
        (bytes.fromhex("4f010001"), "token length 15", 1),
        (bytes.fromhex("44010002") + b"ab", "truncated token", 2),
        (bytes.fromhex("40010003") + b"\xff", "payload marker with empty payload", 3),
        (bytes.fromhex("40010004") + b"\xf0", "option delta 15 without payload marker", 4),
        (bytes.fromhex("40010005") + b"\x1f", "option length 15", 5),
        (bytes.fromhex("40010006") + b"\xb5ab", "truncated option value", 6),
        (bytes.fromhex("40010007") + b"\xd0", "truncated option header", 7),
        (bytes.fromhex("40010008") + b"\xe0\x01", "truncated option header", 8),
        (bytes.fromhex("40010009") + b"\x1d", "truncated option header", 9),
        (bytes.fromhex("4100000a") + b"x", "empty message with token, options or payload", 10),
        (bytes.fromhex("4000000b") + b"\xff\x01", "empty message with token, options or payload", 11),
        (bytes.fromhex("5000000c"), "empty NON message", 12),
        (bytes.fromhex("7045000d"), "RST carrying a code", 13),
        (bytes.fromhex("6001000e"), "ACK carrying a request", 14),
    ],
)
def test_malformed(data: bytes, reason: str, mid: int | None) -> None:
    with pytest.raises(CoapMessageError) as info:
        decode(data)
    assert info.value.reason == reason
    assert info.value.mid == mid
    if mid is not None:
        assert info.value.message_type is not None


def test_malformed_keeps_token_for_rst() -> None:
    with pytest.raises(CoapMessageError) as info:
        decode(bytes.fromhex("42010007") + b"tk" + b"\xf0")
    assert info.value.token == b"tk"
    assert info.value.message_type == Type.CON


@settings(max_examples=3000)
@given(st.binary(max_size=64))
def test_random_bytes_only_raise_message_error(data: bytes) -> None:
    try:
        m = decode(data)
    except CoapMessageError:
        return
    # Whatever decodes must encode back to the same bytes (the wire form is canonical here).
    assert encode(m) == data


@settings(max_examples=2000)
@given(st.binary(min_size=4, max_size=40).map(lambda b: bytes([0x40 | (b[0] & 0x3F)]) + b[1:]))
def test_random_version1_bytes(data: bytes) -> None:
    try:
        m = decode(data)
    except CoapMessageError as exc:
        assert exc.mid == int.from_bytes(data[2:4], "big")
        return
    assert encode(m) == data


# --- round trips ----------------------------------------------------------------------------------

_options = st.lists(
    st.tuples(st.integers(min_value=0, max_value=65535), st.binary(max_size=300)),
    max_size=8,
).map(lambda opts: sorted(opts, key=lambda o: o[0]))


@st.composite
def messages(draw: st.DrawFn) -> Message:
    mtype = draw(st.sampled_from(list(Type)))
    if mtype == Type.RST:
        code = 0
    elif mtype == Type.ACK:
        code = draw(st.sampled_from([0, *range(64, 256)]))
    elif mtype == Type.NON:
        code = draw(st.integers(min_value=1, max_value=255))
    else:
        code = draw(st.integers(min_value=0, max_value=255))
    mid = draw(st.integers(min_value=0, max_value=0xFFFF))
    if code == 0:
        return Message(mtype, code, mid)
    return Message(
        mtype,
        code,
        mid,
        draw(st.binary(max_size=8)),
        draw(_options),
        draw(st.binary(max_size=200)),
    )


@settings(max_examples=1500)
@given(messages())
def test_round_trip(m: Message) -> None:
    assert decode(encode(m)) == m


def test_encode_sorts_unsorted_options_stably() -> None:
    m = Message(Type.CON, Code.GET, 1, b"", [(15, b"q1"), (11, b"a"), (15, b"q2"), (11, b"b")])
    back = decode(encode(m))
    assert back.options == [(11, b"a"), (11, b"b"), (15, b"q1"), (15, b"q2")]


def test_encode_rejects_long_token() -> None:
    with pytest.raises(ValueError, match="token"):
        encode(Message(Type.CON, Code.GET, 1, b"123456789"))


# --- typed options --------------------------------------------------------------------------------


def test_uint_minimal_length() -> None:
    assert uint_bytes(0) == b""
    assert uint_bytes(255) == b"\xff"
    assert uint_bytes(256) == b"\x01\x00"
    assert uint_bytes(0xFFFFFF) == b"\xff\xff\xff"
    with pytest.raises(ValueError):
        uint_bytes(-1)


def test_typed_accessors_round_trip() -> None:
    m = Message(Type.CON, Code.PUT, 7, b"\x01")
    m.uri_host = "example.net"
    m.uri_port = 5684
    m.uri_path = ["3", "0", "1"]
    m.uri_query = ["ep=dev1", "lt=60"]
    m.content_format = 11542
    m.accept = 0
    m.observe = 0
    m.max_age = 60
    m.etag = b"\xaa\xbb"
    m.if_match = [b"\x01", b"\x02"]
    m.if_none_match = True
    m.location_path = ["rd", "5a3f"]
    m.location_query = ["x=1"]
    m.block1 = Block(3, True, 6)
    m.block2 = Block(0, False, 2)
    m.size1 = 3000
    m.size2 = 4000
    m.proxy_uri = "coap://x/y"
    assert [n for n, _ in m.options] == sorted(n for n, _ in m.options)
    b = decode(encode(m))
    assert b.uri_host == "example.net"
    assert b.uri_port == 5684
    assert b.uri_path == ("3", "0", "1")
    assert b.uri_query == ("ep=dev1", "lt=60")
    assert b.content_format == 11542
    assert b.accept == 0
    assert b.observe == 0
    assert b.get_option(Option.OBSERVE) == b""  # zero is the empty string on the wire
    assert b.max_age == 60
    assert b.etag == b"\xaa\xbb"
    assert b.if_match == (b"\x01", b"\x02")
    assert b.if_none_match is True
    assert b.location_path == ("rd", "5a3f")
    assert b.location_query == ("x=1",)
    assert b.block1 == Block(3, True, 6)
    assert b.block2 == Block(0, False, 2)
    assert b.size1 == 3000
    assert b.size2 == 4000
    assert b.proxy_uri == "coap://x/y"
    b.observe = None
    b.if_none_match = False
    assert b.observe is None and b.if_none_match is False
    assert b.uri_path == ("3", "0", "1")


def test_invalid_utf8_path_is_a_message_error() -> None:
    m = Message(Type.CON, Code.GET, 1, b"", [(Option.URI_PATH, b"\xff")])
    with pytest.raises(CoapMessageError, match="UTF-8"):
        _ = m.uri_path


def test_block_values() -> None:
    b = Block.from_value(0x2E)  # num 2, more, szx 6 (1024)
    assert b == Block(2, True, 6)
    assert (b.size, b.offset, b.value) == (1024, 2048, 0x2E)
    assert Block(0, False, 0).encode() == b""
    assert Block(1, False, 2).encode() == b"\x12"
    assert Block(0xFFFFF, True, 6).encode() == b"\xff\xff\xfe"
    assert Block.for_size(4, False, 256) == Block(4, False, 4)
    with pytest.raises(CoapMessageError, match="reserved"):
        Block.from_value(7)
    with pytest.raises(ValueError):
        Block(1 << 20, False, 0).encode()
    with pytest.raises(ValueError):
        Block.for_size(0, False, 100)


def test_request_and_response_views() -> None:
    r = Request(Code.POST, "/rd", query=["ep=a", "lt=60"], payload=b"</3/0>", content_format=40)
    assert r.path == ("rd",) and r.query == ("ep=a", "lt=60") and r.content_format == 40
    assert [n for n, _ in r.options] == [11, 12, 15, 15]
    assert "POST /rd?ep=a&lt=60" in repr(r)
    m = Message(Type.CON, r.method, 5, b"t", r.options, r.payload)
    back = Request.from_message(decode(encode(m)), None)
    assert back.path == ("rd",) and back.payload == b"</3/0>" and back.token == b"t" and back.confirmable
    resp = Response(Code.CREATED, location_path="rd/abc", max_age=5)
    assert resp.location_path == ("rd", "abc") and resp.max_age == 5 and resp.is_success
    assert "2.01 CREATED" in repr(resp)
    assert str(Code.CONTENT) == "2.05 CONTENT"
    assert Code.GET.is_request and Code.CONTENT.is_response and not Code.NOT_FOUND.is_success


def test_error_tree() -> None:
    e = ResponseError(Code.NOT_FOUND, "no such object")
    assert isinstance(e, CoapError) and e.code == Code.NOT_FOUND
    assert str(e) == "4.04 no such object"
