"""Object enablers: what backs one object of a client's tree.

:class:`ObjectEnabler` is the protocol the tree calls; :class:`StoredObject` is the general
implementation that keeps values in memory and lets the application plug in live readers (a
sensor), write hooks (switching a port) and executors (a reboot). The charger builds its objects
from these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from spmp.lwm2m.model import ObjectModel
from spmp.lwm2m.node import MultipleResource, ObjectInstance, Resource, SingleResource
from spmp.lwm2m.response import OperationError, ResponseCode, not_found
from spmp.lwm2m.values import Value

Reader = Callable[[int], Value | Mapping[int, Value]]
"""Returns the current value of a resource for an instance id (live data, e.g. a sensor)."""
WriteHook = Callable[[int, Resource], None]
"""Called after a resource was written; may raise OperationError to refuse the write."""
Executor = Callable[[int, Mapping[int, str | None]], None]
"""Runs an executable resource with its parsed arguments."""


class ObjectEnabler(Protocol):
    """One object of the tree. Instance and resource ids are already checked against the model."""

    @property
    def model(self) -> ObjectModel: ...

    def instance_ids(self) -> list[int]: ...

    def read_instance(self, instance_id: int) -> ObjectInstance:
        """All present resources of an instance (readable or not; the tree filters)."""

    def write(self, instance_id: int, resources: Mapping[int, Resource]) -> None:
        """Set resources; a resource given replaces the stored one whole."""

    def remove_resources(self, instance_id: int, resource_ids: list[int]) -> None: ...

    def create(self, instance_id: int, resources: Mapping[int, Resource]) -> None: ...

    def delete(self, instance_id: int) -> None: ...

    def execute(self, instance_id: int, resource_id: int, arguments: Mapping[int, str | None]) -> None: ...


class StoredObject:
    """An object whose instances live in memory, with optional readers, write hooks and executors."""

    def __init__(self, model: ObjectModel) -> None:
        self._model = model
        self._instances: dict[int, dict[int, Resource]] = {}
        self._readers: dict[int, Reader] = {}
        self._write_hooks: dict[int, WriteHook] = {}
        self._executors: dict[int, Executor] = {}
        self.on_change: Callable[[int, int], None] | None = None
        """Set by the tree: told (instance, resource) after every successful change, to trigger Observe."""

    @property
    def model(self) -> ObjectModel:
        return self._model

    # -- application side -------------------------------------------------------------------------
    def add_instance(self, instance_id: int, resources: ObjectInstance | Mapping[int, Resource] | None = None) -> None:
        values = resources.resources if isinstance(resources, ObjectInstance) else (resources or {})
        self._instances[instance_id] = dict(values)

    def set_reader(self, resource_id: int, reader: Reader) -> None:
        self._readers[resource_id] = reader

    def set_write_hook(self, resource_id: int, hook: WriteHook) -> None:
        self._write_hooks[resource_id] = hook

    def set_executor(self, resource_id: int, executor: Executor) -> None:
        self._executors[resource_id] = executor

    def set_value(self, instance_id: int, resource: Resource) -> None:
        """Application-side update of a stored value (no write hook); notifies observers."""
        self._instance(instance_id)[resource.id] = resource
        self._changed(instance_id, resource.id)

    def _changed(self, instance_id: int, resource_id: int) -> None:
        if self.on_change is not None:
            self.on_change(instance_id, resource_id)

    # -- ObjectEnabler --------------------------------------------------------------------------------
    def instance_ids(self) -> list[int]:
        return sorted(self._instances)

    def _instance(self, instance_id: int) -> dict[int, Resource]:
        found = self._instances.get(instance_id)
        if found is None:
            raise not_found(f"/{self._model.id}/{instance_id} does not exist")
        return found

    def read_instance(self, instance_id: int) -> ObjectInstance:
        stored = self._instance(instance_id)
        resources = dict(stored)
        for resource_id, reader in self._readers.items():
            resource_model = self._model.resource(resource_id)
            if resource_model is None:
                continue
            value = reader(instance_id)
            if isinstance(value, Mapping):
                resources[resource_id] = MultipleResource(resource_id, dict(value), resource_model.type)
            else:
                resources[resource_id] = SingleResource(resource_id, value, resource_model.type)
        return ObjectInstance(instance_id, dict(sorted(resources.items())))

    def write(self, instance_id: int, resources: Mapping[int, Resource]) -> None:
        stored = self._instance(instance_id)
        previous = {rid: stored.get(rid) for rid in resources}
        try:
            for resource_id, resource in resources.items():
                stored[resource_id] = resource
                hook = self._write_hooks.get(resource_id)
                if hook is not None:
                    hook(instance_id, resource)
        except Exception:
            # A refused write leaves the instance as it was: never half-applied.
            for resource_id, old in previous.items():
                if old is None:
                    stored.pop(resource_id, None)
                else:
                    stored[resource_id] = old
            raise
        for resource_id in resources:
            self._changed(instance_id, resource_id)

    def remove_resources(self, instance_id: int, resource_ids: list[int]) -> None:
        stored = self._instance(instance_id)
        for resource_id in resource_ids:
            if stored.pop(resource_id, None) is not None:
                self._changed(instance_id, resource_id)

    def create(self, instance_id: int, resources: Mapping[int, Resource]) -> None:
        if instance_id in self._instances:
            raise OperationError(ResponseCode.BAD_REQUEST, f"/{self._model.id}/{instance_id} already exists")
        self._instances[instance_id] = dict(resources)

    def delete(self, instance_id: int) -> None:
        self._instance(instance_id)
        del self._instances[instance_id]

    def execute(self, instance_id: int, resource_id: int, arguments: Mapping[int, str | None]) -> None:
        self._instance(instance_id)
        executor = self._executors.get(resource_id)
        if executor is None:
            raise OperationError(
                ResponseCode.METHOD_NOT_ALLOWED,
                f"/{self._model.id}/{instance_id}/{resource_id} cannot be executed here",
            )
        executor(instance_id, arguments)
