"""The smart-load rules engine (spmp.smartload.rules): hand-made scenarios and property tests."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.path import Path
from spmp.lwm2m.response import OperationError, ResponseCode
from spmp.lwm2m.values import Value
from spmp.smartload.rules import EngineConfig, Rule, RuleEngine, parse_rule, rule_resources

REG = default_registry()
RF = Path.of(26244, 0, 11)  # RF Power Output, Float dBm
LTE = Path.of(26244, 0, 5)  # LTE Data Enabled, Boolean
EDGE = Path.of(26244, 0, 6)
EMERGENCY = Path.of(26244, 0, 9)  # Emergency Calls Only, Boolean
USERS = Path.of(26244, 0, 3)  # User Limit, Integer
DUTY = Path.of(26244, 0, 5828)  # Duty Cycle, Integer 0..100
PORT = Path.of(3201, 1, 5550)  # Digital Output State

ORIGINALS: dict[Path, Value] = {
    RF: 43.0,
    LTE: True,
    EDGE: True,
    EMERGENCY: False,
    USERS: 500,
    DUTY: 100,
    PORT: True,
}


def rule(iid: int, threshold: float, target: Path, text: str, type_name: str, **kw: float | int | None) -> Rule:
    return parse_rule(iid, rule_resources(threshold, target, text, type_name, **kw), REG)  # type: ignore[arg-type]


class Site:
    """An ideal executor: target values in a dict; every read and write succeeds at once."""

    def __init__(self, engine: RuleEngine, values: dict[Path, Value] | None = None) -> None:
        self.engine = engine
        self.values = dict(ORIGINALS if values is None else values)
        self.writes: list[tuple[float, Path, Value]] = []
        self.t = 0.0

    def apply(self) -> None:
        for _ in range(1000):
            intents = self.engine.pending()
            if not intents:
                return
            intent = intents[0]
            if intent.read_original:
                self.engine.record_original(intent.path, self.values[intent.path])
                continue
            if self.values[intent.path] != intent.value or type(self.values[intent.path]) is not type(intent.value):
                self.writes.append((self.t, intent.path, intent.value))
            self.values[intent.path] = intent.value
            self.engine.record_applied(intent.path, intent.value)
        raise AssertionError("the engine keeps asking for writes")

    def at(self, t: float, voltage: float) -> None:
        self.t = t
        self.engine.sample(t, voltage)
        self.apply()

    def run(self, samples: Iterable[tuple[float, float]]) -> None:
        for t, v in samples:
            self.at(t, v)

    def hold(self, voltage: float, start: float, seconds: float, step: float = 5.0) -> float:
        t = start
        while t < start + seconds:
            self.at(t, voltage)
            t += step
        return t

    def manual(self, path: Path, value: Value) -> None:
        self.values[path] = value
        self.engine.external_write(path, value, self.t)


def ramp(start_t: float, v_from: float, v_to: float, step_v: float, step_t: float = 10.0) -> list[tuple[float, float]]:
    n = round(abs(v_to - v_from) / step_v)
    sign = 1 if v_to > v_from else -1
    return [(start_t + i * step_t, round(v_from + sign * i * step_v, 3)) for i in range(n + 1)]


def three_rules() -> RuleEngine:
    engine = RuleEngine(EngineConfig(confirm_seconds=60, dwell_seconds=300))
    engine.set_rule(rule(2, 46.0, EMERGENCY, "1", "Boolean"), 0)
    engine.set_rule(rule(0, 48.0, RF, "40", "Float"), 0)
    engine.set_rule(rule(1, 47.0, LTE, "0", "Boolean"), 0)
    return engine


# ------------------------------------------------------------------------------------------ scenarios
def test_falling_through_three_thresholds_writes_in_order_and_restores_in_reverse() -> None:
    site = Site(three_rules())
    site.hold(49.0, 0, 100)
    site.run(ramp(100, 49.0, 45.5, 0.05))  # 70 samples, 10 s apart: ~12 min per volt
    assert [(p, v) for _, p, v in site.writes] == [(RF, 40.0), (LTE, False), (EMERGENCY, True)]
    times = [t for t, _, _ in site.writes]
    assert times == sorted(times)
    assert site.engine.active_rules() == [0, 1, 2]
    site.writes.clear()
    t = site.hold(50.0, 1000, 400)  # a jump to 50 V: all clear in one step, restored deepest first
    assert [(p, v) for _, p, v in site.writes] == [(EMERGENCY, False), (LTE, True), (RF, 43.0)]
    assert site.values == ORIGINALS
    assert site.engine.active_rules() == [] and site.engine.targets() == []
    assert t > 1000


def test_each_rule_fires_one_confirmation_after_its_threshold() -> None:
    site = Site(three_rules())
    site.run(ramp(0, 48.5, 45.5, 0.1, step_t=60))  # 48.0 at t=300, 47.0 at 900, 46.0 at 1500
    assert [(t, p) for t, p, _ in site.writes] == [(360.0, RF), (960.0, LTE), (1560.0, EMERGENCY)]


def test_a_dip_shorter_than_the_confirmation_time_is_ignored() -> None:
    site = Site(three_rules())
    t = site.hold(49.0, 0, 100)
    t = site.hold(44.0, t, 55)  # 55 s at 44 V: a load step
    site.hold(49.0, t, 600)
    assert site.writes == []
    site.hold(44.0, 1000, 65)  # 65 s: real
    assert [p for _, p, _ in site.writes] == [RF, LTE, EMERGENCY]


def test_the_hysteresis_band_causes_no_chatter() -> None:
    site = Site(three_rules())
    t = site.hold(47.5, 0, 100)
    assert site.writes == [(60.0, RF, 40.0)]
    # Wobbling between 47.9 and 48.9 for two hours: above the threshold, below 48 + 2 % = 48.96.
    for i in range(720):
        site.at(t + i * 10, 47.9 if i % 2 else 48.9)
    assert site.writes == [(60.0, RF, 40.0)] and site.engine.is_active(0)
    site.hold(49.0, t + 7200, 100)
    assert site.writes[-1] == (t + 7200 + 60, RF, 43.0)


def test_explicit_hysteresis_zero_clears_just_above_the_threshold() -> None:
    engine = RuleEngine(EngineConfig(confirm_seconds=0, dwell_seconds=0))
    engine.set_rule(rule(0, 48.0, RF, "40", "Float", hysteresis=0.0), 0)
    site = Site(engine)
    site.run([(0, 48.0), (1, 48.0), (2, 48.01)])
    assert [(t, v) for t, _, v in site.writes] == [(0, 40.0), (2, 43.0)]


def test_a_rule_dwells_in_each_state() -> None:
    site = Site(three_rules())
    site.hold(47.5, 0, 70)  # RF active at t=60
    site.hold(50.0, 70, 500)  # confirmed at 130, but dwell holds it until 360
    assert [(t, v) for t, _, v in site.writes] == [(60.0, 40.0), (360.0, 43.0)]
    site.hold(47.5, 600, 200)  # down again at 600: confirmed at 660 = 300 s after the restore
    assert site.writes[-1] == (660.0, RF, 40.0)


def test_dwell_holds_back_reactivation_after_a_restore() -> None:
    site = Site(three_rules())
    site.hold(47.5, 0, 70)  # active at 60
    site.hold(50.0, 300, 65)  # clears at 360
    site.hold(47.5, 370, 400)  # confirmed at 430, dwell until 660
    assert [t for t, _, _ in site.writes] == [60.0, 360.0, 660.0]


def test_overlapping_rules_on_one_target_deepest_wins_and_unwinds_in_steps() -> None:
    engine = RuleEngine(EngineConfig(confirm_seconds=60, dwell_seconds=300))
    for iid, (threshold, dbm) in enumerate([(48.0, "40"), (47.0, "37"), (46.0, "34")]):
        engine.set_rule(rule(iid, threshold, RF, dbm, "Float", hysteresis=0.5), 0)
    site = Site(engine)
    site.run(ramp(0, 48.5, 45.5, 0.05, step_t=30))  # ~10 min per volt
    assert [v for _, _, v in site.writes] == [40.0, 37.0, 34.0]
    site.writes.clear()
    site.run(ramp(2000, 45.5, 49.0, 0.05, step_t=30))
    assert [v for _, _, v in site.writes] == [37.0, 40.0, 43.0]
    assert site.values[RF] == 43.0 and engine.targets() == []


def test_a_crash_through_several_rules_on_one_target_writes_once() -> None:
    engine = RuleEngine(EngineConfig(confirm_seconds=60, dwell_seconds=300))
    for iid, (threshold, dbm) in enumerate([(48.0, "40"), (47.0, "37"), (46.0, "34")]):
        engine.set_rule(rule(iid, threshold, RF, dbm, "Float"), 0)
    site = Site(engine)
    site.hold(49.0, 0, 50)
    site.hold(45.0, 50, 100)
    assert site.writes == [(110.0, RF, 34.0)] and engine.active_rules() == [0, 1, 2]


def test_a_target_changes_at_most_once_per_dwell_even_when_rules_fall_quickly() -> None:
    engine = RuleEngine(EngineConfig(confirm_seconds=0, dwell_seconds=300))
    engine.set_rule(rule(0, 48.0, RF, "40", "Float"), 0)
    engine.set_rule(rule(1, 47.0, RF, "37", "Float"), 0)
    engine.set_rule(rule(2, 46.9, LTE, "0", "Boolean"), 0)
    site = Site(engine)
    site.at(0, 47.9)
    site.hold(46.5, 10, 400)
    # RF took 40 at 0; 37 waits for the dwell (t=300); LTE, deeper, waits behind it: order is kept.
    assert site.writes == [(0, RF, 40.0), (300, RF, 37.0), (300, LTE, False)]


def test_ties_fire_by_instance_id_and_restore_in_reverse() -> None:
    engine = RuleEngine(EngineConfig(confirm_seconds=0, dwell_seconds=0))
    engine.set_rule(rule(5, 47.0, LTE, "0", "Boolean"), 0)
    engine.set_rule(rule(3, 47.0, EDGE, "0", "Boolean"), 0)
    site = Site(engine)
    site.at(0, 46.0)
    site.at(1, 50.0)
    assert [p for _, p, _ in site.writes] == [EDGE, LTE, LTE, EDGE]


def test_manual_override_suspends_the_holding_rules_until_they_clear() -> None:
    engine = RuleEngine(EngineConfig(confirm_seconds=60, dwell_seconds=300))
    engine.set_rule(rule(0, 48.0, RF, "40", "Float"), 0)
    engine.set_rule(rule(1, 46.0, RF, "34", "Float"), 0)
    site = Site(engine)
    site.hold(47.5, 0, 100)
    assert site.values[RF] == 40.0
    site.t = 100
    site.manual(RF, 46.0)  # the operator needs coverage tonight
    site.hold(47.5, 100, 1000)
    assert site.values[RF] == 46.0 and engine.is_active(0) and engine.is_suspended(0)
    # The battery gets worse: the deeper rule takes the target again ...
    site.hold(45.5, 1100, 100)
    assert site.values[RF] == 34.0
    # ... and when it clears, the operator's value is back, not the rule's.
    site.hold(47.5, 1200, 400)
    assert site.values[RF] == 46.0 and engine.is_active(0)
    # Full recovery writes nothing: the manual value is the new original.
    site.writes.clear()
    site.hold(50.0, 1600, 700)
    assert site.writes == [] and site.values[RF] == 46.0 and engine.targets() == []
    # Next night, the new original is what gets restored.
    site.hold(47.5, 2300, 100)
    site.hold(50.0, 2700, 100)
    assert [v for _, _, v in site.writes] == [40.0, 46.0]


def test_a_manual_write_to_a_target_no_rule_holds_is_none_of_the_engines_business() -> None:
    site = Site(three_rules())
    site.manual(RF, 45.0)
    assert site.engine.targets() == []
    site.hold(47.5, 0, 100)
    site.hold(50.0, 400, 100)
    assert site.values[RF] == 45.0 and [v for _, _, v in site.writes] == [40.0, 45.0]


def test_deleting_an_active_rule_restores_at_once() -> None:
    engine = RuleEngine(EngineConfig(confirm_seconds=60, dwell_seconds=300))
    engine.set_rule(rule(0, 48.0, RF, "40", "Float"), 0)
    engine.set_rule(rule(1, 47.0, RF, "37", "Float"), 0)
    site = Site(engine)
    site.hold(46.5, 0, 100)
    assert site.values[RF] == 37.0
    engine.remove_rule(1, 100)
    site.apply()
    assert site.values[RF] == 40.0  # the next active rule
    engine.remove_rule(0, 101)
    site.apply()
    assert site.values[RF] == 43.0 and engine.targets() == [] and engine.rules() == []


def test_modifying_an_active_rule_keeps_it_active_and_applies_at_once() -> None:
    site = Site(three_rules())
    site.hold(47.5, 0, 100)
    assert site.values[RF] == 40.0
    site.engine.set_rule(rule(0, 48.0, RF, "38", "Float"), 100)
    site.apply()
    assert site.values[RF] == 38.0 and site.engine.is_active(0)
    site.engine.set_rule(rule(0, 48.0, USERS, "50", "Integer"), 101)  # a new target
    site.apply()
    assert site.values[RF] == 43.0 and site.values[USERS] == 50
    site.engine.set_rule(rule(0, 47.0, USERS, "50", "Integer", hysteresis=0.2), 102)  # threshold below V
    site.hold(47.5, 110, 400)
    assert site.values[USERS] == 500 and not site.engine.is_active(0)


def test_a_new_rule_below_the_current_voltage_activates_after_confirmation() -> None:
    site = Site(three_rules())
    site.hold(47.5, 0, 100)
    site.engine.set_rule(rule(7, 47.8, PORT, "0", "Boolean"), 100)
    site.hold(47.5, 100, 100)
    assert site.values[PORT] is False


def test_a_failed_write_is_written_again_even_when_the_value_seems_unchanged() -> None:
    engine = three_rules()
    site = Site(engine)
    site.hold(47.5, 0, 100)
    engine.record_failure(RF)
    assert [(i.path, i.value) for i in engine.pending()] == [(RF, 40.0)]
    site.apply()
    assert engine.pending() == []


def test_reads_the_original_before_the_first_write_and_never_writes_without_it() -> None:
    engine = three_rules()
    engine.sample(0, 47.5)
    intents = engine.sample(60, 47.5)
    assert [(i.path, i.value, i.read_original) for i in intents] == [(RF, 40.0, True)]
    engine.sample(400, 50.0)
    engine.sample(460, 50.0)  # cleared before the original was read: nothing was written, nothing to do
    assert engine.pending() == [] and engine.targets() == []


def test_invalid_samples() -> None:
    engine = three_rules()
    engine.sample(10, 47.0)
    assert engine.sample(20, float("nan")) == []
    with pytest.raises(ValueError, match="older"):
        engine.sample(5, 47.0)


def test_a_long_gap_between_samples_restarts_confirmation() -> None:
    engine = three_rules()
    site = Site(engine)
    site.at(0, 47.5)
    site.at(200, 47.5)  # 200 s gap > 120 s: we did not see the voltage in between
    assert site.writes == []
    site.at(260, 47.5)
    assert site.writes == [(260, RF, 40.0)]


def test_snapshot_round_trips_through_json() -> None:
    site = Site(three_rules())
    site.hold(47.5, 0, 100)
    site.manual(RF, 41.5)
    site.hold(46.5, 100, 100)
    data = json.loads(json.dumps(site.engine.snapshot()))
    restored = RuleEngine.restore(data)
    assert restored.snapshot() == site.engine.snapshot()
    other = Site(restored, site.values)
    done = len(site.writes)
    site.hold(50.0, 200, 600)
    other.hold(50.0, 200, 600)
    assert site.writes[done:] == other.writes == [(460.0, LTE, True)]
    assert site.values == other.values == {**ORIGINALS, RF: 41.5}
    with pytest.raises(ValueError, match="snapshot"):
        RuleEngine.restore({"version": 1, "rules": [{}]})


# --------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("target", "text", "type_name", "code", "message"),
    [
        (Path.of(9999, 0, 0), "1", "Integer", ResponseCode.NOT_FOUND, "object 9999"),
        (Path.of(26244, 0, 999), "1", "Integer", ResponseCode.NOT_FOUND, "no resource 999"),
        (Path.of(3316, 0, 5700), "1", "Float", ResponseCode.BAD_REQUEST, "not writable"),
        (RF, "40", "Double", ResponseCode.BAD_REQUEST, "Type 'Double'"),
        (RF, "forty", "Float", ResponseCode.BAD_REQUEST, "not a valid Float"),
        (RF, "60", "Float", ResponseCode.BAD_REQUEST, "does not fit"),
        (LTE, "true", "Boolean", ResponseCode.BAD_REQUEST, "not a valid Boolean"),
        (LTE, "1", "Integer", ResponseCode.BAD_REQUEST, "does not fit"),
        (Path.of(26245, 0, 0), "1", "Float", ResponseCode.BAD_REQUEST, "cannot target"),
    ],
)
def test_invalid_rules_are_refused_with_the_right_code(
    target: Path, text: str, type_name: str, code: ResponseCode, message: str
) -> None:
    with pytest.raises(OperationError) as caught:
        rule(0, 48.0, target, text, type_name)
    assert caught.value.code is code and message in caught.value.reason


def test_rule_values_are_typed_for_the_target() -> None:
    assert rule(0, 48.0, RF, "40", "Integer").value == 40.0  # an Integer into a Float resource is exact
    assert rule(0, 48.0, LTE, "0", "boolean").value is False
    assert rule(0, 48.0, Path.of(3201, 0, 5750), "BTS load", "String").value == "BTS load"
    assert rule(0, 48.0, RF, "40", "Float").effective_hysteresis == pytest.approx(0.96)
    with pytest.raises(OperationError, match="missing"):
        parse_rule(0, {0: 48.0}, REG)
    with pytest.raises(OperationError, match="positive"):
        rule(0, 0.0, RF, "40", "Float")


# ---------------------------------------------------------------------------------- property tests
DWELL = 300.0
TARGETS = [RF, USERS, DUTY]
TARGET_VALUES = {RF: [30.0, 34.0, 37.0, 40.0, 43.0], USERS: [50, 100, 200, 500], DUTY: [25, 50, 75, 100]}
TYPE = {RF: "Float", USERS: "Integer", DUTY: "Integer"}


@st.composite
def rule_sets(draw: st.DrawFn) -> list[Rule]:
    count = draw(st.integers(1, 6))
    rules = []
    for iid in draw(st.lists(st.integers(0, 20), min_size=count, max_size=count, unique=True)):
        target = draw(st.sampled_from(TARGETS))
        value = draw(st.sampled_from(TARGET_VALUES[target]))
        threshold = draw(st.sampled_from([45.5, 46.0, 46.5, 47.0, 47.5, 48.0]))
        hysteresis = draw(st.sampled_from([None, 0.0, 0.3, 1.0, 3.0]))
        text = str(int(value)) if isinstance(value, int) else repr(value)
        rules.append(rule(iid, threshold, target, text, TYPE[target], hysteresis=hysteresis))
    return rules


Event = tuple[str, float, float]
events = st.lists(
    st.one_of(
        st.tuples(st.just("v"), st.floats(0.5, 150), st.floats(44.0, 50.0)),
        st.tuples(st.just("v"), st.floats(0.5, 30), st.sampled_from([45.4, 46.0, 47.0, 48.0, 48.5, 49.0])),
        st.tuples(st.just("manual"), st.integers(0, 2).map(float), st.integers(0, 3).map(float)),
    ),
    max_size=150,
)


def build(rules: list[Rule], confirm: float) -> Site:
    engine = RuleEngine(EngineConfig(confirm_seconds=confirm, dwell_seconds=DWELL))
    for r in rules:
        engine.set_rule(r, 0)
    return Site(engine)


def play(site: Site, trace: list[Event], start: float = 0.0) -> dict[Path, Value]:
    """Plays events; returns the value each target must end with (its last manual value or original)."""
    baseline = {path: site.values[path] for path in TARGETS}
    t = start
    for kind, a, b in trace:
        if kind == "v":
            t += a
            site.at(t, b)
        else:
            path = TARGETS[int(a)]
            value = TARGET_VALUES[path][int(b)]
            site.manual(path, value)
            baseline[path] = value
        assert_prefix(site.engine)
    return baseline


def assert_prefix(engine: RuleEngine) -> None:
    active = [engine.is_active(r.id) for r in engine.rules()]
    assert active == sorted(active, reverse=True), "active rules must be a prefix of the firing order"


def recover(site: Site, rules: list[Rule], confirm: float) -> None:
    t = site.t
    for _ in range(int((confirm + (len(rules) + 2) * DWELL) / 10) + 2):
        t += 10
        site.at(t, 60.0)


@settings(max_examples=300, deadline=None)
@given(rules=rule_sets(), trace=events, confirm=st.sampled_from([0.0, 30.0, 60.0]))
def test_property_no_oscillation_and_full_recovery(rules: list[Rule], trace: list[Event], confirm: float) -> None:
    site = build(rules, confirm)
    baseline = play(site, trace)
    last: dict[Path, float] = {}
    for t, path, _ in site.writes:
        assert path not in last or t - last[path] >= DWELL, f"{path} changed at {last[path]} and {t}"
        last[path] = t
    recover(site, rules, confirm)
    assert site.engine.active_rules() == []
    assert site.engine.targets() == [] and site.engine.pending() == []
    assert {p: site.values[p] for p in TARGETS} == baseline


@settings(max_examples=200, deadline=None)
@given(rules=rule_sets(), confirm=st.sampled_from([0.0, 60.0]), step=st.floats(1, 100))
def test_property_rules_fire_in_order_falling_and_restore_in_reverse_rising(
    rules: list[Rule], confirm: float, step: float
) -> None:
    site = build(rules, confirm)
    activations: list[int] = []
    clearings: list[int] = []
    t = 0.0
    hold = int((len(rules) + 2) * DWELL / step) + 2
    falling = [49.0 - i * 0.05 for i in range(90)] + [44.0] * hold
    for v in falling + [44.0 + i * 0.05 for i in range(200)] + [60.0] * hold:
        before = set(site.engine.active_rules())
        t += step
        site.at(t, v)
        after = set(site.engine.active_rules())
        activations += sorted(after - before, key=lambda i: next(r.order for r in rules if r.id == i))
        clearings += sorted(before - after, key=lambda i: next(r.order for r in rules if r.id == i), reverse=True)
    order = [r.id for r in sorted(rules, key=lambda r: r.order)]
    assert activations == order
    assert clearings == order[::-1]


@settings(max_examples=150, deadline=None)
@given(rules=rule_sets(), trace=events, confirm=st.sampled_from([0.0, 60.0]), split=st.integers(0, 150))
def test_property_snapshot_restore_is_invisible(
    rules: list[Rule], trace: list[Event], confirm: float, split: int
) -> None:
    whole = build(rules, confirm)
    play(whole, trace)
    first = build(rules, confirm)
    play(first, trace[:split])
    restored = Site(RuleEngine.restore(json.loads(json.dumps(first.engine.snapshot()))), first.values)
    restored.t = first.t
    restored.writes = list(first.writes)
    play(restored, trace[split:], start=first.t)
    assert restored.writes == whole.writes
    assert restored.engine.snapshot() == whole.engine.snapshot()


@settings(max_examples=100, deadline=None)
@given(rules=rule_sets(), trace=events)
def test_property_repeating_a_sample_changes_nothing(rules: list[Rule], trace: list[Event]) -> None:
    site = build(rules, 60.0)
    play(site, trace)
    if site.engine.voltage is None:
        return
    before = site.engine.snapshot()
    site.at(site.t, site.engine.voltage)
    assert site.engine.snapshot() == before
