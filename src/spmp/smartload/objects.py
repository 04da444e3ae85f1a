"""Smart Load Rules (26245) on the charger: the object enabler that feeds the rules engine.

:class:`SmartLoadRulesObject` is the client-side object: a server's Create, Write (partial or
replace) and Delete on ``/26245`` become rule changes in the engine, through
:meth:`SmartLoadExecutor.change_rules` (all or nothing, persisted). The engine is the single source
of truth: reads are built from its rules, with Active (the rule is in force) and Fault (its target
cannot be written) computed live; :meth:`SmartLoadRulesObject.refresh` tells observers when they
change.

A rule write is validated before anything changes (the request is answered with the error and the
rule stays as it was):

* a target object this client does not have, a resource its model does not define, or an instance
  that does not exist: 4.04 Not Found;
* a target that is not a writable single resource, a Type that is not an LwM2M type, a Value that does
  not parse as Type or does not fit the target (type, range): 4.00 Bad Request;
* a change that cannot be persisted: 5.00, undone.

The target's own write happens afterwards, asynchronously, with retries (a BTS edit over NETCONF can
take longer than a CoAP exchange may wait); its failures show as Fault and the Smart Load Fault alert.

:func:`install_smart_load` wires everything into a charger's tree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from spmp.client.objects import StoredObject
from spmp.client.tree import ObjectTree
from spmp.lwm2m.model import ModelLookup, ObjectModel
from spmp.lwm2m.node import MultipleResource, ObjectInstance, Resource, SingleResource
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.objects.smart_load import SMART_LOAD_RULES, SmartLoadRuleResource
from spmp.lwm2m.response import OperationError, ResponseCode, bad_request, method_not_allowed, not_found
from spmp.lwm2m.values import Value
from spmp.smartload.executor import RoutingTargetWriter, SmartLoadExecutor, TargetWriter, TreeTargetWriter
from spmp.smartload.rules import EngineConfig, Rule, RuleEngine, parse_rule

__all__ = ["SmartLoad", "SmartLoadRulesObject", "install_smart_load"]

R = SmartLoadRuleResource
_COMPUTED = (int(R.ACTIVE), int(R.FAULT))


class _TreeModels:
    """The models of the objects a tree has: a rule may only target what this client exposes."""

    def __init__(self, tree: ObjectTree) -> None:
        self.tree = tree

    def object_model(self, object_id: int) -> ObjectModel | None:
        try:
            return self.tree.enabler(object_id).model
        except OperationError:
            return None


class SmartLoadRulesObject(StoredObject):
    """The Smart Load Rules object backed by a :class:`SmartLoadExecutor`'s engine."""

    def __init__(self, executor: SmartLoadExecutor, tree: ObjectTree | None = None) -> None:
        super().__init__(SMART_LOAD_RULES)
        self.executor = executor
        self.tree = tree
        self._models: ModelLookup = _TreeModels(tree) if tree is not None else default_registry()
        self._staged_removals: dict[int, set[int]] = {}
        self._seen: dict[tuple[int, int], bool] = {}
        previous = executor.on_change

        def changed() -> None:
            if previous is not None:
                previous()
            self.refresh()

        executor.on_change = changed

    @property
    def engine(self) -> RuleEngine:
        return self.executor.engine

    # -- validation ---------------------------------------------------------------------------------------
    def parse(self, instance_id: int, values: Mapping[int, Value]) -> Rule:
        """A rule from resource values, checked against this client's objects (OperationError if not)."""
        rule = parse_rule(instance_id, values, self._models)
        if self.tree is not None:
            assert rule.target.object_id is not None
            if rule.target.instance_id not in self.tree.enabler(rule.target.object_id).instance_ids():
                raise not_found(f"rule target {rule.target}: instance {rule.target.parent} does not exist")
        return rule

    def _rule(self, instance_id: int) -> Rule:
        rule = self.engine.rule(instance_id)
        if rule is None:
            raise not_found(f"/{self._model.id}/{instance_id} does not exist")
        return rule

    @staticmethod
    def _values(resources: Mapping[int, Resource]) -> dict[int, Value]:
        values: dict[int, Value] = {}
        for rid, resource in resources.items():
            if rid in _COMPUTED:
                continue  # computed by the charger; a bootstrap or rollback write may carry them
            if isinstance(resource, MultipleResource):
                raise bad_request(f"resource {rid} of a rule is a single resource")
            values[rid] = resource.value
        return values

    # -- ObjectEnabler ----------------------------------------------------------------------------------
    def instance_ids(self) -> list[int]:
        return sorted(rule.id for rule in self.engine.rules())

    def read_instance(self, instance_id: int) -> ObjectInstance:
        values = self._rule(instance_id).resources()
        values[int(R.ACTIVE)] = self.engine.is_active(instance_id)
        values[int(R.FAULT)] = self.executor.rule_fault(instance_id)
        resources: dict[int, Resource] = {
            rid: SingleResource(rid, value, self._model.resources[rid].type) for rid, value in sorted(values.items())
        }
        return ObjectInstance(instance_id, resources)

    def write(self, instance_id: int, resources: Mapping[int, Resource]) -> None:
        staged = self._staged_removals.pop(instance_id, set())
        values = self._rule(instance_id).resources()
        for rid in staged:
            values.pop(rid, None)
        values.update(self._values(resources))
        rule = self.parse(instance_id, values)
        self.executor.change_rules(lambda engine, t: engine.set_rule(rule, t))
        for rid in sorted(set(resources) | staged):
            self._changed(instance_id, rid)

    def remove_resources(self, instance_id: int, resource_ids: list[int]) -> None:
        """Staged: a Replace removes resources and then writes, and the two apply together (or neither)."""
        self._rule(instance_id)
        self._staged_removals[instance_id] = {rid for rid in resource_ids if rid not in _COMPUTED}

    def create(self, instance_id: int, resources: Mapping[int, Resource]) -> None:
        self._staged_removals.pop(instance_id, None)
        if self.engine.rule(instance_id) is not None:
            raise OperationError(ResponseCode.BAD_REQUEST, f"/{self._model.id}/{instance_id} already exists")
        rule = self.parse(instance_id, self._values(resources))
        self.executor.change_rules(lambda engine, t: engine.set_rule(rule, t))
        self.refresh()

    def delete(self, instance_id: int) -> None:
        self._staged_removals.pop(instance_id, None)
        self._rule(instance_id)
        self.executor.change_rules(lambda engine, t: engine.remove_rule(instance_id, t))
        for key in [k for k in self._seen if k[0] == instance_id]:
            del self._seen[key]

    def execute(self, instance_id: int, resource_id: int, arguments: Mapping[int, str | None]) -> None:
        self._rule(instance_id)
        raise method_not_allowed(f"/{self._model.id}/{instance_id}/{resource_id} cannot be executed")

    def add_instance(self, instance_id: int, resources: ObjectInstance | Mapping[int, Resource] | None = None) -> None:
        """Application side (e.g. the default rule set): create a rule without a server."""
        values = resources.resources if isinstance(resources, ObjectInstance) else (resources or {})
        self.create(instance_id, values)

    # -- observation --------------------------------------------------------------------------------------
    def refresh(self) -> int:
        """Tell observers about Active / Fault values that changed; returns how many."""
        changed = 0
        for rule in self.engine.rules():
            for rid, value in (
                (R.ACTIVE, self.engine.is_active(rule.id)),
                (R.FAULT, self.executor.rule_fault(rule.id)),
            ):
                key = (rule.id, int(rid))
                if self._seen.get(key, False) != value:
                    self._seen[key] = value
                    self._changed(rule.id, int(rid))
                    changed += 1
        return changed


