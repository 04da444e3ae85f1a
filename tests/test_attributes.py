"""Notification attributes: Write-Attributes parsing, TS validation, inheritance and the notify decision."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spmp.lwm2m.attributes import (
    AttributeUpdate,
    NotificationAttributes,
    NotificationPolicy,
    change_condition_met,
    check_applicable,
    effective,
    effective_for,
    format_value,
    inherited,
    next_deadline,
    parse_query,
    should_notify,
)
from spmp.lwm2m.errors import InvalidAttributeError, Lwm2mError
from spmp.lwm2m.model import Operations, ResourceModel, ResourceType
from spmp.lwm2m.path import Path

# --- parsing and formatting ----------------------------------------------------------------------


def test_parse_write_attributes_query() -> None:
    update = parse_query(["pmin=10", "gt=25.5", "st"])
    assert update.values == NotificationAttributes(pmin=10, gt=25.5)
    assert update.unset == frozenset({"st"})
    assert update.to_query() == ["pmin=10", "gt=25.5", "st"]
    assert parse_query("pmin=10&pmax=60") == parse_query(["pmin=10", "pmax=60"])
    assert parse_query("").is_empty and parse_query([]).is_empty


def test_every_notification_attribute_parses() -> None:
    query = ["pmin=1", "pmax=2", "gt=-3.5", "lt=-10", "st=0.25", "epmin=4", "epmax=5", "edge=1", "con=0", "hqmax=6"]
    attrs = parse_query(query).values
    assert attrs == NotificationAttributes(1, 2, -3.5, -10.0, 0.25, 4, 5, True, False, 6)
    assert attrs.to_query() == ["pmin=1", "pmax=2", "gt=-3.5", "lt=-10", "st=0.25", "epmin=4", "epmax=5", "edge=1",
                                "con=0", "hqmax=6"]  # fmt: skip


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (["dim=2"], "read-only"),
        (["ver=1.1"], "read-only"),
        (["ssid"], "read-only"),
        (["foo=1"], "unknown"),
        (["pmin=1", "pmin=2"], "twice"),
        (["pmin=1", "pmin"], "twice"),
        (["pmin=-1"], "non-negative"),
        (["pmin=1.5"], "non-negative"),
        (["pmax="], "non-negative"),
        (["gt=1e3"], "decimal"),
        (["gt=abc"], "decimal"),
        (["st=-1"], "decimal"),
        (["st=0"], "greater than 0"),
        (["edge=2"], "0 or 1"),
        (["lt=10", "gt=10"], "lt must be below gt"),
        (["lt=10", "gt=14", "st=2"], "lt \\+ 2\\*st"),
        (["epmin=10", "epmax=10"], "epmin must be less"),
        (["pmin=99999999999999999999"], "non-negative"),
    ],
)
def test_write_attributes_rejections(query: list[str], message: str) -> None:
    with pytest.raises(InvalidAttributeError, match=message):
        parse_query(query)


def test_valid_change_conditions_and_pmax_below_pmin_are_accepted() -> None:
    assert parse_query(["lt=10", "gt=14.5", "st=2"]).values.change_conditions_valid
    # TS: a pmax below pmin is ignored, not refused.
    assert parse_query(["pmin=60", "pmax=10"]).values == NotificationAttributes(pmin=60, pmax=10)


def test_version_gating() -> None:
    with pytest.raises(InvalidAttributeError, match=r"does not exist in LwM2M 1\.1"):
        parse_query(["edge=1"], lwm2m_version="1.1")
    with pytest.raises(InvalidAttributeError, match=r"LwM2M 1\.0"):
        parse_query(["epmin=1"], lwm2m_version="1.0")
    assert parse_query(["epmin=1", "pmin=2"], lwm2m_version="1.1").values.epmin == 1


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [("gt", 50.0, "50"), ("lt", 42.2, "42.2"), ("st", 1e-05, "0.00001"), ("gt", -0.5, "-0.5"),
     ("gt", 1e16, "10000000000000000"), ("pmin", 10, "10"), ("con", True, "1")],
)  # fmt: skip
def test_format_value(name: str, value: float, text: str) -> None:
    assert format_value(name, value) == text


def test_constructor_checks_types_and_ranges() -> None:
    for bad in ({"pmin": -1}, {"pmin": True}, {"gt": float("nan")}, {"st": 0.0}, {"edge": 1}, {"hqmax": 1.0}):
        with pytest.raises(InvalidAttributeError):
            NotificationAttributes(**bad)  # type: ignore[arg-type]
    assert NotificationAttributes(gt=50).gt == 50.0


def test_update_apply_sets_and_unsets() -> None:
    current = NotificationAttributes(pmin=5, pmax=60, st=2)
    assert parse_query(["pmin=10", "st"]).apply(current) == NotificationAttributes(pmin=10, pmax=60)
    with pytest.raises(InvalidAttributeError, match="both set and unset"):
        AttributeUpdate(NotificationAttributes(pmin=1), frozenset({"pmin"}))


# --- levels --------------------------------------------------------------------------------------


def resource(kind: ResourceType, *, ops: Operations = Operations.R, multiple: bool = False) -> ResourceModel:
    return ResourceModel(7, "Voltage", ops, multiple, False, kind)


def test_assignation_levels_and_apply_conditions() -> None:
    check_applicable({"pmin", "pmax", "epmin", "con", "hqmax"}, Path.of(3))
    check_applicable({"gt", "lt", "st"}, Path.of(3, 0, 7), resource(ResourceType.INTEGER))
    check_applicable({"gt"}, Path.of(3, 0, 7, 1), resource(ResourceType.FLOAT, multiple=True))
    check_applicable({"edge"}, Path.of(3, 0, 7), resource(ResourceType.BOOLEAN))
    parse_query(["gt=1"]).check_for(Path.of(3, 0, 7), resource(ResourceType.UNSIGNED_INTEGER))
    cases = [
        ({"pmin"}, Path(), None, "root"),
        ({"gt"}, Path.of(3, 0), None, "only be set on a resource"),
        ({"st"}, Path.of(3), None, "only be set on a resource"),
        ({"gt"}, Path.of(3, 0, 7), resource(ResourceType.STRING), "numerical"),
        ({"edge"}, Path.of(3, 0, 7), resource(ResourceType.INTEGER), "Boolean"),
        ({"pmin"}, Path.of(3, 0, 4), resource(ResourceType.NONE, ops=Operations.E), "not readable"),
        ({"pmin"}, Path.of(3, 0, 7, 0), resource(ResourceType.INTEGER), "no instances"),
        ({"dim"}, Path.of(3, 0, 7), None, "not a notification attribute"),
    ]
    for names, path, model, message in cases:
        with pytest.raises(InvalidAttributeError, match=message):
            check_applicable(names, path, model)


def test_inheritance_follows_the_core_discover_example() -> None:
    # Core §6.3.2 (Discover): pmin on /3, pmax on /3/0, gt/lt on /3/0/7, a different lt on /3/0/7/1.
    assigned = {
        Path.of(3): NotificationAttributes(pmin=10, gt=99),  # a stray gt at object level must not leak
        Path.of(3, 0): NotificationAttributes(pmax=60),
        Path.of(3, 0, 7): NotificationAttributes(gt=50, lt=42.2),
        Path.of(3, 0, 7, 1): NotificationAttributes(lt=45),
    }
    assert inherited(Path.of(3, 0), assigned) == NotificationAttributes(pmin=10, pmax=60)
    assert inherited(Path.of(3, 0, 7), assigned) == NotificationAttributes(pmin=10, pmax=60, gt=50, lt=42.2)
    assert inherited(Path.of(3, 0, 7, 1), assigned) == NotificationAttributes(pmin=10, pmax=60, gt=50, lt=45)
    assert inherited(Path.of(3, 0, 1), assigned) == NotificationAttributes(pmin=10, pmax=60)
    assert inherited(Path.of(4, 0, 1), assigned) == NotificationAttributes()


def test_effective_applies_server_defaults_and_ignore_rules() -> None:
    assert effective(NotificationAttributes()) == NotificationAttributes(pmin=0)
    assert effective(NotificationAttributes(), default_pmin=5, default_pmax=300) == NotificationAttributes(5, 300)
    assert effective(NotificationAttributes(pmin=1), default_pmin=5).pmin == 1
    assert effective(NotificationAttributes(pmin=60, pmax=10)).pmax is None  # pmax < pmin is ignored
    assert effective(NotificationAttributes(pmax=0), default_pmax=300).pmax is None  # 0 means no pmax
    assert effective(NotificationAttributes(epmin=10, epmax=5)).epmax is None
    inconsistent = NotificationAttributes(gt=50, lt=45, st=3)  # lt + 2*st = 51 is not below gt
    assert effective(inconsistent) == NotificationAttributes(pmin=0)
    assigned = {Path.of(3, 0): NotificationAttributes(pmax=60), Path.of(3, 0, 7): NotificationAttributes(gt=5)}
    assert effective_for(Path.of(3, 0, 7), assigned, default_pmin=1) == NotificationAttributes(1, 60, gt=5)


# --- the notify decision -------------------------------------------------------------------------


def test_core_example_pmin_10_pmax_60() -> None:
    # Core, Notify: "at least 10 s before sending a Notify (even if the Resource has changed before
    # that), and no longer than 60 s (even if the Resource has not changed)".
    policy = NotificationPolicy(effective(NotificationAttributes(pmin=10, pmax=60)))
    state = policy.start(20.0, now=0)
    assert policy.next_deadline(state) == 60
    early = policy.evaluate(state, 21.0, now=3)
    assert not early.notify and early.state.pending and early.next_deadline == 10
    reverted = policy.evaluate(early.state, 20.0, now=10)  # owed notification goes out even if value reverted
    assert reverted.notify and reverted.state.last_value == 20.0 and reverted.next_deadline == 70
    quiet = policy.evaluate(reverted.state, 20.0, now=69)
    assert not quiet.notify
    forced = policy.evaluate(quiet.state, 20.0, now=70)
    assert forced.notify and forced.next_deadline == 130


def test_no_condition_means_any_change() -> None:
    attrs = effective(NotificationAttributes())
    state = NotificationPolicy(attrs).start("a", now=0)
    assert should_notify(attrs, state, "b", now=0)
    assert not should_notify(attrs, state, "a", now=100)
    assert next_deadline(attrs, state) is None


def test_gt_lt_crossing_either_way_and_step() -> None:
    attrs = NotificationAttributes(gt=50, lt=10, st=5)
    assert change_condition_met(attrs, 49, 51) and change_condition_met(attrs, 51, 50)
    assert change_condition_met(attrs, 11, 9.5) and change_condition_met(attrs, 9.5, 10)
    assert not change_condition_met(attrs, 20, 24.9)
    assert change_condition_met(attrs, 20, 25) and change_condition_met(attrs, 25, 20)
    assert not change_condition_met(NotificationAttributes(gt=50), 60, 70)  # same side, no step
    assert change_condition_met(NotificationAttributes(gt=50), "x", "y")  # not a number: any change
    assert change_condition_met(attrs, None, 1)


def test_edge() -> None:
    rising, falling = NotificationAttributes(edge=True), NotificationAttributes(edge=False)
    assert change_condition_met(rising, False, True) and not change_condition_met(rising, True, False)
    assert change_condition_met(falling, True, False) and not change_condition_met(falling, False, True)


def test_epmin_defers_and_epmax_sets_a_deadline() -> None:
    policy = NotificationPolicy(effective(NotificationAttributes(epmin=5, epmax=30)))
    state = policy.start(1, now=0)
    assert policy.next_deadline(state) == 30
    deferred = policy.evaluate(state, 2, now=2)
    assert not deferred.notify and deferred.state.deferred and deferred.next_deadline == 5
    later = policy.evaluate(deferred.state, 2, now=5)
    assert later.notify and later.next_deadline == 35


def test_pmax_wins_over_epmin() -> None:
    policy = NotificationPolicy(effective(NotificationAttributes(pmax=10, epmin=100)))
    assert policy.evaluate(policy.start(1, now=0), 1, now=10).notify


# --- properties ----------------------------------------------------------------------------------

finite = st.floats(-1e12, 1e12, allow_nan=False)
attributes = st.builds(
    NotificationAttributes,
    pmin=st.none() | st.integers(0, 10**6),
    pmax=st.none() | st.integers(0, 10**6),
    gt=st.none() | finite,
    lt=st.none() | finite,
    st=st.none() | st.floats(1e-9, 1e9),
    epmin=st.none() | st.integers(0, 1000),
    epmax=st.none() | st.integers(1001, 10**5),
    edge=st.none() | st.booleans(),
    con=st.none() | st.booleans(),
    hqmax=st.none() | st.integers(0, 2**63 - 1),
)


@given(attributes, st.sets(st.sampled_from(["pmin", "gt", "con", "hqmax"])))
def test_query_round_trip(attrs: NotificationAttributes, unset: set[str]) -> None:
    update = AttributeUpdate(attrs.without(unset), frozenset(unset))
    if not update.values.change_conditions_valid:
        with pytest.raises(InvalidAttributeError):
            parse_query(update.to_query())
        return
    assert parse_query(update.to_query()) == update
    assert NotificationAttributes.from_pairs(attrs.to_pairs()) == attrs


@given(st.lists(st.text(max_size=20) | st.sampled_from(["pmin", "gt=1", "st", "edge=1", "lt=2"]), max_size=40))
def test_random_queries_raise_only_invalid_attribute_error(query: list[str]) -> None:
    with contextlib.suppress(InvalidAttributeError):
        parse_query(query)
    with contextlib.suppress(InvalidAttributeError):
        parse_query("&".join(query))


@given(st.text(max_size=30), st.text(max_size=30))
def test_random_pairs_raise_only_lwm2m_errors(name: str, value: str) -> None:
    with contextlib.suppress(Lwm2mError):
        NotificationAttributes.from_pairs([(name, value)])


@given(
    attributes,
    st.floats(-100, 100),
    st.lists(st.tuples(st.floats(0, 1000), st.floats(-100, 100)), max_size=20),
)
def test_policy_timing_invariants(
    attrs: NotificationAttributes, first: float, steps: list[tuple[float, float]]
) -> None:
    eff = effective(attrs)
    policy = NotificationPolicy(eff)
    pmin = eff.pmin or 0
    now = 0.0
    state = policy.start(first, now)
    for delta, value in steps:
        now += delta
        decision = policy.evaluate(state, value, now)
        elapsed = now - state.last_time
        if eff.pmax is not None and elapsed >= eff.pmax:
            assert decision.notify  # pmax is a MUST
        if decision.notify:
            assert elapsed >= pmin  # never before pmin (pmax below pmin is ignored)
            assert decision.state.last_time == now and not decision.state.pending
        if decision.next_deadline is not None:
            assert decision.next_deadline >= decision.state.last_time
        state = decision.state
