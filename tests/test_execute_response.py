"""Execute arguments and response codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spmp.lwm2m.execute import format_arguments, parse_arguments
from spmp.lwm2m.response import OperationError, ResponseCode


def test_parse_ts_example() -> None:
    assert parse_arguments(b"0,1='http://example.com/fw',2") == {0: None, 1: "http://example.com/fw", 2: None}
    assert parse_arguments(b"") == {}
    assert parse_arguments(b"5=''") == {5: ""}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"a", "expected a digit at offset 0"),
        (b"0,", "expected a digit at offset 2"),
        (b"0=1", "expected a quoted value"),
        (b"0='abc", "unterminated"),
        (b"0;1", "expected ','"),
        (b"1,1", "appears twice"),
        (b"0='\xc3\xa9'", "US-ASCII"),
        (b"0='\t'", "printable"),
        (b"12", "expected ','"),
    ],
)
def test_parse_errors_are_bad_requests(payload: bytes, message: str) -> None:
    with pytest.raises(OperationError, match=message) as info:
        parse_arguments(payload)
    assert info.value.code is ResponseCode.BAD_REQUEST


values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="'"), max_size=12)


@given(st.dictionaries(st.integers(0, 9), st.none() | values, max_size=10))
def test_round_trip(arguments: dict[int, str | None]) -> None:
    assert parse_arguments(format_arguments(arguments)) == arguments


@given(st.binary(max_size=40))
def test_random_payloads_raise_only_operation_errors(payload: bytes) -> None:
    try:
        parse_arguments(payload)
    except OperationError as exc:
        assert exc.code is ResponseCode.BAD_REQUEST


def test_response_codes() -> None:
    assert ResponseCode.NOT_FOUND.dotted == "4.04"
    assert ResponseCode.from_dotted("2.05") is ResponseCode.CONTENT
    assert ResponseCode.CHANGED.is_success and not ResponseCode.BAD_REQUEST.is_success
    assert str(OperationError(ResponseCode.METHOD_NOT_ALLOWED, "read-only")) == "4.05 Method Not Allowed: read-only"
