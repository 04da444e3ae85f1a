"""The smart-load rules engine: battery voltage in, intended writes to target resources out. Pure.

A :class:`Rule` is one instance of Smart Load Rules (26245): "while the battery is at or below
``threshold`` volts, write ``value`` into ``target``". :class:`RuleEngine` is the state machine that
decides, from timestamped voltage samples, which rules are active and what each target resource
should hold; it performs no I/O and never reads a clock (every call takes the time ``t``, seconds
on the caller's clock). The executor (:mod:`spmp.smartload.executor`) carries out the engine's
:class:`Intent` list and reports back; the engine's view of a target only changes when a write is
reported successful, so nothing is ever half-applied.

Semantics (docs/smart-load.md explains them with a worked example):

* **Confirmation.** A rule's condition must hold in every sample for ``confirm_seconds`` before the
  rule changes state; a dip shorter than that (a transmitter keying up, a rectifier's inrush) never
  acts. A gap between samples longer than ``max_sample_gap_seconds`` restarts every confirmation.
* **Hysteresis.** A rule activates at V ≤ threshold and clears at V > threshold + hysteresis
  (default 2 % of the threshold).
* **Dwell.** A rule stays in each state at least its dwell (default 300 s), and the rules never change
  a target twice within the dwell of the rule making the second change: with dwell D a target
  changes at most once per D seconds, whatever the voltage does.
* **Ordering.** Rules are ordered by threshold, highest first, ties by instance id. A rule activates
  only when every rule before it is active, and clears only when every rule after it has cleared:
  shedding goes down the list as the voltage falls, restoring comes back up in reverse.
* **Arbitration.** Several rules may target one resource: the deepest active rule (last in the
  order) wins; when it clears the next active rule's value applies, and when none is left the
  resource gets back its saved original value.
* **Manual override.** A write to a held target by anyone but the engine (an operator) becomes the
  target's new original, and suspends the rules holding the target at that moment until they clear;
  a rule that activates later (the battery got worse) takes the target again.
* **Rule changes.** Creating a rule starts it inactive; modifying a rule keeps its state (and lifts
  its suspension) and re-arbitrates its old and new targets at once; deleting one releases its target
  at once (next active rule, or the original value). Operator actions are not subject to dwell.
* **Persistence.** :meth:`RuleEngine.snapshot` is plain JSON-able data holding rules, their states,
  the saved originals and what is known to be applied; :meth:`RuleEngine.restore` rebuilds the engine.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spmp.lwm2m.codecs._common import text_to_value, value_to_text
from spmp.lwm2m.errors import CodecError, InvalidValueError
from spmp.lwm2m.model import ModelLookup, ResourceType
from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.smart_load import RULE_VALUE_TYPES, SmartLoadRuleResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.response import bad_request, not_found
from spmp.lwm2m.values import Value, check_range, coerce

__all__ = [
    "DEFAULT_CONFIRM_SECONDS",
    "DEFAULT_DWELL_SECONDS",
    "DEFAULT_HYSTERESIS_FRACTION",
    "DEFAULT_MAX_SAMPLE_GAP_SECONDS",
    "EngineConfig",
    "Intent",
    "Rule",
    "RuleEngine",
    "TargetStatus",
    "parse_rule",
    "rule_resources",
    "same_value",
]

DEFAULT_CONFIRM_SECONDS = 60.0
"""How long a rule's condition must hold before the rule changes state."""
DEFAULT_DWELL_SECONDS = 300.0
"""Minimum time in each state, and between two rule-made changes of one target (Minimum Dwell absent)."""
DEFAULT_HYSTERESIS_FRACTION = 0.02
"""Hysteresis when a rule has none: 2 % of its threshold (recorded in the Smart Load Rules object)."""
DEFAULT_MAX_SAMPLE_GAP_SECONDS = 120.0
"""A longer gap between samples (a reboot, a sensor outage) restarts every confirmation."""

R = SmartLoadRuleResource


@dataclass(frozen=True, slots=True)
class EngineConfig:
    confirm_seconds: float = DEFAULT_CONFIRM_SECONDS
    dwell_seconds: float = DEFAULT_DWELL_SECONDS
    max_sample_gap_seconds: float = DEFAULT_MAX_SAMPLE_GAP_SECONDS


