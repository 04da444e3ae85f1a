"""The smart-load executor (retries, faults, alerts, persistence) and the Smart Load Rules object on a tree."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from spmp.charger.battery import CHEMISTRIES, Battery, Chemistry
from spmp.client.objects import StoredObject
from spmp.client.tree import BOOTSTRAP, ObjectTree
from spmp.lwm2m.node import ObjectInstance, SingleResource
from spmp.lwm2m.objects import default_registry, ids
from spmp.lwm2m.objects.smart_load import SmartLoadRuleResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.response import OperationError, ResponseCode
from spmp.lwm2m.values import Value
from spmp.smartload.defaults import (
    DEFAULT_RULES,
    LVD_MARGIN_V_PER_CELL,
    default_rule_resources,
    default_rules,
    saving_band,
)
from spmp.smartload.executor import (
    Backoff,
    RoutingTargetWriter,
    SmartLoadExecutor,
    TargetError,
    TreeTargetWriter,
    alert_setter,
)
from spmp.smartload.objects import SmartLoad, install_smart_load
from spmp.smartload.rules import EngineConfig, RuleEngine, parse_rule, rule_resources

REG = default_registry()
RR = SmartLoadRuleResource
RF = Path.of(26244, 0, 11)
LTE = Path.of(26244, 0, 5)
PORT = Path.of(3201, 1, 5550)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeBts:
    """A remote target: values, a switch to make it unreachable, and a log of attempts."""

    def __init__(self) -> None:
        self.values: dict[Path, Value] = {RF: 43.0, LTE: True}
        self.down = False
        self.refuse: set[Path] = set()
        self.hang = False
        self.attempts: list[tuple[str, Path, Value | None]] = []

    def _check(self) -> None:
        if self.down:
            raise TargetError(ResponseCode.SERVICE_UNAVAILABLE, "BTS unreachable")

    async def read(self, path: Path) -> Value:
        self.attempts.append(("read", path, None))
        self._check()
        return self.values[path]

    async def write(self, path: Path, value: Value) -> None:
        self.attempts.append(("write", path, value))
        if self.hang:
            await asyncio.sleep(10)
        self._check()
        if path in self.refuse:
            raise TargetError(ResponseCode.BAD_REQUEST, "edit refused")
        self.values[path] = value


def engine_with(*rules: tuple[int, float, Path, str, str]) -> RuleEngine:
    engine = RuleEngine(EngineConfig(confirm_seconds=0, dwell_seconds=0))
    for iid, threshold, path, text, kind in rules:
        engine.set_rule(parse_rule(iid, rule_resources(threshold, path, text, kind), REG), 0)
    return engine


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --------------------------------------------------------------------------------------- executor
def test_an_unreachable_target_is_retried_with_backoff_alerts_and_recovers() -> None:
    clock, bts = Clock(), FakeBts()
    alerts: list[bool] = []
    saved: list[dict[str, Any]] = []
    ex = SmartLoadExecutor(
        engine_with((0, 48.0, RF, "40", "Float")),
        bts,
        clock=clock,
        backoff=Backoff(initial=2, factor=2, maximum=10),
        alert_after=3,
        on_alert=alerts.append,
        persist=saved.append,
    )

    async def scenario() -> None:
        bts.down = True
        ex.sample(47.0)
        times = []
        for t in range(60):
            clock.t = float(t)
            if await ex.step():
                times.append(t)
        assert times == [0, 2, 6, 14, 24, 34, 44, 54]  # 2, 4, 8, then capped at 10
        assert alerts == [True] and ex.alert and ex.rule_fault(0)
        fault = ex.fault(RF)
        assert fault is not None and fault.code is ResponseCode.SERVICE_UNAVAILABLE and fault.failures == 8
        assert ex.engine.target(RF) is not None and ex.engine.pending()  # nothing applied, nothing lost
        assert bts.values[RF] == 43.0
        bts.down = False
        clock.t = 64
        await ex.settle()
        assert bts.values[RF] == 40.0 and ex.engine.pending() == []
        assert alerts == [True, False] and not ex.alert and not ex.rule_fault(0) and ex.faults() == []
        status = ex.engine.target(RF)
        assert status is not None and status.original == 43.0 and status.applied == 40.0

    run(scenario())
    assert saved and RuleEngine.restore(saved[-1]).target(RF) is not None


def test_a_refused_edit_is_written_again_after_the_rule_is_fixed() -> None:
    clock, bts = Clock(), FakeBts()
    ex = SmartLoadExecutor(engine_with((0, 48.0, RF, "40", "Float")), bts, clock=clock, alert_after=1)

    async def scenario() -> None:
        bts.refuse.add(RF)
        ex.sample(47.0)
        await ex.settle()
        assert ex.rule_fault(0) and ex.fault(RF) is not None
        bts.refuse.clear()
        # The operator fixes the rule: a new value is tried at once, without waiting for the backoff.
        ex.change_rules(lambda e, t: e.set_rule(parse_rule(0, rule_resources(48.0, RF, "41", "Float"), REG), t))
        await ex.settle()
        assert bts.values[RF] == 41.0 and not ex.alert

    run(scenario())


def test_failures_of_one_target_do_not_hold_up_another() -> None:
    clock, bts = Clock(), FakeBts()
    local: dict[Path, Value] = {PORT: True}

    class Port:
        async def read(self, path: Path) -> Value:
            return local[path]

        async def write(self, path: Path, value: Value) -> None:
            local[path] = value

    writer = RoutingTargetWriter({ids.SMART_LOAD_BTS: bts}, default=Port())
    ex = SmartLoadExecutor(
        engine_with((0, 48.0, RF, "40", "Float"), (1, 47.0, PORT, "0", "Boolean")), writer, clock=clock
    )
    bts.down = True

    async def scenario() -> None:
        ex.sample(46.0)
        await ex.settle()
        assert local[PORT] is False and bts.values[RF] == 43.0
        ex.sample(50.0)  # recovered: the port comes back even though the BTS is still down
        await ex.settle()
        assert local[PORT] is True and ex.engine.active_rules() == []
        assert ex.engine.targets() == [] and ex.faults() == []  # never written: nothing to restore

    run(scenario())


def test_timeouts_and_writer_crashes_are_failures_with_their_codes() -> None:
    clock, bts = Clock(), FakeBts()
    ex = SmartLoadExecutor(engine_with((0, 48.0, RF, "40", "Float")), bts, clock=clock, write_timeout=0.01)

    async def scenario() -> None:
        bts.hang = True
        ex.sample(47.0)
        await ex.step()
        fault = ex.fault(RF)
        assert fault is not None and fault.code is ResponseCode.GATEWAY_TIMEOUT
        status = ex.engine.target(RF)
        assert status is not None and not status.applied_known  # the edit may or may not have landed

    run(scenario())

    class Broken:
        async def read(self, path: Path) -> Value:
            raise RuntimeError("socket closed")

        async def write(self, path: Path, value: Value) -> None:
            raise AssertionError("never written before the original was read")

    ex2 = SmartLoadExecutor(engine_with((0, 48.0, RF, "40", "Float")), Broken(), clock=clock)
    ex2.sample(47.0)
    run(ex2.step())
    fault = ex2.fault(RF)
    assert fault is not None and fault.code is ResponseCode.INTERNAL_SERVER_ERROR and "socket closed" in fault.message


def test_a_rule_change_that_cannot_be_saved_is_undone_and_answered_5_00() -> None:
    clock, bts = Clock(), FakeBts()

    def full_disk(_state: dict[str, Any]) -> None:
        raise OSError("no space left on device")

    ex = SmartLoadExecutor(engine_with((0, 48.0, RF, "40", "Float")), bts, clock=clock, persist=full_disk)
    before = ex.engine.snapshot()
    with pytest.raises(OperationError) as caught:
        ex.change_rules(lambda e, t: e.remove_rule(0, t))
    assert caught.value.code is ResponseCode.INTERNAL_SERVER_ERROR
    assert ex.engine.snapshot()["rules"] == before["rules"]


def test_state_survives_a_reboot_in_the_middle_of_a_shed() -> None:
    clock, bts = Clock(), FakeBts()
    saved: list[dict[str, Any]] = []
    engine = engine_with((0, 48.0, RF, "40", "Float"), (1, 47.0, LTE, "0", "Boolean"))
    ex = SmartLoadExecutor(engine, bts, clock=clock, persist=saved.append)
    ex.sample(46.0)
    run(ex.settle())
    assert bts.values == {RF: 40.0, LTE: False}
    # Reboot: a new engine from the last saved state (through JSON, as on disk).
    state = json.loads(json.dumps(saved[-1]))
    clock.t = 1000
    ex2 = SmartLoadExecutor(RuleEngine.restore(state), bts, clock=clock)
    assert ex2.engine.active_rules() == [0, 1]
    ex2.sample(50.0)
    run(ex2.settle())
    assert bts.values == {RF: 43.0, LTE: True}  # the originals were remembered across the reboot


def test_run_loop_retries_by_itself() -> None:
    bts = FakeBts()

    async def scenario() -> None:
        ex = SmartLoadExecutor(
            engine_with((0, 48.0, RF, "40", "Float")),
            bts,
            clock=lambda: asyncio.get_running_loop().time(),
            backoff=Backoff(initial=0.01, factor=2, maximum=0.05),
        )
        bts.down = True
        task = asyncio.create_task(ex.run())
        ex.sample(47.0)
        for _ in range(2000):  # retried with backoff while the BTS is down (20 s at most)
            if len(bts.attempts) >= 3:
                break
            await asyncio.sleep(0.01)
        assert bts.values[RF] == 43.0 and len(bts.attempts) >= 3
        bts.down = False
        for _ in range(2000):
            await asyncio.sleep(0.01)
            if bts.values[RF] == 40.0:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert bts.values[RF] == 40.0 and not ex.alert

    run(scenario())


def test_backoff() -> None:
    backoff = Backoff(initial=2, factor=3, maximum=100)
    assert [backoff.delay(n) for n in range(6)] == [0, 2, 6, 18, 54, 100]
    assert Backoff().delay(10_000) == 300


# ------------------------------------------------------------------- the Rules object on a real tree
def charger_tree() -> tuple[ObjectTree, StoredObject, StoredObject, StoredObject]:
    tree = ObjectTree(REG)
    outputs = StoredObject(REG.get(ids.DIGITAL_OUTPUT))  # type: ignore[arg-type]
    for port in (0, 1):
        outputs.add_instance(port, {5550: SingleResource(5550, True, REG.get(ids.DIGITAL_OUTPUT).resources[5550].type)})  # type: ignore[union-attr]
    bts = StoredObject(REG.get(ids.SMART_LOAD_BTS))  # type: ignore[arg-type]
    model = REG.get(ids.SMART_LOAD_BTS)
    assert model is not None
    bts.add_instance(
        0,
        {
            rid: SingleResource(rid, value, model.resources[rid].type)
            for rid, value in {11: 43.0, 5: True, 6: True, 1: True, 9: False}.items()
        },
    )
    voltage = StoredObject(REG.get(ids.VOLTAGE))  # type: ignore[arg-type]
    voltage.add_instance(0, {5700: SingleResource(5700, 48.2, REG.get(ids.VOLTAGE).resources[5700].type)})  # type: ignore[union-attr]
    alerts = StoredObject(REG.get(ids.ALERTS))  # type: ignore[arg-type]
    alerts.add_instance(1)
    for enabler in (outputs, bts, voltage, alerts):
        tree.add(enabler)
    return tree, outputs, bts, alerts


def rule_instance(iid: int | None, threshold: float, target: str, text: str, kind: str, **kw: Any) -> ObjectInstance:
    model = REG.get(ids.SMART_LOAD_RULES)
    assert model is not None
    values = rule_resources(threshold, target, text, kind, **kw)
    return ObjectInstance(iid, {rid: SingleResource(rid, v, model.resources[rid].type) for rid, v in values.items()})


def installed(clock: Clock, **kw: Any) -> tuple[ObjectTree, SmartLoad, StoredObject, StoredObject]:
    tree, outputs, _bts, alerts = charger_tree()
    smart = install_smart_load(tree, clock=clock, config=EngineConfig(confirm_seconds=60, dwell_seconds=300), **kw)
    return tree, smart, outputs, alerts


def value(tree: ObjectTree, path: str) -> Value:
    node = tree.read(Path.parse(path), BOOTSTRAP)
    assert isinstance(node, SingleResource)
    return node.value


def test_rules_are_created_read_and_listed_through_the_tree() -> None:
    tree, smart, _, _ = installed(Clock())
    rules = Path.of(ids.SMART_LOAD_RULES)
    iid = tree.create(rules, rule_instance(None, 48.0, "/26244/0/11", "40", "Float"))
    assert iid == 0 and Path.of(ids.SMART_LOAD_RULES, 0) in tree.instance_paths()
    instance = tree.read(rules.child(0))
    assert isinstance(instance, ObjectInstance)
    assert instance.resources[RR.VALUE].value == b"40" and instance.resources[RR.TYPE].value == "Float"
    assert instance.resources[RR.ACTIVE].value is False and instance.resources[RR.FAULT].value is False
    assert RR.HYSTERESIS not in instance.resources
    assert smart.engine.rule(0) is not None
    with pytest.raises(OperationError) as caught:
        tree.create(rules, rule_instance(0, 47.0, "/26244/0/5", "0", "Boolean"))
    assert caught.value.code is ResponseCode.BAD_REQUEST


@pytest.mark.parametrize(
    ("target", "text", "kind", "code", "message"),
    [
        ("/3303/0/5700", "1", "Float", ResponseCode.NOT_FOUND, "not known to this client"),
        ("/26244/0/999", "1", "Integer", ResponseCode.NOT_FOUND, "no resource 999"),
        ("/26244/7/11", "40", "Float", ResponseCode.NOT_FOUND, "/26244/7 does not exist"),
        ("/3316/0/5700", "1", "Float", ResponseCode.BAD_REQUEST, "not writable"),
        ("/26244/0/11", "fourty", "Float", ResponseCode.BAD_REQUEST, "not a valid Float"),
        ("/26244/0/5", "yes", "Boolean", ResponseCode.BAD_REQUEST, "not a valid Boolean"),
        ("/26244/0/11", "40", "Real", ResponseCode.BAD_REQUEST, "Type 'Real'"),
    ],
)
def test_invalid_rule_creates_are_refused_and_leave_nothing(
    target: str, text: str, kind: str, code: ResponseCode, message: str
) -> None:
    tree, smart, _, _ = installed(Clock())
    with pytest.raises(OperationError) as caught:
        tree.create(Path.of(ids.SMART_LOAD_RULES), rule_instance(None, 48.0, target, text, kind))
    assert caught.value.code is code and message in caught.value.reason
    assert smart.engine.rules() == [] and tree.enabler(ids.SMART_LOAD_RULES).instance_ids() == []


def test_rule_writes_partial_replace_and_refusals_are_all_or_nothing() -> None:
    tree, smart, _, _ = installed(Clock())
    base = Path.of(ids.SMART_LOAD_RULES, 0)
    tree.create(Path.of(ids.SMART_LOAD_RULES), rule_instance(0, 48.0, "/26244/0/11", "40", "Float", hysteresis=0.5))
    tree.write(base.child(0), SingleResource(0, 47.5, REG.get(ids.SMART_LOAD_RULES).resources[0].type), replace=False)  # type: ignore[union-attr]
    rule = smart.engine.rule(0)
    assert rule is not None and rule.threshold == 47.5 and rule.hysteresis == 0.5
    # A Type that the Value does not parse as: 4.00, and the rule is unchanged.
    with pytest.raises(OperationError) as caught:
        tree.write(
            base.child(int(RR.TYPE)),
            SingleResource(int(RR.TYPE), "Boolean", REG.get(ids.SMART_LOAD_RULES).resources[RR.TYPE].type),
            replace=False,
        )  # type: ignore[union-attr]
    assert caught.value.code is ResponseCode.BAD_REQUEST and smart.engine.rule(0) == rule
    # A Replace with an invalid value leaves Hysteresis in place (the removal and the write go together).
    with pytest.raises(OperationError):
        tree.write(base, rule_instance(0, 48.0, "/26244/0/11", "70", "Float"), replace=True)
    assert smart.engine.rule(0) == rule
    # A valid Replace without Hysteresis removes it.
    tree.write(base, rule_instance(0, 48.0, "/26244/0/11", "39", "Float"), replace=True)
    rule = smart.engine.rule(0)
    assert rule is not None and rule.hysteresis is None and rule.value == 39.0
    # Active is read-only for a server.
    with pytest.raises(OperationError) as caught:
        tree.write(
            base.child(int(RR.ACTIVE)),
            SingleResource(int(RR.ACTIVE), True, REG.get(ids.SMART_LOAD_RULES).resources[RR.ACTIVE].type),
            replace=False,
        )  # type: ignore[union-attr]
    assert caught.value.code is ResponseCode.METHOD_NOT_ALLOWED


def test_end_to_end_shed_override_delete_and_alert_on_a_charger_tree() -> None:
    fake_time = Clock()
    tree, smart, _outputs, alerts = installed(fake_time)
    changed: list[Path] = []
    tree.listeners.append(changed.append)
    smart.executor.on_alert = alert_setter(alerts, 1)
    rules = Path.of(ids.SMART_LOAD_RULES)
    for iid, resources in enumerate(default_rule_resources()):
        model = REG.get(ids.SMART_LOAD_RULES)
        assert model is not None
        tree.create(
            rules, ObjectInstance(iid, {r: SingleResource(r, v, model.resources[r].type) for r, v in resources.items()})
        )
    assert len(smart.engine.rules()) == len(DEFAULT_RULES) == 6

    async def at(t: float, volts: float) -> None:
        fake_time.t = t
        smart.executor.sample(volts)
        await smart.executor.settle()

    async def scenario() -> None:
        for t in range(0, 200, 10):
            await at(t, 45.0)
        assert value(tree, "/26244/0/11") == 30.0  # 33 dBm (the example BTS) − 3 dB
        assert value(tree, "/26244/0/5") is False and value(tree, "/26244/0/6") is False
        assert value(tree, "/26244/0/1") is False and value(tree, "/26244/0/9") is True
        assert value(tree, "/3201/1/5550") is False and value(tree, "/3201/0/5550") is True
        assert Path.of(ids.SMART_LOAD_RULES, 0, int(RR.ACTIVE)) in changed
        assert value(tree, "/26245/5/7") is True
        # The operator switches the shed port back on by hand: an override, not undone by the rule.
        tree.write(
            Path.parse("/3201/1/5550"), SingleResource(5550, True, REG.get(3201).resources[5550].type), replace=False
        )  # type: ignore[union-attr]
        for t in range(200, 800, 10):
            await at(t, 45.0)
        assert value(tree, "/3201/1/5550") is True and smart.engine.is_suspended(5)
        # Deleting the RF rule while active restores RF power at once.
        tree.delete(Path.of(ids.SMART_LOAD_RULES, 0))
        await smart.executor.settle()
        assert value(tree, "/26244/0/11") == 43.0
        # The Digital Output now refuses writes: retried, Fault and the alert go up, then clear.
        outputs = tree.enabler(3201)
        assert isinstance(outputs, StoredObject)

        def refuse(_iid: int, _resource: Any) -> None:
            raise OperationError(ResponseCode.METHOD_NOT_ALLOWED, "port locked out")

        outputs.set_write_hook(5550, refuse)
        tree.create(rules, rule_instance(9, 46.0, "/3201/0/5550", "0", "Boolean"))
        for t in range(800, 1400, 10):
            await at(t, 45.0)
        assert value(tree, "/26245/9/9") is True and value(tree, "/26243/1/13") is True
        assert smart.executor.fault(Path.parse("/3201/0/5550")).code is ResponseCode.METHOD_NOT_ALLOWED  # type: ignore[union-attr]
        outputs._write_hooks.clear()
        for t in range(1400, 2000, 10):
            await at(t, 45.0)
        assert value(tree, "/3201/0/5550") is False
        assert value(tree, "/26245/9/9") is False and value(tree, "/26243/1/13") is False
        # Recovery: everything back, the overridden port stays on.
        for t in range(2000, 4000, 10):
            await at(t, 52.0)
        assert value(tree, "/26244/0/5") is True and value(tree, "/26244/0/1") is True
        assert value(tree, "/26244/0/9") is False and value(tree, "/3201/0/5550") is True
        assert value(tree, "/3201/1/5550") is True and smart.engine.targets() == []
        assert all(value(tree, f"/26245/{i}/7") is False for i in (1, 2, 3, 4, 5, 9))

    run(scenario())


def test_tree_writer_reports_only_foreign_changes_of_held_targets() -> None:
    tree, outputs, _bts, _alerts = charger_tree()
    writer = TreeTargetWriter(tree)
    seen: list[tuple[Path, Value]] = []
    writer.watch(lambda p, v: seen.append((p, v)), wants=lambda p: p == PORT)
    run(writer.write(PORT, False))
    assert seen == [] and run(writer.read(PORT)) is False
    outputs.set_value(1, SingleResource(5550, True, REG.get(3201).resources[5550].type))  # type: ignore[union-attr]
    assert seen == [(PORT, True)]
    with pytest.raises(TargetError) as caught:
        run(writer.write(Path.of(3316, 0, 5700), 1.0))
    assert caught.value.code is ResponseCode.METHOD_NOT_ALLOWED
    with pytest.raises(TargetError):
        run(writer.read(Path.of(3201, 7, 5550)))


def test_the_default_rule_set_is_valid_and_ordered() -> None:
    thresholds = [rule.threshold for rule in DEFAULT_RULES]
    assert thresholds == sorted(thresholds, reverse=True)
    assert thresholds == [49.2, 48.72, 48.72, 48.24, 47.66, 47.28]
    for iid, rule in enumerate(DEFAULT_RULES):
        parsed = parse_rule(iid, rule.resources(), REG)
        assert parsed.target == rule.target
    assert parse_rule(0, DEFAULT_RULES[0].resources(), REG).value == 30.0


@pytest.mark.parametrize(
    ("chemistry", "cells"),
    [(Chemistry.AGM, 24), (Chemistry.FLOODED, 24), (Chemistry.AGM, 6), (Chemistry.LIFEPO4, 16), (Chemistry.LIFEPO4, 4)],
)
def test_default_rules_act_above_the_sites_low_voltage_disconnect(chemistry: Chemistry, cells: int) -> None:
    # The simulated site's ports disconnect at the chemistry's LVD: every rule must be able to fire first.
    lvd = CHEMISTRIES[chemistry].lvd_v * cells
    rules = default_rules(rf_power_dbm=33.0, chemistry=chemistry.value, cells=cells, lvd_v=lvd)
    band = saving_band(chemistry.value, cells, lvd)
    assert rules[0].threshold == band.start_v and rules[-1].threshold == band.last_v
    assert all(r.threshold >= lvd + LVD_MARGIN_V_PER_CELL[chemistry.value] * cells - 1e-9 for r in rules)
    assert band.start_v > band.last_v > lvd
    # Resting at the start-saving voltage, the bank still holds a good share of its charge.
    battery = Battery(chemistry, 100.0, cells)
    soc_at_start = next(s / 100 for s in range(100, -1, -1) if battery.ocv_cell(s / 100) * cells <= band.start_v)
    assert soc_at_start >= 0.25


def test_default_rules_follow_the_site_and_the_bts() -> None:
    # A site whose LVD is set lower gets a lower band; the RF rule steps down from the BTS's own power.
    low = default_rules(rf_power_dbm=43.0, lvd_v=44.4)
    assert low[-1].threshold == 44.88 and low[0].threshold == 49.2 and low[0].value == "40"
    assert default_rules(rf_power_dbm=20.0)[0].value == "17"
    # RF power unknown: no RF rule rather than a guess that could raise a low-set BTS's power.
    unknown = default_rules(rf_power_dbm=None, shed_port=None)
    assert [r.purpose for r in unknown] == [
        "LTE data off",
        "EDGE data off",
        "one transceiver chain off",
        "emergency calls only",
    ]
    with pytest.raises(ValueError, match="no room"):
        saving_band("agm", 24, lvd_v=49.5)
