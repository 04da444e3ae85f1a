"""The pure bootstrap plan: steps, instance ids, content formats, PSKs, response checks."""

from __future__ import annotations

import pytest

from spmp.bootstrap.session import (
    BootstrapPlanError,
    PskCredentials,
    StepKind,
    check_response,
    choose_content_format,
    discover_step,
    needs_generated_psk,
    plan_session,
)
from spmp.lwm2m import Path, SingleResource, codecs
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.link import parse_bootstrap_discover
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.response import ResponseCode
from spmp.store import BootstrapConfig, BootstrapWrite, SecurityMode, ServerAccount

REGISTRY = default_registry()
TELCO = ServerAccount(101, "coaps://telco.example:5684", SecurityMode.PSK)
CLOUD = ServerAccount(102, "coap://cloud.example:5683", lifetime=300, default_pmin=10, default_pmax=60)
GENERATED = PskCredentials("charger-1", bytes(range(16)))
DISCOVER_11 = parse_bootstrap_discover(
    '</>;lwm2m=1.1,</0/0>,</0/1>;ssid=102;uri="coap://old:5683",</1/0>;ssid=102,</3/0>'
)


def test_discover_step_is_get_root_with_link_format() -> None:
    step = discover_step()
    assert (step.method, step.uri_path, step.accept) == ("GET", "/", ContentFormat.LINK)


def test_default_plan_deletes_writes_and_finishes() -> None:
    config = BootstrapConfig("charger-1", (TELCO, CLOUD))
    plan = plan_session(config, DISCOVER_11, REGISTRY, generated_psk=GENERATED)
    assert [(s.kind, s.uri_path) for s in plan.steps] == [
        (StepKind.DELETE, "/0"),
        (StepKind.DELETE, "/1"),
        (StepKind.WRITE, "/0/1"),
        (StepKind.WRITE, "/0/2"),
        (StepKind.WRITE, "/1/0"),
        (StepKind.WRITE, "/1/1"),
        (StepKind.FINISH, "/bs"),
    ]
    assert plan.content_format is ContentFormat.SENML_CBOR
    telco = codecs.decode(plan.steps[2].payload, Path.of(0, 1), ContentFormat.SENML_CBOR, REGISTRY)
    values = {rid: r.value for rid, r in telco.resources.items() if isinstance(r, SingleResource)}  # type: ignore[union-attr]
    assert values == {0: TELCO.uri, 1: False, 2: 0, 3: b"charger-1", 4: b"", 5: GENERATED.key, 10: 101}
    cloud = codecs.decode(plan.steps[5].payload, Path.of(1, 1), ContentFormat.SENML_CBOR, REGISTRY)
    values = {rid: r.value for rid, r in cloud.resources.items() if isinstance(r, SingleResource)}  # type: ignore[union-attr]
    assert values == {0: 102, 1: 300, 2: 10, 3: 60, 6: True, 7: "U"}


def test_keep_existing_overwrites_the_same_ssid_and_avoids_other_ids() -> None:
    config = BootstrapConfig("charger-1", (TELCO, CLOUD), delete_existing=False)
    plan = plan_session(config, DISCOVER_11, REGISTRY, generated_psk=GENERATED)
    assert all(s.kind is not StepKind.DELETE for s in plan.steps)
    assert plan.security_instances == {102: 1, 101: 2}
    assert plan.server_instances == {102: 0, 101: 1}


def test_a_bootstrap_account_at_an_unusual_id_is_avoided() -> None:
    discovered = parse_bootstrap_discover("</>;lwm2m=1.2,</0/0>;ssid=5,</0/1>")
    plan = plan_session(BootstrapConfig("e", (CLOUD,)), discovered, REGISTRY)
    assert plan.security_instances == {102: 0}
    discovered = parse_bootstrap_discover("</>;lwm2m=1.2,</0/0>")
    assert plan_session(BootstrapConfig("e", (CLOUD,)), discovered, REGISTRY).security_instances == {102: 1}


@pytest.mark.parametrize(
    ("pct", "version", "expected"),
    [
        (None, "1.1", ContentFormat.SENML_CBOR),
        (None, "1.2", ContentFormat.SENML_CBOR),
        (None, "1.0", ContentFormat.TLV),
        (None, None, ContentFormat.TLV),
        (110, "1.1", ContentFormat.SENML_JSON),
        (11542, "1.1", ContentFormat.TLV),
        (0, "1.1", ContentFormat.SENML_CBOR),  # plain text cannot carry an instance
    ],
)
def test_content_format_choice(pct: int | None, version: str | None, expected: ContentFormat) -> None:
    assert choose_content_format(pct, version) is expected


def test_no_discover_answer_means_tlv_and_bootstrap_account_at_zero() -> None:
    plan = plan_session(BootstrapConfig("e", (CLOUD,)), None, REGISTRY, preferred_format=0)
    assert plan.content_format is ContentFormat.TLV
    assert plan.security_instances == {102: 1}
    assert any("pct=0" in note for note in plan.notes) and any("1.0" in note for note in plan.notes)


def test_psk_without_key_needs_the_generated_one() -> None:
    config = BootstrapConfig("e", (TELCO,))
    assert needs_generated_psk(config) and not needs_generated_psk(BootstrapConfig("e", (CLOUD,)))
    with pytest.raises(BootstrapPlanError, match="without a key"):
        plan_session(config, DISCOVER_11, REGISTRY)
    given = ServerAccount(101, TELCO.uri, SecurityMode.PSK, "own-id", b"k" * 16)
    plan = plan_session(BootstrapConfig("e", (given,)), DISCOVER_11, REGISTRY)
    node = codecs.decode(plan.steps[2].payload, Path.of(0, 1), plan.content_format, REGISTRY)
    assert node.resources[3].value == b"own-id" and node.resources[5].value == b"k" * 16  # type: ignore[union-attr]
    assert "hidden" in repr(GENERATED) and "\\x00" not in repr(GENERATED)


def test_extra_writes() -> None:
    config = BootstrapConfig("e", (CLOUD,), writes=(BootstrapWrite("/3/0/14", "+03:00", "String"),))
    plan = plan_session(config, DISCOVER_11, REGISTRY)
    extra = plan.steps[-2]
    assert (extra.kind, extra.uri_path) == (StepKind.WRITE, "/3/0/14")
    assert codecs.decode(extra.payload, Path.of(3, 0, 14), plan.content_format, REGISTRY).value == "+03:00"  # type: ignore[union-attr]
    for bad in ("/3/0", "/3/0/999", "not a path"):
        with pytest.raises(BootstrapPlanError, match="extra write"):
            plan_session(BootstrapConfig("e", (CLOUD,), writes=(BootstrapWrite(bad, 1, "Integer"),)), None, REGISTRY)


def test_check_response() -> None:
    plan = plan_session(BootstrapConfig("e", (CLOUD,)), DISCOVER_11, REGISTRY)
    delete, write, finish = plan.steps[0], plan.steps[2], plan.steps[-1]
    assert check_response(delete, ResponseCode.DELETED) is None
    assert check_response(delete, ResponseCode.NOT_FOUND) is None  # nothing to delete
    assert check_response(write, ResponseCode.CHANGED) is None
    assert (
        check_response(write, ResponseCode.BAD_REQUEST, "bad tlv") == f"{write} answered 4.00, expected 2.04: bad tlv"
    )
    reason = check_response(finish, ResponseCode.NOT_ACCEPTABLE, "no server account")
    assert reason is not None and "4.06" in reason and "no server account" in reason