def same_value(a: Value | None, b: Value | None) -> bool:
    """Equal values of the same Python type (``True == 1`` must not count as the same value)."""
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------------------------------------ rules
@dataclass(frozen=True, slots=True)
class Rule:
    """One Smart Load Rules instance, validated and with its value typed for the target resource."""

    id: int
    threshold: float
    target: Path
    value: Value
    target_type: ResourceType
    raw_value: bytes
    """The Value resource as written (plain-text encoding, or raw bytes for Type Opaque)."""
    type_name: str
    """The Type resource as written."""
    hysteresis: float | None = None
    dwell: float | None = None

    @property
    def effective_hysteresis(self) -> float:
        return self.hysteresis if self.hysteresis is not None else DEFAULT_HYSTERESIS_FRACTION * self.threshold

    @property
    def clear_above(self) -> float:
        """The rule clears once the voltage is above this level."""
        return self.threshold + self.effective_hysteresis

    @property
    def order(self) -> tuple[float, int]:
        """Firing order: highest threshold first, ties by instance id."""
        return (-self.threshold, self.id)

    def resources(self) -> dict[int, Value]:
        """The writable resources of the rule's object instance."""
        assert self.target.object_id is not None and self.target.instance_id is not None
        assert self.target.resource_id is not None
        values: dict[int, Value] = {
            int(R.VOLTAGE_THRESHOLD): self.threshold,
            int(R.OBJECT_ID): self.target.object_id,
            int(R.OBJECT_INSTANCE_ID): self.target.instance_id,
            int(R.RESOURCE_ID): self.target.resource_id,
            int(R.VALUE): self.raw_value,
            int(R.TYPE): self.type_name,
        }
        if self.hysteresis is not None:
            values[int(R.HYSTERESIS)] = self.hysteresis
        if self.dwell is not None:
            values[int(R.MINIMUM_DWELL)] = int(self.dwell)
        return values


def rule_resources(
    threshold: float,
    target: Path | str,
    value: str | bytes,
    type_name: str,
    *,
    hysteresis: float | None = None,
    dwell: int | None = None,
) -> dict[int, Value]:
    """The resources of a Smart Load Rules instance, from readable arguments (``value`` as its text)."""
    path = Path.parse(target) if isinstance(target, str) else target
    if not path.is_resource:
        raise ValueError(f"a rule targets a resource, not {path}")
    assert path.object_id is not None and path.instance_id is not None and path.resource_id is not None
    values: dict[int, Value] = {
        int(R.VOLTAGE_THRESHOLD): float(threshold),
        int(R.OBJECT_ID): path.object_id,
        int(R.OBJECT_INSTANCE_ID): path.instance_id,
        int(R.RESOURCE_ID): path.resource_id,
        int(R.VALUE): value.encode() if isinstance(value, str) else value,
        int(R.TYPE): type_name,
    }
    if hysteresis is not None:
        values[int(R.HYSTERESIS)] = float(hysteresis)
    if dwell is not None:
        values[int(R.MINIMUM_DWELL)] = dwell
    return values


def _number(resources: Mapping[int, Value], rid: int, name: str) -> float | None:
    value = resources.get(rid)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad_request(f"rule {name} must be a finite number, got {value!r}")
    return float(value)


def _integer(resources: Mapping[int, Value], rid: int, name: str) -> int:
    value = resources.get(rid)
    if value is None:
        raise bad_request(f"rule {name} is missing")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65534:
        raise bad_request(f"rule {name} must be an integer in 0..65534, got {value!r}")
    return value