@dataclass(slots=True)
class SmartLoad:
    """Everything :func:`install_smart_load` built."""

    engine: RuleEngine
    executor: SmartLoadExecutor
    rules: SmartLoadRulesObject
    local_writer: TreeTargetWriter


def install_smart_load(
    tree: ObjectTree,
    *,
    remote_writers: Mapping[int, TargetWriter] | None = None,
    state: Mapping[str, Any] | None = None,
    config: EngineConfig | None = None,
    persist: Callable[[dict[str, Any]], None] | None = None,
    on_alert: Callable[[bool], None] | None = None,
    clock: Callable[[], float] = time.time,
    **executor_options: Any,
) -> SmartLoad:
    """Build the engine (from a persisted ``state`` when given), its executor and the Rules object.

    Targets of the tree's own objects are written in-process; ``remote_writers`` route other
    object ids (Smart Load (BTS) 26244 → the NETCONF bridge). Manual writes to held local targets
    become overrides. Run ``smart_load.executor.run()`` as a task and call
    ``smart_load.executor.sample(volts)`` with every battery-voltage measurement.
    """
    engine = RuleEngine.restore(state) if state is not None else RuleEngine(config)
    local = TreeTargetWriter(tree)
    routes = dict(remote_writers or {})
    writer = RoutingTargetWriter(routes, default=local) if routes else local
    executor = SmartLoadExecutor(engine, writer, clock=clock, persist=persist, on_alert=on_alert, **executor_options)
    local.watch(executor.external_write, wants=lambda path: path.object_id not in routes and engine.holds(path))
    rules = SmartLoadRulesObject(executor, tree)
    tree.add(rules)
    return SmartLoad(engine, executor, rules, local)
