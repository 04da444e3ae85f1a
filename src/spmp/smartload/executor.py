"""Carrying out the rules engine's decisions: target writers, retries with backoff, faults and alerts.

:class:`SmartLoadExecutor` owns a :class:`~spmp.smartload.rules.RuleEngine`. It feeds it voltage
samples and rule changes, and writes what the engine asks for through a :class:`TargetWriter`: the
in-process :class:`TreeTargetWriter` for resources of the charger's own object tree (a port's
Digital Output for load shedding, any writable local resource), a NETCONF writer for the BTS
(plugged in later), or a :class:`RoutingTargetWriter` choosing one by object id.

Never half-applied, never lost:

* The engine's view of a target changes only when a write is reported successful. A write that
  failed (:class:`TargetError`, a timeout, anything else) leaves the target "pending": it is retried
  with exponential backoff per target, and the target is written again even with a value it seemed
  to hold (a timed-out edit may or may not have landed).
* Before the first write to a target, its current value is read and recorded: that is what the
  engine restores.
* After every change worth keeping, the engine's :meth:`~spmp.smartload.rules.RuleEngine.snapshot`
  goes to ``persist`` (the charger stores it). A rule change that cannot be persisted is undone and
  answered 5.00, so the operator knows it did not take.

Faults: a target that failed ``alert_after`` times in a row is *faulted*: the rules targeting it
report Fault, and ``on_alert(True)`` raises the Smart Load Fault alert; it clears at the first
success (or when nothing is left to write there). Targets are written one at a time in the order the
engine decided; a faulted target waits for its backoff without holding up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from spmp.client.objects import StoredObject
from spmp.client.tree import Caller, ObjectTree
from spmp.lwm2m.node import SingleResource
from spmp.lwm2m.objects.alerts import AlertsResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.response import OperationError, ResponseCode
from spmp.lwm2m.values import Value
from spmp.smartload.rules import Intent, RuleEngine

__all__ = [
    "Backoff",
    "RoutingTargetWriter",
    "SmartLoadExecutor",
    "TargetError",
    "TargetFault",
    "TargetWriter",
    "TreeTargetWriter",
    "alert_setter",
]

log = logging.getLogger(__name__)


class TargetError(Exception):
    """A target refused or could not take a write; ``code`` is the LwM2M code that describes it.

    Writers map their failures: unreachable → 5.03 Service Unavailable, no answer → 5.04 Gateway
    Timeout, an edit the target refuses → the 4.xx it amounts to (4.00, 4.05, ...).
    """

    def __init__(self, code: ResponseCode, message: str) -> None:
        super().__init__(f"{code.dotted} {message}")
        self.code = code
        self.message = message


class TargetWriter(Protocol):
    """Reads and writes one resource of a target; raises :class:`TargetError` on failure."""

    async def read(self, path: Path) -> Value: ...

    async def write(self, path: Path, value: Value) -> None: ...


class RoutingTargetWriter:
    """Chooses a writer by the target's object id (e.g. 26244 → NETCONF), else ``default``."""

    def __init__(self, routes: Mapping[int, TargetWriter], default: TargetWriter | None = None) -> None:
        self.routes = dict(routes)
        self.default = default

    def _writer(self, path: Path) -> TargetWriter:
        writer = self.routes.get(path.object_id or 0, self.default)
        if writer is None:
            raise TargetError(ResponseCode.NOT_FOUND, f"no writer for object {path.object_id}")
        return writer

    async def read(self, path: Path) -> Value:
        return await self._writer(path).read(path)

    async def write(self, path: Path, value: Value) -> None:
        await self._writer(path).write(path, value)


class TreeTargetWriter:
    """Writes resources of the charger's own object tree, as a management server's Write would.

    Any other change of a resource :attr:`wants` (a server's Write, the charger's own automation)
    is passed to :attr:`on_external_change`: that is how the engine learns of manual overrides.
    """

    def __init__(self, tree: ObjectTree) -> None:
        self.tree = tree
        self.on_external_change: Callable[[Path, Value], None] | None = None
        self.wants: Callable[[Path], bool] = lambda _path: False
        self._writing: Path | None = None
        tree.listeners.append(self._changed)

    def watch(self, callback: Callable[[Path, Value], None], wants: Callable[[Path], bool]) -> None:
        self.on_external_change = callback
        self.wants = wants

    async def read(self, path: Path) -> Value:
        try:
            node = self.tree.read(path)
        except OperationError as exc:
            raise TargetError(exc.code, exc.reason) from None
        if not isinstance(node, SingleResource):
            raise TargetError(ResponseCode.BAD_REQUEST, f"{path} is not a single resource")
        return node.value

    async def write(self, path: Path, value: Value) -> None:
        if path.object_id is None or path.resource_id is None:
            raise TargetError(ResponseCode.BAD_REQUEST, f"{path} is not a resource")
        try:
            model = self.tree.enabler(path.object_id).model.resource(path.resource_id)
            if model is None:
                raise TargetError(ResponseCode.NOT_FOUND, f"{path} has no model")
            self._writing = path
            self.tree.write(path, SingleResource(path.resource_id, value, model.type), replace=False, caller=Caller())
        except OperationError as exc:
            raise TargetError(exc.code, exc.reason) from None
        finally:
            self._writing = None

    def _changed(self, path: Path) -> None:
        if path == self._writing or not path.is_resource or self.on_external_change is None or not self.wants(path):
            return
        try:
            node = self.tree.read(path, Caller(bootstrap=True))
        except OperationError:
            return
        if isinstance(node, SingleResource):
            self.on_external_change(path, node.value)