def parse_rule(instance_id: int, resources: Mapping[int, Value], models: ModelLookup) -> Rule:
    """Validate a rule's resources against the target's model; OperationError (4.00 / 4.04) when invalid.

    Unknown target object or resource: 4.04. A target that is not a writable single resource, a Type
    that is not an LwM2M data type, a Value that does not parse as Type or does not fit the target
    resource (type, range): 4.00. The message says which.
    """
    threshold = _number(resources, R.VOLTAGE_THRESHOLD, "Voltage Threshold")
    if threshold is None:
        raise bad_request("rule Voltage Threshold is missing")
    if threshold <= 0:
        raise bad_request(f"rule Voltage Threshold must be positive, got {threshold}")
    hysteresis = _number(resources, R.HYSTERESIS, "Hysteresis")
    if hysteresis is not None and hysteresis < 0:
        raise bad_request(f"rule Hysteresis must not be negative, got {hysteresis}")
    dwell = _number(resources, R.MINIMUM_DWELL, "Minimum Dwell")
    if dwell is not None and dwell < 0:
        raise bad_request(f"rule Minimum Dwell must not be negative, got {dwell}")
    object_id = _integer(resources, R.OBJECT_ID, "Object ID")
    target_instance = _integer(resources, R.OBJECT_INSTANCE_ID, "Object Instance ID")
    resource_id = _integer(resources, R.RESOURCE_ID, "Resource ID")
    target = Path.of(object_id, target_instance, resource_id)
    if object_id == ids.SMART_LOAD_RULES:
        raise bad_request(f"a rule cannot target the Smart Load Rules object ({target})")
    object_model = models.object_model(object_id)
    if object_model is None:
        raise not_found(f"rule target {target}: object {object_id} is not known to this client")
    resource_model = object_model.resource(resource_id)
    if resource_model is None:
        raise not_found(f"rule target {target}: object {object_id} ({object_model.name}) has no resource {resource_id}")
    if not resource_model.operations.writable:
        raise bad_request(f"rule target {target} ({resource_model.name}) is not writable")
    if resource_model.multiple:
        raise bad_request(f"rule target {target} ({resource_model.name}) is a multiple resource")
    type_name = resources.get(R.TYPE)
    if not isinstance(type_name, str):
        raise bad_request("rule Type is missing")
    wanted = next((t for t in RULE_VALUE_TYPES if t.lower() == type_name.strip().lower()), None)
    if wanted is None:
        raise bad_request(f"rule Type {type_name!r} is not one of {', '.join(RULE_VALUE_TYPES)}")
    kind = ResourceType(wanted)
    raw = resources.get(R.VALUE)
    if not isinstance(raw, bytes):
        raise bad_request("rule Value is missing")
    where = f"rule {instance_id} Value"
    try:
        if kind is ResourceType.OPAQUE:
            parsed: Value = raw
        else:
            parsed = text_to_value(raw.decode("utf-8"), kind, "text/plain", where)
        value = coerce(parsed, resource_model.type, path=str(target))
        check_range(value, resource_model, path=str(target))
    except UnicodeDecodeError:
        raise bad_request(f"{where} is not UTF-8 text") from None
    except CodecError as exc:
        raise bad_request(f"{where} {raw[:40]!r} is not a valid {wanted}: {exc}") from None
    except InvalidValueError as exc:
        raise bad_request(
            f"{where} does not fit {target} ({resource_model.name}, {resource_model.type.value}): {exc}"
        ) from None
    return Rule(
        id=instance_id,
        threshold=threshold,
        target=target,
        value=value,
        target_type=resource_model.type,
        raw_value=raw,
        type_name=type_name,
        hysteresis=hysteresis,
        dwell=dwell,
    )


# ----------------------------------------------------------------------------------------------- engine
@dataclass(frozen=True, slots=True)
class Intent:
    """A write the engine wants done: ``value`` into ``path``.

    ``read_original``: read the target's current value first and report it with
    :meth:`RuleEngine.record_original` (the value to restore later), then write.
    ``restore``: no rule holds the target any more; ``value`` is its original.
    """

    path: Path
    value: Value
    read_original: bool
    restore: bool
    rule_id: int | None
    """The rule whose value this is (None for a restore)."""


@dataclass(frozen=True, slots=True)
class TargetStatus:
    path: Path
    desired: Value | None
    original: Value | None
    applied: Value | None
    applied_known: bool
    suspended: frozenset[int]


@dataclass(slots=True)
class _RuleState:
    rule: Rule
    active: bool = False
    since: float | None = None
    """When the rule last changed state (None: never)."""
    pending_since: float | None = None
    """Start of the current run of samples in which the condition for the other state holds."""


@dataclass(slots=True)
class _Target:
    """A resource the engine holds: from the first rule taking it until its original is back."""

    path: Path
    kind: ResourceType
    desired: Value | None = None
    original: Value | None = None
    """None until read (nothing is written before)."""
    applied: Value | None = None
    applied_known: bool = False
    """False before the original is read and after a failed write (the target may hold anything)."""
    suspended: set[int] = field(default_factory=set)
    seq: int = 0


