"""The client's object tree and the LwM2M device-management semantics on it (TS Core §5.4), pure.

Every operation a server (or the bootstrap server) can perform on a client — Read, Write (replace
and partial update), Execute, Create, Delete, and the structure needed by Discover and Register —
is answered here, against the object models, with the response code the TS assigns to each
failure (raised as :class:`OperationError`). No I/O: the engine maps CoAP requests onto these calls.

Decisions where the TS leaves room:
- Read of an object or instance returns only readable resources; of a single resource that is not
  readable, 4.05.
- Replace (PUT) on an instance needs every mandatory writable resource; writable resources missing
  from the payload are removed; read-only resources stay. A payload resource that is not writable is
  4.05 for a management server; the bootstrap server may write anything and create instances by writing.
- A Create must carry every mandatory writable resource (4.00 otherwise) and may not reuse an id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from spmp.client.objects import ObjectEnabler
from spmp.lwm2m.errors import InvalidValueError
from spmp.lwm2m.model import ModelRegistry, ObjectModel, ResourceModel
from spmp.lwm2m.node import (
    MultipleResource,
    Node,
    Object,
    ObjectInstance,
    Resource,
    ResourceInstance,
    SingleResource,
)
from spmp.lwm2m.path import Path
from spmp.lwm2m.response import OperationError, ResponseCode, bad_request, method_not_allowed, not_found
from spmp.lwm2m.values import Value, check_range, coerce

SECURITY_OBJECT = 0
SERVER_OBJECT = 1
DEVICE_OBJECT = 3


@dataclass(frozen=True, slots=True)
class Caller:
    """Who performs an operation: the bootstrap server or a management server by short id."""

    bootstrap: bool = False
    short_server_id: int | None = None


BOOTSTRAP = Caller(bootstrap=True)


class ObjectTree:
    """The objects of one client, keyed by id."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry
        self._objects: dict[int, ObjectEnabler] = {}
        self.listeners: list[Callable[[Path], None]] = []
        """Called with the path of every changed resource (instance created/deleted: the instance path)."""

    def add(self, enabler: ObjectEnabler) -> None:
        self._objects[enabler.model.id] = enabler
        hookable = getattr(enabler, "on_change", "absent")
        if hookable != "absent":
            object_id = enabler.model.id
            enabler.on_change = lambda iid, rid: self._notify(Path.of(object_id, iid, rid))  # type: ignore[attr-defined]

    def _notify(self, path: Path) -> None:
        for listener in self.listeners:
            listener(path)

    def enabler(self, object_id: int) -> ObjectEnabler:
        found = self._objects.get(object_id)
        if found is None:
            raise not_found(f"object {object_id} is not supported by this client")
        return found

    def object_ids(self) -> list[int]:
        return sorted(self._objects)

    def models(self) -> dict[int, ObjectModel]:
        return {oid: enabler.model for oid, enabler in sorted(self._objects.items())}

    def instance_paths(self) -> list[Path]:
        """Every object and instance, as a Register payload lists them."""
        paths: list[Path] = []
        for object_id, enabler in sorted(self._objects.items()):
            ids = enabler.instance_ids()
            paths.extend(Path.of(object_id, iid) for iid in ids) if ids else paths.append(Path.of(object_id))
        return paths

    # -- Read -----------------------------------------------------------------------------------------
    def read(self, path: Path, caller: Caller = Caller()) -> Node:
        if path.object_id is None:
            raise method_not_allowed("read of the root path is not allowed")
        enabler = self.enabler(path.object_id)
        model = enabler.model
        if path.is_object:
            instances = {
                iid: self._readable(enabler.read_instance(iid), model, caller) for iid in enabler.instance_ids()
            }
            return Object(model.id, instances)
        assert path.instance_id is not None
        instance = enabler.read_instance(self._existing_instance(enabler, path.instance_id))
        if path.is_object_instance:
            return self._readable(instance, model, caller)
        resource_model = self._resource_model(model, path)
        if not resource_model.operations.readable and not caller.bootstrap:
            raise method_not_allowed(f"{path} is not readable")
        resource = instance.resource(resource_model.id)
        if resource is None:
            raise not_found(f"{path} has no value on this client")
        if path.is_resource:
            return resource
        assert path.resource_instance_id is not None
        if not isinstance(resource, MultipleResource):
            raise not_found(f"{path.parent} is a single resource")
        found = resource.instance(path.resource_instance_id)
        if found is None:
            raise not_found(f"{path} does not exist")
        return found

    @staticmethod
    def _readable(instance: ObjectInstance, model: ObjectModel, caller: Caller) -> ObjectInstance:
        kept = {}
        for rid, resource in instance.resources.items():
            resource_model = model.resource(rid)
            if resource_model is not None and (caller.bootstrap or resource_model.operations.readable):
                kept[rid] = resource
        return ObjectInstance(instance.id, kept)

    # -- Write ----------------------------------------------------------------------------------------
    def write(self, path: Path, node: Node, *, replace: bool, caller: Caller = Caller()) -> None:
        """Write (PUT: replace=True; POST: partial update) ``node`` at ``path``."""
        if path.object_id is None or (path.is_object and not caller.bootstrap):
            raise method_not_allowed(f"write to {path} is not allowed")
        enabler = self.enabler(path.object_id)
        model = enabler.model
        if path.is_object:
            if not isinstance(node, Object):
                raise bad_request(f"payload for {path} is not an object")
            for instance in node.instances.values():
                assert instance.id is not None
                self.write(path.child(instance.id), instance, replace=replace, caller=caller)
            return
        assert path.instance_id is not None
        if path.is_object_instance:
            if not isinstance(node, ObjectInstance):
                raise bad_request(f"payload for {path} is not an object instance")
            if node.id is not None and node.id != path.instance_id:
                raise bad_request(f"payload names instance {node.id}, the path {path}")
            self._check_resources(model, node.resources.values(), caller, path)
            if caller.bootstrap and path.instance_id not in enabler.instance_ids():
                enabler.create(path.instance_id, node.resources)
                self._notify(path)
                return
            self._existing_instance(enabler, path.instance_id)
            if replace:
                self._check_mandatory(model, node.resources, path)
                current = enabler.read_instance(path.instance_id)
                dropped = [
                    rid
                    for rid in current.resources
                    if rid not in node.resources and (m := model.resource(rid)) is not None and m.operations.writable
                ]
                enabler.remove_resources(path.instance_id, dropped)
            enabler.write(path.instance_id, node.resources)
            return
        resource_model = self._resource_model(model, path)
        self._existing_instance(enabler, path.instance_id)
        if path.is_resource:
            if not isinstance(node, SingleResource | MultipleResource) or node.id != resource_model.id:
                raise bad_request(f"payload for {path} is not resource {resource_model.id}")
            self._check_resources(model, [node], caller, path.parent)
            if isinstance(node, MultipleResource) and not replace:
                existing = enabler.read_instance(path.instance_id).resource(resource_model.id)
                merged: dict[int, Value] = dict(existing.instances) if isinstance(existing, MultipleResource) else {}
                merged.update(node.instances)
                node = MultipleResource(node.id, merged, node.type)
            enabler.write(path.instance_id, {node.id: node})
            return
        if not isinstance(node, ResourceInstance) or node.id != path.resource_instance_id:
            raise bad_request(f"payload for {path} is not resource instance {path.resource_instance_id}")
        if not resource_model.multiple:
            raise not_found(f"{path.parent} is a single resource")
        self._check_writable(resource_model, caller, path)
        self._check_value(resource_model, node.value, path)
        existing_resource = enabler.read_instance(path.instance_id).resource(resource_model.id)
        instances: dict[int, Value] = {}
        if isinstance(existing_resource, MultipleResource):
            instances.update(existing_resource.instances)
        instances[node.id] = node.value
        enabler.write(path.instance_id, {resource_model.id: MultipleResource(resource_model.id, instances, node.type)})

    def _check_resources(self, model: ObjectModel, resources: Iterable[Resource], caller: Caller, base: Path) -> None:
        for resource in resources:
            where = base.child(resource.id)
            resource_model = model.resource(resource.id)
            if resource_model is None:
                raise not_found(f"{where}: object {model.id} has no resource {resource.id}")
            self._check_writable(resource_model, caller, where)
            if resource.multiple != resource_model.multiple:
                raise bad_request(f"{where} is a {'multiple' if resource_model.multiple else 'single'} resource")
            values = resource.instances.values() if isinstance(resource, MultipleResource) else [resource.value]
            for value in values:
                self._check_value(resource_model, value, where)

    @staticmethod
    def _check_writable(resource_model: ResourceModel, caller: Caller, where: Path) -> None:
        if not caller.bootstrap and not resource_model.operations.writable:
            raise method_not_allowed(f"{where} ({resource_model.name}) is not writable")

    @staticmethod
    def _check_value(resource_model: ResourceModel, value: object, where: Path) -> None:
        try:
            converted = coerce(value, resource_model.type, path=str(where))
            check_range(converted, resource_model, path=str(where))
        except InvalidValueError as exc:
            raise bad_request(str(exc)) from None

    @staticmethod
    def _check_mandatory(model: ObjectModel, given: Mapping[int, Resource], path: Path) -> None:
        missing = [
            r.name for r in model.resources.values() if r.mandatory and r.operations.writable and r.id not in given
        ]
        if missing:
            raise bad_request(f"{path}: mandatory resources missing: {', '.join(missing)}")

    # -- Execute, Create, Delete ----------------------------------------------------------------------
    def execute(self, path: Path, arguments: Mapping[int, str | None], caller: Caller = Caller()) -> None:
        if not path.is_resource or path.object_id is None:
            raise method_not_allowed(f"execute needs a resource path, got {path}")
        enabler = self.enabler(path.object_id)
        resource_model = self._resource_model(enabler.model, path)
        if not resource_model.operations.executable:
            raise method_not_allowed(f"{path} ({resource_model.name}) is not executable")
        assert path.instance_id is not None and path.resource_id is not None
        enabler.execute(self._existing_instance(enabler, path.instance_id), path.resource_id, arguments)

    def create(self, path: Path, instance: ObjectInstance, caller: Caller = Caller()) -> int:
        """Create an instance under ``/o``; returns its id (chosen by the client when absent)."""
        if not path.is_object or path.object_id is None:
            raise method_not_allowed(f"create needs an object path, got {path}")
        enabler = self.enabler(path.object_id)
        model = enabler.model
        existing = enabler.instance_ids()
        if not model.multiple and existing:
            raise bad_request(f"object {model.id} ({model.name}) is single-instance and already has one")
        instance_id = instance.id if instance.id is not None else next(i for i in range(65535) if i not in existing)
        if instance_id in existing:
            raise bad_request(f"/{model.id}/{instance_id} already exists")
        self._check_resources(model, instance.resources.values(), Caller(bootstrap=True), path.child(instance_id))
        self._check_mandatory(model, instance.resources, path.child(instance_id))
        enabler.create(instance_id, instance.resources)
        self._notify(path.child(instance_id))
        return instance_id

    def delete(self, path: Path, caller: Caller = Caller()) -> None:
        if path.is_object_instance and path.object_id is not None and path.instance_id is not None:
            if not caller.bootstrap and path.object_id in (SECURITY_OBJECT, SERVER_OBJECT, DEVICE_OBJECT):
                raise method_not_allowed(f"{path} can only be deleted by the bootstrap server")
            enabler = self.enabler(path.object_id)
            enabler.delete(self._existing_instance(enabler, path.instance_id))
            self._notify(path)
            return
        if not caller.bootstrap or not (path.is_root or path.is_object):
            raise method_not_allowed(f"delete of {path} is not allowed")
        # Bootstrap-Delete of "/" or "/o": everything except the bootstrap account and the Device object.
        for object_id in [path.object_id] if path.object_id is not None else self.object_ids():
            if object_id == DEVICE_OBJECT or object_id not in self._objects:
                continue
            enabler = self._objects[object_id]
            for instance_id in enabler.instance_ids():
                if object_id == SECURITY_OBJECT and enabler.read_instance(instance_id).value(1) is True:
                    continue
                enabler.delete(instance_id)
                self._notify(Path.of(object_id, instance_id))

    # -- helpers ----------------------------------------------------------------------------------------
    @staticmethod
    def _existing_instance(enabler: ObjectEnabler, instance_id: int) -> int:
        if instance_id not in enabler.instance_ids():
            raise not_found(f"/{enabler.model.id}/{instance_id} does not exist")
        return instance_id

    @staticmethod
    def _resource_model(model: ObjectModel, path: Path) -> ResourceModel:
        assert path.resource_id is not None
        found = model.resource(path.resource_id)
        if found is None:
            raise not_found(f"{path}: object {model.id} ({model.name}) has no resource {path.resource_id}")
        return found


__all__ = ["BOOTSTRAP", "Caller", "ObjectTree", "OperationError", "ResponseCode"]