def alert_setter(alerts: StoredObject, instance_id: int) -> Callable[[bool], None]:
    """An ``on_alert`` that sets Smart Load Fault (26243 resource 13) on one Alerts instance."""
    model = alerts.model.resources[AlertsResource.SMART_LOAD_FAULT]

    def set_alert(raised: bool) -> None:
        alerts.set_value(instance_id, SingleResource(model.id, raised, model.type))

    return set_alert


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number n (n ≥ 1): ``initial * factor**(n-1)``, at most ``maximum``."""

    initial: float = 2.0
    factor: float = 2.0
    maximum: float = 300.0

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        exponent = min(failures - 1, 64)
        return min(self.maximum, self.initial * self.factor**exponent)


@dataclass(slots=True)
class TargetFault:
    """The failures of one target since its last success."""

    path: Path
    failures: int
    code: ResponseCode
    message: str
    since: float
    next_attempt: float
    value: Value | None
    """The value of the failed attempt (a new value is tried at once)."""


class SmartLoadExecutor:
    """Runs a RuleEngine against real targets; see the module docstring."""

    def __init__(
        self,
        engine: RuleEngine,
        writer: TargetWriter,
        *,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
        alert_after: int = 3,
        write_timeout: float = 30.0,
        persist: Callable[[dict[str, Any]], None] | None = None,
        on_alert: Callable[[bool], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.alert_after = max(1, alert_after)
        self.write_timeout = write_timeout
        self.persist = persist
        self.on_alert = on_alert
        self.on_change = on_change
        """Called after anything a reader of Active / Fault may see changed."""
        self._faults: dict[Path, TargetFault] = {}
        self._alert = False
        self._revision = engine.revision
        self._wakeup = asyncio.Event()

    # -- inputs ------------------------------------------------------------------------------------------
    def sample(self, voltage: float) -> list[Intent]:
        """A battery-voltage sample taken now."""
        intents = self.engine.sample(self.clock(), voltage)
        self._changed()
        return intents

    def external_write(self, path: Path, value: Value) -> None:
        """Someone else wrote ``path`` (see :meth:`RuleEngine.external_write`)."""
        if self.engine.external_write(path, value, self.clock()):
            log.info("smart-load target overridden by hand", extra={"path": str(path), "value": repr(value)})
            self._forget_settled()
            self._changed()

    def change_rules(self, change: Callable[[RuleEngine, float], None]) -> None:
        """Apply a rule change (create, modify, delete) all or nothing: undone if it cannot be persisted."""
        before = self.engine.snapshot()
        change(self.engine, self.clock())
        if self.persist is not None and self.engine.revision != self._revision:
            try:
                self.persist(self.engine.snapshot())
            except Exception as exc:
                log.exception("smart-load state not saved; rule change undone")
                self.engine.load(before)
                self._revision = self.engine.revision
                raise OperationError(
                    ResponseCode.INTERNAL_SERVER_ERROR, f"the rule change could not be saved ({exc}); nothing changed"
                ) from None
            self._revision = self.engine.revision
        self._forget_settled()
        self._changed()

    def kick(self) -> None:
        """Wake :meth:`run` (new work)."""
        self._wakeup.set()

    # -- state -------------------------------------------------------------------------------------------
    @property
    def alert(self) -> bool:
        return self._alert

    def faults(self) -> list[TargetFault]:
        return list(self._faults.values())

    def fault(self, path: Path) -> TargetFault | None:
        return self._faults.get(path)

    def faulted(self, path: Path) -> bool:
        fault = self._faults.get(path)
        return fault is not None and fault.failures >= self.alert_after

    def rule_fault(self, rule_id: int) -> bool:
        rule = self.engine.rule(rule_id)
        return rule is not None and self.faulted(rule.target)

    def next_due(self) -> float | None:
        """When :meth:`step` has something to do next (None: nothing pending)."""
        due: float | None = None
        for intent in self.engine.pending():
            fault = self._faults.get(intent.path)
            at = self._due(intent, fault)
            due = at if due is None else min(due, at)
        return due

    # -- work --------------------------------------------------------------------------------------------
    async def step(self) -> int:
        """Attempt every pending write that is due, in order; returns how many were attempted."""
        attempted = 0
        for path in [intent.path for intent in self.engine.pending()]:
            intent = self._current(path)
            if intent is None or self._due(intent, self._faults.get(path)) > self.clock():
                continue
            attempted += 1
            await self._attempt(intent)
        self._forget_settled()
        self._changed()
        return attempted

    async def run(self) -> None:
        """Forever: do what is due, then sleep until the next retry or new work."""
        while True:
            self._wakeup.clear()
            await self.step()
            due = self.next_due()
            timeout = None if due is None else max(0.0, due - self.clock())
            if timeout == 0.0:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def settle(self, max_steps: int = 100) -> None:
        """Step until nothing is due now (for tests and start-up); faulted targets stay pending."""
        for _ in range(max_steps):
            if await self.step() == 0:
                return

    # -- internals -----------------------------------------------------------------------------------------
    def _current(self, path: Path) -> Intent | None:
        return next((i for i in self.engine.pending() if i.path == path), None)

    def _due(self, intent: Intent, fault: TargetFault | None) -> float:
        if fault is None or intent.read_original or fault.value is None:
            return -math.inf if fault is None else fault.next_attempt
        if type(fault.value) is not type(intent.value) or fault.value != intent.value:
            return -math.inf  # a new value: try at once
        return fault.next_attempt

    async def _attempt(self, intent: Intent) -> None:
        path = intent.path
        try:
            if intent.read_original:
                original = await asyncio.wait_for(self.writer.read(path), self.write_timeout)
                self.engine.record_original(path, original)
                self._changed()
                current = self._current(path)
                if current is None or current.read_original:
                    self._succeeded(path)
                    return
                intent = current
            await asyncio.wait_for(self.writer.write(path, intent.value), self.write_timeout)
        except TargetError as exc:
            self._failed(intent, exc.code, exc.message)
        except TimeoutError:
            self._failed(intent, ResponseCode.GATEWAY_TIMEOUT, f"no answer within {self.write_timeout} s")
        except Exception as exc:
            log.exception("smart-load target writer failed", extra={"path": str(path)})
            self._failed(intent, ResponseCode.INTERNAL_SERVER_ERROR, repr(exc))
        else:
            self.engine.record_applied(path, intent.value)
            log.info(
                "smart-load target written",
                extra={"path": str(path), "value": repr(intent.value), "restore": intent.restore},
            )
            self._succeeded(path)

    def _succeeded(self, path: Path) -> None:
        if self._faults.pop(path, None) is not None:
            log.info("smart-load target reachable again", extra={"path": str(path)})
        self._update_alert()

    def _failed(self, intent: Intent, code: ResponseCode, message: str) -> None:
        now = self.clock()
        self.engine.record_failure(intent.path)
        fault = self._faults.get(intent.path)
        if fault is None:
            fault = self._faults[intent.path] = TargetFault(intent.path, 0, code, message, now, now, None)
        fault.failures += 1
        fault.code, fault.message = code, message
        fault.value = None if intent.read_original else intent.value
        delay = self.backoff.delay(fault.failures)
        fault.next_attempt = now + delay
        log.warning(
            "smart-load target write failed",
            extra={
                "path": str(intent.path),
                "code": code.dotted,
                "error": message,
                "failures": fault.failures,
                "retry_in_s": delay,
            },
        )
        self._update_alert()

    def _forget_settled(self) -> None:
        """Faults of targets with nothing left to write are over."""
        pending = {intent.path for intent in self.engine.pending()}
        for path in [p for p in self._faults if p not in pending]:
            del self._faults[path]
        self._update_alert()

    def _update_alert(self) -> None:
        raised = any(f.failures >= self.alert_after for f in self._faults.values())
        if raised != self._alert:
            self._alert = raised
            log.warning("smart-load fault alert", extra={"raised": raised})
            if self.on_alert is not None:
                self.on_alert(raised)
            if self.on_change is not None:
                self.on_change()

    def _changed(self) -> None:
        if self.engine.revision != self._revision:
            self._revision = self.engine.revision
            if self.persist is not None:
                try:
                    self.persist(self.engine.snapshot())
                except Exception:
                    log.exception("smart-load state not saved")
            if self.on_change is not None:
                self.on_change()
            self.kick()