class RuleEngine:
    """The state machine; see the module docstring. Not thread-safe; deterministic."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._rules: dict[int, _RuleState] = {}
        self._targets: dict[Path, _Target] = {}
        self._last_change: dict[Path, float] = {}
        self._seq = 0
        self._last_t: float | None = None
        self._voltage: float | None = None
        self.revision = 0
        """Bumped by every change worth persisting (not by samples that only advance confirmations)."""

    # -- inspection -----------------------------------------------------------------------------------
    @property
    def voltage(self) -> float | None:
        return self._voltage

    def rules(self) -> list[Rule]:
        """Every rule, in firing order."""
        return [s.rule for s in self._ordered()]

    def rule(self, rule_id: int) -> Rule | None:
        state = self._rules.get(rule_id)
        return None if state is None else state.rule

    def is_active(self, rule_id: int) -> bool:
        state = self._rules.get(rule_id)
        return state is not None and state.active

    def active_rules(self) -> list[int]:
        return [s.rule.id for s in self._ordered() if s.active]

    def is_suspended(self, rule_id: int) -> bool:
        return any(rule_id in t.suspended for t in self._targets.values())

    def targets(self) -> list[TargetStatus]:
        return [
            TargetStatus(t.path, t.desired, t.original, t.applied, t.applied_known, frozenset(t.suspended))
            for t in sorted(self._targets.values(), key=lambda t: t.seq)
        ]

    def target(self, path: Path) -> TargetStatus | None:
        return next((t for t in self.targets() if t.path == path), None)

    def holds(self, path: Path) -> bool:
        """Whether the engine currently holds ``path`` (a rule took it and its original is not back)."""
        return path in self._targets

    def watches(self, path: Path) -> bool:
        """Whether any rule targets ``path``."""
        return any(s.rule.target == path for s in self._rules.values())

    # -- rules ------------------------------------------------------------------------------------------
    def set_rule(self, rule: Rule, t: float) -> None:
        """Create or modify a rule (an operator action: applies at once, not subject to dwell)."""
        self.revision += 1
        state = self._rules.get(rule.id)
        if state is None:
            self._rules[rule.id] = _RuleState(rule)
            return
        old_target = state.rule.target
        state.rule = rule
        state.pending_since = None
        for target in self._targets.values():
            target.suspended.discard(rule.id)
        self._rearbitrate(old_target, t)
        if rule.target != old_target:
            self._rearbitrate(rule.target, t)

    def remove_rule(self, rule_id: int, t: float) -> None:
        """Delete a rule; its target gets the next active rule's value or its original, at once."""
        state = self._rules.pop(rule_id, None)
        if state is None:
            return
        self.revision += 1
        for target in self._targets.values():
            target.suspended.discard(rule_id)
        self._rearbitrate(state.rule.target, t)
        if not self.watches(state.rule.target) and state.rule.target not in self._targets:
            self._last_change.pop(state.rule.target, None)

    # -- samples ----------------------------------------------------------------------------------------
    def sample(self, t: float, voltage: float) -> list[Intent]:
        """Feed one battery-voltage sample taken at ``t``; returns :meth:`pending`.

        A sample that is not a finite number (a failed sensor) is ignored. Time must not go back.
        """
        if not math.isfinite(t):
            raise ValueError(f"sample time {t!r} is not finite")
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"sample at {t} is older than the previous one at {self._last_t}")
        if not math.isfinite(voltage):
            return self.pending()
        if self._last_t is not None and t - self._last_t > self.config.max_sample_gap_seconds:
            for state in self._rules.values():
                state.pending_since = None
        self._last_t = t
        self._voltage = voltage
        for state in self._rules.values():
            rule = state.rule
            holds = voltage > rule.clear_above if state.active else voltage <= rule.threshold
            if not holds:
                state.pending_since = None
            elif state.pending_since is None:
                state.pending_since = t
        ordered = self._ordered()
        changed: set[Path] = set()
        for state in ordered:  # shedding: down the list, stopping at the first rule not ready
            if state.active:
                continue
            if not self._ready(state, t) or not self._toggle(state, t, changed):
                break
        for state in reversed(ordered):  # restoring: up the list
            if not state.active:
                continue
            if not self._ready(state, t) or not self._toggle(state, t, changed):
                break
        return self.pending()

    def pending(self) -> list[Intent]:
        """Writes still to do, in the order the engine decided them."""
        intents: list[Intent] = []
        for target in sorted(self._targets.values(), key=lambda t: t.seq):
            if target.desired is None:
                continue
            winner = self._winner(target.path)
            rule_id = None if winner is None else winner.rule.id
            if target.original is None:
                intents.append(Intent(target.path, target.desired, True, False, rule_id))
            elif not target.applied_known or not same_value(target.applied, target.desired):
                intents.append(Intent(target.path, target.desired, False, winner is None, rule_id))
        return intents

    # -- reports from the executor and the outside -------------------------------------------------------
    def record_original(self, path: Path, value: Value) -> None:
        """The value ``path`` held before the engine wrote it (read by the executor)."""
        target = self._targets.get(path)
        if target is None or target.original is not None:
            return
        self.revision += 1
        target.original = value
        target.applied = value
        target.applied_known = True
        if self._winner(path) is None:
            target.desired = value
        self._maybe_release(path)

    def record_applied(self, path: Path, value: Value) -> None:
        """A write of ``value`` into ``path`` succeeded."""
        target = self._targets.get(path)
        if target is None:
            return
        self.revision += 1
        target.applied = value
        target.applied_known = True
        self._maybe_release(path)

    def record_failure(self, path: Path) -> None:
        """A write into ``path`` failed or timed out: the target may hold anything; write again."""
        target = self._targets.get(path)
        if target is not None and target.original is not None and target.applied_known:
            self.revision += 1
            target.applied_known = False

    def external_write(self, path: Path, value: Value, t: float) -> bool:
        """Someone other than the engine wrote ``value`` into ``path`` (a manual override).

        When the engine holds ``path``, the value becomes its original (restored when the rules
        clear), the rules holding it now are suspended until they clear, and rule-made changes wait
        a dwell. Returns whether the engine held the target.
        """
        target = self._targets.get(path)
        if target is None:
            return False
        try:
            value = coerce(value, target.kind, path=str(path))
        except InvalidValueError:
            return False
        self.revision += 1
        target.original = value
        target.applied = value
        target.applied_known = True
        target.suspended = {s.rule.id for s in self._rules_on(path) if s.active}
        target.desired = value
        self._seq += 1
        target.seq = self._seq
        self._last_change[path] = t
        self._maybe_release(path)
        return True

    # -- internals ----------------------------------------------------------------------------------------
    def _ordered(self) -> list[_RuleState]:
        return sorted(self._rules.values(), key=lambda s: s.rule.order)

    def _rules_on(self, path: Path) -> list[_RuleState]:
        return [s for s in self._ordered() if s.rule.target == path]

    def _dwell(self, state: _RuleState) -> float:
        return state.rule.dwell if state.rule.dwell is not None else self.config.dwell_seconds

    def _ready(self, state: _RuleState, t: float) -> bool:
        if state.pending_since is None or t - state.pending_since < self.config.confirm_seconds:
            return False
        return state.since is None or t - state.since >= self._dwell(state)

    def _winner(self, path: Path) -> _RuleState | None:
        target = self._targets.get(path)
        suspended = target.suspended if target is not None else set()
        active = [s for s in self._rules_on(path) if s.active and s.rule.id not in suspended]
        return active[-1] if active else None

    def _wanted(self, path: Path) -> Value | None:
        winner = self._winner(path)
        if winner is not None:
            return winner.rule.value
        target = self._targets.get(path)
        return None if target is None else target.original

    def _toggle(self, state: _RuleState, t: float, changed: set[Path]) -> bool:
        """Flip a ready rule unless the dwell of its target forbids the resulting change."""
        path = state.rule.target
        target = self._targets.get(path)
        before = None if target is None else target.desired
        state.active = not state.active
        after = self._wanted(path)
        if not same_value(before, after):
            last = self._last_change.get(path)
            if path not in changed and last is not None and t - last < self._dwell(state):
                state.active = not state.active
                return False
            self._commit(path, after, state.rule.target_type, t)
            changed.add(path)
        self.revision += 1
        state.since = t
        state.pending_since = None
        if not state.active:
            for held in self._targets.values():
                held.suspended.discard(state.rule.id)
            self._maybe_release(path)
        return True

    def _rearbitrate(self, path: Path, t: float) -> None:
        target = self._targets.get(path)
        before = None if target is None else target.desired
        after = self._wanted(path)
        winner = self._winner(path)
        if not same_value(before, after):
            kind = winner.rule.target_type if winner is not None else (target.kind if target else ResourceType.STRING)
            self._commit(path, after, kind, t)
        self._maybe_release(path)

    def _commit(self, path: Path, value: Value | None, kind: ResourceType, t: float) -> None:
        target = self._targets.get(path)
        if value is None:
            self._targets.pop(path, None)  # nothing was written yet: the original was never read
        else:
            if target is None:
                target = self._targets[path] = _Target(path, kind)
            target.desired = value
            self._seq += 1
            target.seq = self._seq
        self._last_change[path] = t

    def _maybe_release(self, path: Path) -> None:
        """Forget a target once no rule is active on it and its original is back on it."""
        target = self._targets.get(path)
        if target is None or any(s.active for s in self._rules_on(path)):
            return
        back = target.applied_known and same_value(target.applied, target.original)
        if target.original is None or back:
            del self._targets[path]

    # -- persistence -------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The engine's whole state as JSON-able plain data (see :meth:`restore`)."""
        return {
            "version": 1,
            "config": {
                "confirm_seconds": self.config.confirm_seconds,
                "dwell_seconds": self.config.dwell_seconds,
                "max_sample_gap_seconds": self.config.max_sample_gap_seconds,
            },
            "last_t": self._last_t,
            "voltage": self._voltage,
            "seq": self._seq,
            "rules": [
                {
                    "id": s.rule.id,
                    "threshold": s.rule.threshold,
                    "target": str(s.rule.target),
                    "value": _encode(s.rule.value, s.rule.target_type),
                    "target_type": s.rule.target_type.value,
                    "raw_value": base64.b64encode(s.rule.raw_value).decode("ascii"),
                    "type_name": s.rule.type_name,
                    "hysteresis": s.rule.hysteresis,
                    "dwell": s.rule.dwell,
                    "active": s.active,
                    "since": s.since,
                    "pending_since": s.pending_since,
                }
                for s in self._ordered()
            ],
            "targets": [
                {
                    "path": str(t.path),
                    "kind": t.kind.value,
                    "desired": _encode(t.desired, t.kind),
                    "original": _encode(t.original, t.kind),
                    "applied": _encode(t.applied, t.kind),
                    "applied_known": t.applied_known,
                    "suspended": sorted(t.suspended),
                    "seq": t.seq,
                }
                for t in sorted(self._targets.values(), key=lambda t: t.seq)
            ],
            "last_change": {str(path): when for path, when in sorted(self._last_change.items(), key=lambda i: i[1])},
        }

    @classmethod
    def restore(cls, data: Mapping[str, Any]) -> RuleEngine:
        """An engine in the state a :meth:`snapshot` recorded. ValueError when ``data`` is not one."""
        engine = cls()
        engine.load(data)
        return engine

    def load(self, data: Mapping[str, Any]) -> None:
        """Replace this engine's state with a snapshot's (all or nothing)."""
        try:
            if data.get("version") != 1:
                raise ValueError(f"unknown smart-load snapshot version {data.get('version')!r}")
            config = EngineConfig(**data["config"])
            rules: dict[int, _RuleState] = {}
            for item in data["rules"]:
                kind = ResourceType(item["target_type"])
                value = _decode(item["value"], kind)
                assert value is not None
                rule = Rule(
                    id=int(item["id"]),
                    threshold=float(item["threshold"]),
                    target=Path.parse(item["target"]),
                    value=value,
                    target_type=kind,
                    raw_value=base64.b64decode(item["raw_value"]),
                    type_name=str(item["type_name"]),
                    hysteresis=item["hysteresis"],
                    dwell=item["dwell"],
                )
                rules[rule.id] = _RuleState(rule, bool(item["active"]), item["since"], item["pending_since"])
            targets: dict[Path, _Target] = {}
            for item in data["targets"]:
                kind = ResourceType(item["kind"])
                path = Path.parse(item["path"])
                targets[path] = _Target(
                    path,
                    kind,
                    desired=_decode(item["desired"], kind),
                    original=_decode(item["original"], kind),
                    applied=_decode(item["applied"], kind),
                    applied_known=bool(item["applied_known"]),
                    suspended={int(i) for i in item["suspended"]},
                    seq=int(item["seq"]),
                )
            last_change = {Path.parse(p): float(w) for p, w in data["last_change"].items()}
            seq, last_t, voltage = int(data["seq"]), data["last_t"], data["voltage"]
        except (KeyError, TypeError, AttributeError, CodecError, InvalidValueError, AssertionError) as exc:
            raise ValueError(f"not a smart-load engine snapshot: {exc!r}") from None
        self.config, self._rules, self._targets, self._last_change = config, rules, targets, last_change
        self._seq, self._last_t, self._voltage = seq, last_t, voltage
        self.revision += 1


def _encode(value: Value | None, kind: ResourceType) -> str | None:
    return None if value is None else value_to_text(value, kind)


def _decode(text: str | None, kind: ResourceType) -> Value | None:
    return None if text is None else text_to_value(text, kind, "snapshot", "snapshot")
