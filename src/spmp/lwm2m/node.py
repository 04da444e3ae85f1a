"""The typed node tree: objects, object instances, resources and resource instances.

Nodes are values: treat them as immutable (codecs, stores and caches share them). They are plain
slotted dataclasses rather than frozen ones because a frozen dataclass pays ``object.__setattr__``
per field on construction, which tripled decode time in measurement.

A node knows its own id and, for resources, its LwM2M type, so that codecs can encode it without
a model; :func:`validate` checks a node against a model (unknown ids, single vs multiple, types,
ranges) and is what servers and clients call on every write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from spmp.lwm2m.errors import InvalidValueError
from spmp.lwm2m.model import ModelLookup, ObjectModel, ResourceModel, ResourceType
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import Value, check_range, coerce


@dataclass(slots=True)
class ResourceInstance:
    """One instance of a multiple resource, addressed as ``/o/i/r/ri``."""

    id: int
    value: Value
    type: ResourceType


@dataclass(slots=True)
class SingleResource:
    id: int
    value: Value
    type: ResourceType

    @property
    def multiple(self) -> bool:
        return False


@dataclass(slots=True)
class MultipleResource:
    id: int
    instances: Mapping[int, Value]
    type: ResourceType

    @property
    def multiple(self) -> bool:
        return True

    def instance(self, instance_id: int) -> ResourceInstance | None:
        if instance_id not in self.instances:
            return None
        return ResourceInstance(instance_id, self.instances[instance_id], self.type)


Resource = SingleResource | MultipleResource


@dataclass(slots=True)
class ObjectInstance:
    """An object instance; ``id`` is None only in a Create payload that lets the client choose it."""

    id: int | None
    resources: Mapping[int, Resource] = field(default_factory=dict)

    def resource(self, resource_id: int) -> Resource | None:
        return self.resources.get(resource_id)

    def value(self, resource_id: int) -> Value | None:
        """The value of a single resource, or None when absent or multiple."""
        found = self.resources.get(resource_id)
        return found.value if isinstance(found, SingleResource) else None


@dataclass(slots=True)
class Object:
    id: int
    instances: Mapping[int, ObjectInstance] = field(default_factory=dict)

    def instance(self, instance_id: int) -> ObjectInstance | None:
        return self.instances.get(instance_id)


Node = Object | ObjectInstance | SingleResource | MultipleResource | ResourceInstance


def resource_from_model(model: ResourceModel, value: Value | Mapping[int, Value], *, path: str = "") -> Resource:
    """Build a resource node typed by its model, coercing and range-checking values."""
    where = path or f"resource {model.id}"
    if model.multiple:
        if not isinstance(value, Mapping):
            raise InvalidValueError("a multiple resource needs a mapping of instance id to value", path=where)
        checked: dict[int, Value] = {}
        for instance_id, item in sorted(value.items()):
            converted = coerce(item, model.type, path=f"{where}/{instance_id}")
            check_range(converted, model, path=f"{where}/{instance_id}")
            checked[instance_id] = converted
        return MultipleResource(model.id, checked, model.type)
    if isinstance(value, Mapping):
        raise InvalidValueError("a single resource cannot take several instances", path=where)
    converted_single = coerce(value, model.type, path=where)
    check_range(converted_single, model, path=where)
    return SingleResource(model.id, converted_single, model.type)


def instance_from_model(
    model: ObjectModel, instance_id: int | None, values: Mapping[int, Value | Mapping[int, Value]]
) -> ObjectInstance:
    """Build an object instance from ``{resource_id: value}`` (a mapping for multiple resources)."""
    resources: dict[int, Resource] = {}
    for resource_id, value in sorted(values.items()):
        resource_model = model.resource(resource_id)
        where = f"/{model.id}/{'' if instance_id is None else instance_id}/{resource_id}".replace("//", "/")
        if resource_model is None:
            raise InvalidValueError(f"object {model.id} ({model.name}) has no resource {resource_id}", path=where)
        resources[resource_id] = resource_from_model(resource_model, value, path=where)
    return ObjectInstance(instance_id, resources)


def validate(node: Node, path: Path, models: ModelLookup) -> None:
    """Check that ``node`` fits ``path`` and the model; raise InvalidValueError on the first fault."""
    object_id = path.object_id
    if object_id is None:
        raise InvalidValueError("a node cannot be validated against the root path", path=str(path))
    model = models.object_model(object_id)
    if model is None:
        raise InvalidValueError(f"object {object_id} is unknown", path=str(path))
    if isinstance(node, Object):
        if node.id != object_id:
            raise InvalidValueError(f"object {node.id} given for path {path}", path=str(path))
        if not model.multiple and len(node.instances) > 1:
            raise InvalidValueError(f"object {object_id} ({model.name}) is single-instance", path=str(path))
        for instance in node.instances.values():
            if instance.id is None:
                raise InvalidValueError("an object node needs instance ids", path=str(path))
            _validate_instance(instance, model, path.child(instance.id))
    elif isinstance(node, ObjectInstance):
        _validate_instance(node, model, path if path.is_object_instance else path.child(node.id or 0))
    elif isinstance(node, SingleResource | MultipleResource):
        _validate_resource(node, model, path)
    else:
        resource_model = _resource_model(model, path.resource_id, path)
        if not resource_model.multiple:
            raise InvalidValueError("resource instances exist only in multiple resources", path=str(path))
        _validate_value(node.value, node.type, resource_model, str(path))


def _resource_model(model: ObjectModel, resource_id: int | None, path: Path) -> ResourceModel:
    if resource_id is None:
        raise InvalidValueError("path does not name a resource", path=str(path))
    found = model.resource(resource_id)
    if found is None:
        raise InvalidValueError(f"object {model.id} ({model.name}) has no resource {resource_id}", path=str(path))
    return found


def _validate_instance(instance: ObjectInstance, model: ObjectModel, path: Path) -> None:
    for resource in instance.resources.values():
        _validate_resource(resource, model, path.child(resource.id))


def _validate_resource(resource: Resource, model: ObjectModel, path: Path) -> None:
    resource_model = _resource_model(model, resource.id, path)
    if isinstance(resource, MultipleResource):
        if not resource_model.multiple:
            raise InvalidValueError(f"resource {resource.id} ({resource_model.name}) is single", path=str(path))
        for instance_id, value in resource.instances.items():
            _validate_value(value, resource.type, resource_model, f"{path}/{instance_id}")
    else:
        if resource_model.multiple:
            raise InvalidValueError(f"resource {resource.id} ({resource_model.name}) is multiple", path=str(path))
        _validate_value(resource.value, resource.type, resource_model, str(path))


def _validate_value(value: Value, kind: ResourceType, model: ResourceModel, where: str) -> None:
    if kind is not model.type:
        raise InvalidValueError(f"value typed {kind.value}, the model says {model.type.value}", path=where)
    converted = coerce(value, model.type, path=where)
    if converted != value:
        raise InvalidValueError(f"value {value!r} is not in canonical form for {kind.value}", path=where)
    check_range(converted, model, path=where)
