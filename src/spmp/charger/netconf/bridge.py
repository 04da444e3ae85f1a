"""Smart Load (BTS) 26244 on the charger, backed by the BTS over NETCONF (docs/smart-load.md, "The NETCONF bridge").

:class:`SmartLoadBridge` is the object enabler. Reads are served from the last state read over
NETCONF (a ``<get>`` of the BTS's top container: configuration and state), refreshed every
``refresh_interval`` seconds by :meth:`SmartLoadBridge.run` and after every edit. A write (one
resource or several: one LwM2M Write) becomes exactly one ``<edit-config>`` (merge) built by the
mapping, so the BTS applies all of it or nothing:

=====================================  =========================================================
Outcome                                LwM2M answer
=====================================  =========================================================
edit-config ``<ok/>``                  2.04 Changed (the cache is re-read, observers notified)
value the mapping cannot express       4.00 Bad Request, nothing sent
rpc-error invalid-value and the like   4.00 Bad Request with the BTS's error-message
rpc-error in-use / lock-denied         5.03 Service Unavailable (another manager holds the lock)
rpc-error access-denied                4.03 Forbidden
BTS unreachable, session lost          5.03 Service Unavailable, Smart Load Fault alert raised
no reply within the timeout            5.04 Gateway Timeout, alert raised (outcome unknown: the
                                       next refresh shows what the BTS has)
=====================================  =========================================================

A refused write leaves the object as it was (the cache is only changed from what the BTS reports).
An operator's write that succeeds is passed to ``on_external_write`` (the rules engine takes it as a
manual override). The tree calls enablers synchronously, so a write blocks the charger's event loop
for one RPC on the open session (milliseconds on a LAN, at most ``timeout``); it never connects: with
no session it answers 5.03 at once and the refresh task reconnects with backoff.

:class:`NetconfTargetWriter` is the smart-load executor's writer for 26244: the same edits, from
asyncio (the executor retries with backoff what fails, and raises the alert after repeated
failures). :attr:`SmartLoadBridge.power_draw_watts` is the BTS's ``power-draw-watts`` state leaf:
what the charger's BTS load port draws when the BTS is remote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from lxml import etree

from spmp.charger.netconf.client import NetconfClient, NetconfRpcError, NetconfTimeoutError, NetconfUnavailableError
from spmp.charger.netconf.mapping import BtsMapping, MappingValueError
from spmp.lwm2m.model import ObjectModel
from spmp.lwm2m.node import ObjectInstance, Resource, SingleResource
from spmp.lwm2m.objects.smart_load import SMART_LOAD_BTS
from spmp.lwm2m.path import Path
from spmp.lwm2m.response import OperationError, ResponseCode, method_not_allowed, not_found
from spmp.lwm2m.values import Value
from spmp.smartload.executor import TargetError

__all__ = ["NetconfTargetWriter", "SmartLoadBridge", "response_for"]

log = logging.getLogger(__name__)

#: rpc-error tags that mean "the request is wrong": the LwM2M write is a 4.00.
CLIENT_TAGS = frozenset(
    {
        "invalid-value",
        "too-big",
        "missing-attribute",
        "bad-attribute",
        "unknown-attribute",
        "missing-element",
        "bad-element",
        "unknown-element",
        "unknown-namespace",
        "data-exists",
        "data-missing",
        "operation-failed",
    }
)
#: Tags that say "not now": another manager holds the lock, the BTS lacks resources.
BUSY_TAGS = frozenset({"in-use", "lock-denied", "resource-denied"})


def response_for(exc: Exception) -> tuple[ResponseCode, str]:
    """The LwM2M response code and message for a failed edit (see the module docstring)."""
    if isinstance(exc, MappingValueError):
        return ResponseCode.BAD_REQUEST, str(exc)
    if isinstance(exc, NetconfRpcError):
        message = exc.message or exc.tag
        if exc.tag in CLIENT_TAGS:
            return ResponseCode.BAD_REQUEST, message
        if exc.tag in BUSY_TAGS:
            return ResponseCode.SERVICE_UNAVAILABLE, f"BTS busy ({exc.tag}): {message}"
        if exc.tag == "access-denied":
            return ResponseCode.FORBIDDEN, message
        return ResponseCode.INTERNAL_SERVER_ERROR, f"BTS error {exc.tag}: {message}"
    if isinstance(exc, NetconfTimeoutError):
        return ResponseCode.GATEWAY_TIMEOUT, str(exc)
    if isinstance(exc, NetconfUnavailableError):
        return ResponseCode.SERVICE_UNAVAILABLE, str(exc)
    return ResponseCode.INTERNAL_SERVER_ERROR, repr(exc)


class SmartLoadBridge:
    """The Smart Load (BTS) object enabler over a NETCONF client and a mapping; see the module docstring."""

    def __init__(
        self,
        client: NetconfClient,
        mapping: BtsMapping,
        *,
        model: ObjectModel = SMART_LOAD_BTS,
        refresh_interval: float = 5.0,
        on_fault: Callable[[bool], None] | None = None,
    ) -> None:
        self.client = client
        self.mapping = mapping
        self._model = model
        self.refresh_interval = refresh_interval
        self.on_fault = on_fault
        """Called with True when the BTS stops answering (refresh or write), False when it answers again."""
        self.on_change: Callable[[int, int], None] | None = None
        """Set by the tree (Observe)."""
        self.on_external_write: Callable[[Path, Value], None] | None = None
        """Told every resource an LwM2M write changed (the rules engine's manual override)."""
        self.on_state: Callable[[Mapping[str, Value]], None] | None = None
        """Told the state values (power draw, on-air) after every refresh."""
        self._data: etree._Element | None = None
        self._values: dict[int, dict[int, Value]] = {iid: {} for iid in mapping.instances}
        self._state: dict[str, Value] = {}
        self.unreachable = False
        self.last_error: str | None = None
        self.refreshes = 0
        self.edits = 0

    # -- state --------------------------------------------------------------------------------------------
    @property
    def model(self) -> ObjectModel:
        return self._model

    @property
    def state(self) -> Mapping[str, Value]:
        """The BTS's state leaves as last read (``power-draw-watts``, ``on-air``, ``serving-users``)."""
        return dict(self._state)

    @property
    def power_draw_watts(self) -> float | None:
        value = self._state.get("power-draw-watts")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    @property
    def on_air(self) -> bool | None:
        value = self._state.get("on-air")
        return value if isinstance(value, bool) else None

    def value(self, instance_id: int, resource_id: int) -> Value | None:
        """A resource's value as last read (None: absent or never read)."""
        return self._values.get(instance_id, {}).get(resource_id)

    def _set_reachable(self, reachable: bool, error: str | None = None) -> None:
        self.last_error = error
        if self.unreachable == (not reachable):
            return
        self.unreachable = not reachable
        log.warning(
            "BTS reachable again" if reachable else "BTS unreachable",
            extra={"bts": self.client.address, "error": error},
        )
        if self.on_fault is not None:
            self.on_fault(not reachable)

    def _absorb(self, data: etree._Element) -> None:
        """Take a ``<data>`` reply as the BTS's state; tell observers what changed."""
        values = {iid: self.mapping.read_values(data, iid) for iid in self.mapping.instances}
        state = self.mapping.read_state(data)
        self._data = data
        old, self._values = self._values, values
        self._state = state
        self.refreshes += 1
        for iid, resources in values.items():
            before = old.get(iid, {})
            for rid in sorted(set(before) | set(resources)):
                a, b = before.get(rid), resources.get(rid)
                if type(a) is not type(b) or a != b:
                    self._changed(iid, rid)
        if self.on_state is not None:
            self.on_state(state)

    def _changed(self, instance_id: int, resource_id: int) -> None:
        if self.on_change is not None:
            self.on_change(instance_id, resource_id)

    # -- NETCONF --------------------------------------------------------------------------------------------
    def refresh_sync(self) -> None:
        """Read the BTS now (blocking); raises the client's errors."""
        try:
            data = self.client.get_sync(self.mapping.filter_xml(), connect=False)
        except (NetconfUnavailableError, NetconfRpcError) as exc:
            self._set_reachable(isinstance(exc, NetconfRpcError), str(exc))
            raise
        self._set_reachable(True)
        self._absorb(data)

    async def refresh(self) -> bool:
        """Read the BTS in a worker thread; False (and the fault flag) when it cannot be read."""
        try:
            self.client.ensure_connected()  # quick: raises at once while the backoff runs
            data = await self.client.get(self.mapping.filter_xml())
        except (NetconfUnavailableError, NetconfRpcError, ValueError) as exc:
            self._set_reachable(isinstance(exc, NetconfRpcError | ValueError), str(exc))
            return False
        self._set_reachable(True)
        try:
            self._absorb(data)
        except ValueError as exc:  # a leaf the mapping cannot read: the mapping or the BTS is wrong
            log.error("BTS reply does not fit the mapping", extra={"mapping": self.mapping.name, "error": str(exc)})
            return False
        return True

    async def run(self) -> None:
        """Refresh every ``refresh_interval`` seconds until cancelled (reconnecting with the client's backoff)."""
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("BTS refresh failed")
            await asyncio.sleep(self.refresh_interval)

    def edit_sync(self, instance_id: int, writes: Mapping[int, Value]) -> None:
        """One edit-config for ``writes`` (blocking), then re-read; raises MappingValueError or client errors."""
        if self._data is None:
            self.refresh_sync()
        config = self.mapping.edit(writes, instance_id, self._data)
        try:
            self.client.edit_config_sync(config, connect=False)
        except NetconfRpcError:
            self._set_reachable(True)
            raise
        except NetconfUnavailableError as exc:
            self._set_reachable(False, str(exc))
            raise
        self.edits += 1
        self._set_reachable(True)
        self._after_edit(instance_id, writes)

    async def edit(self, instance_id: int, writes: Mapping[int, Value]) -> None:
        """The same as :meth:`edit_sync` with the RPCs in a worker thread."""
        if self._data is None and not await self.refresh():
            raise NetconfUnavailableError(self.last_error or f"BTS {self.client.address} unreachable")
        config = self.mapping.edit(writes, instance_id, self._data)
        try:
            await self.client.edit_config(config)
        except NetconfRpcError:
            self._set_reachable(True)
            raise
        except NetconfUnavailableError as exc:
            self._set_reachable(False, str(exc))
            raise
        self.edits += 1
        self._set_reachable(True)
        if not await self.refresh():
            self._assume(instance_id, writes)

    def _after_edit(self, instance_id: int, writes: Mapping[int, Value]) -> None:
        try:
            self.refresh_sync()
        except (NetconfUnavailableError, NetconfRpcError, ValueError):
            # The edit was applied (the BTS said ok): show what it was told until the next refresh.
            self._assume(instance_id, writes)

    def _assume(self, instance_id: int, writes: Mapping[int, Value]) -> None:
        for rid, value in writes.items():
            conversion = self.mapping.resources[rid].conversion
            self._values.setdefault(instance_id, {})[rid] = conversion.from_yang(conversion.to_yang(value))
            self._changed(instance_id, rid)

    # -- ObjectEnabler ------------------------------------------------------------------------------------------
    def instance_ids(self) -> list[int]:
        return sorted(self._values)

    def _instance(self, instance_id: int) -> dict[int, Value]:
        found = self._values.get(instance_id)
        if found is None:
            raise not_found(f"/{self._model.id}/{instance_id} does not exist")
        return found

    def read_instance(self, instance_id: int) -> ObjectInstance:
        values = self._instance(instance_id)
        resources: dict[int, Resource] = {
            rid: SingleResource(rid, value, self._model.resources[rid].type) for rid, value in sorted(values.items())
        }
        return ObjectInstance(instance_id, resources)

    def write(self, instance_id: int, resources: Mapping[int, Resource]) -> None:
        self._instance(instance_id)
        writes: dict[int, Value] = {}
        for rid, resource in resources.items():
            if rid not in self.mapping.resources:
                raise OperationError(
                    ResponseCode.METHOD_NOT_ALLOWED,
                    f"/{self._model.id}/{instance_id}/{rid}: this BTS ({self.mapping.name}) has no such setting",
                )
            if not isinstance(resource, SingleResource):
                raise OperationError(ResponseCode.BAD_REQUEST, f"resource {rid} is a single resource")
            writes[rid] = resource.value
        if not writes:
            return
        try:
            self.edit_sync(instance_id, writes)
        except (MappingValueError, NetconfRpcError, NetconfUnavailableError, ValueError) as exc:
            code, message = response_for(exc)
            log.info(
                "BTS write refused",
                extra={"bts": self.client.address, "code": code.dotted, "error": message, "writes": repr(writes)},
            )
            raise OperationError(code, message) from None
        if self.on_external_write is not None:
            for rid in writes:
                value = self.value(instance_id, rid)
                if value is not None:
                    self.on_external_write(Path.of(self._model.id, instance_id, rid), value)

    def remove_resources(self, instance_id: int, resource_ids: list[int]) -> None:
        # A Replace drops the writable resources it does not name; the BTS keeps those settings (they
        # cannot be absent), so there is nothing to remove.
        self._instance(instance_id)

    def create(self, instance_id: int, resources: Mapping[int, Resource]) -> None:
        raise method_not_allowed(f"the instances of /{self._model.id} are the BTS's ({self.mapping.name})")

    def delete(self, instance_id: int) -> None:
        raise method_not_allowed(f"the instances of /{self._model.id} are the BTS's ({self.mapping.name})")

    def execute(self, instance_id: int, resource_id: int, arguments: Mapping[int, str | None]) -> None:
        raise method_not_allowed(f"/{self._model.id}/{instance_id}/{resource_id} cannot be executed")

    async def close(self) -> None:
        await self.client.close()


class NetconfTargetWriter:
    """The smart-load executor's :class:`~spmp.smartload.executor.TargetWriter` for the bridge's object."""

    def __init__(self, bridge: SmartLoadBridge) -> None:
        self.bridge = bridge

    def _ids(self, path: Path) -> tuple[int, int]:
        if path.object_id != self.bridge.model.id or path.instance_id is None or path.resource_id is None:
            raise TargetError(ResponseCode.NOT_FOUND, f"{path} is not a resource of /{self.bridge.model.id}")
        if path.resource_id not in self.bridge.mapping.resources:
            name = self.bridge.mapping.name
            raise TargetError(ResponseCode.NOT_FOUND, f"{path}: the BTS ({name}) has no such setting")
        return path.instance_id, path.resource_id

    async def read(self, path: Path) -> Value:
        iid, rid = self._ids(path)
        if not await self.bridge.refresh():
            code = ResponseCode.SERVICE_UNAVAILABLE
            raise TargetError(code, self.bridge.last_error or f"BTS {self.bridge.client.address} unreachable")
        value = self.bridge.value(iid, rid)
        if value is None:
            raise TargetError(ResponseCode.NOT_FOUND, f"the BTS reports no value for {path}")
        return value

    async def write(self, path: Path, value: Value) -> None:
        iid, rid = self._ids(path)
        try:
            await self.bridge.edit(iid, {rid: value})
        except (MappingValueError, NetconfRpcError, NetconfUnavailableError, ValueError) as exc:
            code, message = response_for(exc)
            raise TargetError(code, message) from None


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait for it (helper for the runner)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
