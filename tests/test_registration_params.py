"""Register / Update / Bootstrap-Request query parameters."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spmp.lwm2m.registration import (
    DEFAULT_LIFETIME,
    InvalidRegistrationError,
    RegistrationParams,
    UpdateParams,
    parse_bootstrap_request,
    parse_register,
    parse_update,
)


def test_defaults_when_only_endpoint() -> None:
    params = parse_register(["ep=charger-001"])
    assert params == RegistrationParams("charger-001", DEFAULT_LIFETIME, "1.0", "U", False, None)


def test_full_11_registration() -> None:
    params = parse_register(["ep=urn%3Adev%3Amac%3A0024befffe804ff1", "lt=300", "lwm2m=1.1", "b=U", "Q", "sms=+4412"])
    assert params.endpoint == "urn:dev:mac:0024befffe804ff1"
    assert (params.lifetime, params.lwm2m_version, params.binding, params.queue_mode) == (300, "1.1", "U", True)
    assert params.sms_number == "+4412"
    assert parse_register(params.to_query()) == params


def test_10_queue_mode_in_binding() -> None:
    params = parse_register(["ep=a", "b=UQ"])
    assert params.binding == "U" and params.queue_mode
    assert "b=UQ" in RegistrationParams("a", queue_mode=True).to_query()


def test_unknown_parameters_are_ignored() -> None:
    assert parse_register(["ep=a", "future=1"]).endpoint == "a"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ([], "endpoint name"),
        (["ep="], "endpoint name"),
        (["ep=" + "x" * 256], "longer than 255"),
        (["ep=a%0Ab"], "control characters"),
        (["ep=a", "lt=0"], "outside"),
        (["ep=a", "lt=-5"], "whole number"),
        (["ep=a", "lt=abc"], "whole number"),
        (["ep=a", "lwm2m=2.0"], "not supported"),
        (["ep=a", "b=X"], "binding"),
        (["ep=a", "b=UU"], "binding"),
        (["ep=a", "Q=1"], "takes no value"),
        (["ep=a", "ep=b"], "twice"),
        (["ep=a", "sms=abc"], "MSISDN"),
        (["ep=%ff"], "UTF-8"),
    ],
)
def test_register_errors(query: list[str], message: str) -> None:
    with pytest.raises(InvalidRegistrationError, match=message):
        parse_register(query)


def test_update_only_what_changed() -> None:
    assert parse_update([]) == UpdateParams()
    update = parse_update(["lt=60", "b=UQ"])
    assert update == UpdateParams(60, "U", True, None)
    assert parse_update(update.to_query()) == UpdateParams(60, "U", True, None)


def test_bootstrap_request() -> None:
    request = parse_bootstrap_request(["ep=site-7", "pct=112"])
    assert (request.endpoint, request.preferred_content_format) == ("site-7", 112)
    assert parse_bootstrap_request(request.to_query()) == request
    with pytest.raises(InvalidRegistrationError, match="pct"):
        parse_bootstrap_request(["ep=a", "pct=x"])


@given(st.lists(st.text(max_size=20), max_size=6))
def test_random_queries_raise_only_registration_errors(query: list[str]) -> None:
    for parser in (parse_register, parse_update, parse_bootstrap_request):
        with contextlib.suppress(InvalidRegistrationError):
            parser(query)
