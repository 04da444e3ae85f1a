"""Node ↔ JSON conversion for the REST API (pure: no I/O), in the shape Leshan users know.

Read results come out as::

    {"kind": "singleResource", "id": 0, "type": "STRING", "value": "SPMP"}
    {"kind": "multipleResource", "id": 7, "type": "INTEGER", "values": {"0": 3800, "1": 5000}}
    {"kind": "resourceInstance", "id": 1, "type": "INTEGER", "value": 5000}
    {"kind": "instance", "id": 0, "resources": [ ...resources... ]}
    {"kind": "object", "id": 3, "instances": [ ...instances... ]}

Values per LwM2M type: Opaque is base64, Time is ISO 8601 in UTC (with ``"epoch"`` seconds next to
it), Objlnk is ``"3:0"``, and a Float that JSON cannot hold is the string ``"NaN"``, ``"Infinity"``
or ``"-Infinity"``. Types are written as the upper-case :class:`ResourceType` names.

Requests (Write, Create, composite Write) carry the same shape, but only what the model cannot tell:
``{"value": 12}`` is a whole single-resource write because the model knows the type. ``kind`` and
``type`` may be given; a ``type`` that contradicts the model is refused rather than guessed around.
Every problem raises :class:`JsonNodeError`, naming where in the body (``resources[2].value``) and
which LwM2M path it concerns, so the API can answer 400 with a message an operator can act on.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from spmp.lwm2m.errors import InvalidValueError
from spmp.lwm2m.model import ModelLookup, ObjectModel, ResourceModel, ResourceType
from spmp.lwm2m.node import (
    MultipleResource,
    Node,
    Object,
    ObjectInstance,
    Resource,
    ResourceInstance,
    SingleResource,
    resource_from_model,
)
from spmp.lwm2m.path import MAX_ID, Path
from spmp.lwm2m.values import ObjectLink, Value, time_to_seconds

JsonValue = Any
"""Whatever ``json.loads`` returns (kept loose: request bodies are untrusted and checked here)."""

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class JsonNodeError(ValueError):
    """A JSON body does not describe a valid node; ``where`` is the spot in the body, ``path`` the LwM2M path."""

    def __init__(self, message: str, *, where: str = "", path: Path | str | None = None) -> None:
        self.reason = message
        self.where = where
        self.path = str(path) if path is not None else None
        location = ", ".join(part for part in (self.path or "", f"at {where}" if where else "") if part)
        super().__init__(f"{location}: {message}" if location else message)


# ------------------------------------------------------------------------------ node -> JSON


def type_name(kind: ResourceType) -> str:
    """``"UNSIGNED_INTEGER"`` for :attr:`ResourceType.UNSIGNED_INTEGER`: the JSON spelling of a type."""
    return kind.name


def value_to_json(value: Value) -> JsonValue:
    """One value in its JSON form (see the module docstring)."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)  # ObjectLink


def node_to_json(node: Node, path: Path | None = None) -> dict[str, JsonValue]:
    """A node as JSON; with ``path`` the result also carries ``"path"`` (the top level of a response)."""
    out: dict[str, JsonValue] = {} if path is None else {"path": str(path)}
    if isinstance(node, Object):
        out.update(kind="object", id=node.id)
        out["instances"] = [node_to_json(node.instances[i]) for i in sorted(node.instances)]
    elif isinstance(node, ObjectInstance):
        out.update(kind="instance", id=node.id)
        out["resources"] = [node_to_json(node.resources[r]) for r in sorted(node.resources)]
    elif isinstance(node, MultipleResource):
        out.update(kind="multipleResource", id=node.id, type=type_name(node.type))
        out["values"] = {str(i): value_to_json(node.instances[i]) for i in sorted(node.instances)}
        if node.type is ResourceType.TIME:
            out["epochs"] = {str(i): _epoch(node.instances[i]) for i in sorted(node.instances)}
    else:
        kind = "singleResource" if isinstance(node, SingleResource) else "resourceInstance"
        out.update(kind=kind, id=node.id, type=type_name(node.type), value=value_to_json(node.value))
        if node.type is ResourceType.TIME:
            out["epoch"] = _epoch(node.value)
    return out


def _epoch(value: Value) -> int | None:
    return time_to_seconds(value) if isinstance(value, datetime) else None


# ------------------------------------------------------------------------------ JSON -> node


def value_from_json(
    data: JsonValue, kind: ResourceType, *, where: str = "value", path: Path | str | None = None
) -> Value:
    """Parse one JSON value as ``kind``; range checks are left to the model (see :func:`node_from_json`)."""

    def fail(expected: str) -> JsonNodeError:
        return JsonNodeError(
            f"expected {expected} for a {kind.value} resource, got {_describe(data)}", where=where, path=path
        )

    if kind in (ResourceType.STRING, ResourceType.CORELNK):
        if isinstance(data, str):
            return data
        raise fail("a string")
    if kind in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER):
        if type(data) is int:
            return data
        if type(data) is float and data.is_integer() and abs(data) < 2**53:
            return int(data)  # some JSON encoders write 5.0 for 5; exact below 2**53, so nothing is lost
        raise fail("an integer")
    if kind is ResourceType.FLOAT:
        if type(data) in (int, float):
            return float(data)
        if isinstance(data, str) and data in _NON_FINITE:
            return _NON_FINITE[data]
        raise fail('a number (or "NaN", "Infinity", "-Infinity")')
    if kind is ResourceType.BOOLEAN:
        if type(data) is bool:
            return data
        raise fail("true or false")
    if kind is ResourceType.OPAQUE:
        if isinstance(data, str):
            try:
                return base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise fail("base64 text") from None
        raise fail("base64 text")
    if kind is ResourceType.TIME:
        return _time_from_json(data, fail)
    if kind is ResourceType.OBJLNK:
        if isinstance(data, str):
            try:
                return ObjectLink.parse(data)
            except InvalidValueError:
                raise fail('an object link "OBJECT:INSTANCE"') from None
        raise fail('an object link "OBJECT:INSTANCE"')
    raise JsonNodeError("an executable resource has no value: use POST to execute it", where=where, path=path)


def _time_from_json(data: JsonValue, fail: Any) -> Value:
    if type(data) is int:
        try:
            return datetime.fromtimestamp(data, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise fail("a time within years 1..9999") from None
    if isinstance(data, str):
        try:
            parsed = datetime.fromisoformat(data)
        except ValueError:
            raise fail("an ISO 8601 time such as 2024-05-01T12:00:00Z, or Unix seconds") from None
        if parsed.tzinfo is None:
            raise fail("an ISO 8601 time with a zone (Z or +hh:mm)")
        return parsed.astimezone(UTC).replace(microsecond=0)
    raise fail("an ISO 8601 time such as 2024-05-01T12:00:00Z, or Unix seconds")


def node_from_json(data: JsonValue, path: Path, models: ModelLookup, *, create: bool = False) -> Node:
    """The node a request body describes for ``path``, typed and range-checked by the model.

    ``path`` decides the shape: ``/o/i/r/ri`` a resource instance, ``/o/i/r`` a resource, ``/o/i`` an
    instance, ``/o`` an object, or with ``create=True`` the instance to create (``id`` optional).
    """
    if path.is_root:
        raise JsonNodeError("a node cannot be written at the root path", path=path)
    _require_object(data, "body", path)
    object_id = path.object_id
    assert object_id is not None  # not the root
    model = models.object_model(object_id)
    if path.is_object:
        if create:
            return _instance(data, model, object_id, _optional_id(data, "body", path), "body", path)
        return _object(data, model, object_id, path)
    if path.is_object_instance:
        _check_id(data, path.instance_id, "body", path)
        return _instance(data, model, object_id, path.instance_id, "body", path)
    resource_id = path.resource_id
    assert resource_id is not None
    resource_model = _resource_model(model, object_id, resource_id, path)
    if path.is_resource:
        _check_id(data, resource_id, "body", path)
        return _resource(data, resource_model, resource_id, "body", path)
    _check_id(data, path.resource_instance_id, "body", path)
    kind = _declared_type(data, resource_model, "body", path)
    if "value" not in data:
        raise JsonNodeError('a resource instance needs "value"', where="body", path=path)
    value = value_from_json(data["value"], kind, where="value", path=path)
    if resource_model is not None:
        if not resource_model.multiple:
            raise JsonNodeError(f"resource {resource_id} ({resource_model.name}) is single", path=path)
        checked = resource_from_model(resource_model, {path.resource_instance_id or 0: value}, path=str(path.parent))
        assert isinstance(checked, MultipleResource)
        value = next(iter(checked.instances.values()))
    return ResourceInstance(path.resource_instance_id or 0, value, kind)


def nodes_from_json(data: JsonValue, models: ModelLookup) -> dict[Path, Node]:
    """A composite Write body ``{"nodes": {"/3/0/13": {"value": ...}, ...}}`` as nodes by path."""
    _require_object(data, "body", None)
    nodes = data.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        raise JsonNodeError('expected "nodes": an object mapping paths to nodes', where="body")
    out: dict[Path, Node] = {}
    for text, item in nodes.items():
        path = parse_path(text, where=f"nodes[{text!r}]")
        try:
            out[path] = node_from_json(item, path, models)
        except JsonNodeError as exc:
            where = f"nodes[{text!r}]" + (f".{exc.where}" if exc.where and exc.where != "body" else "")
            raise JsonNodeError(exc.reason, where=where, path=exc.path) from None
    return out


def parse_path(text: JsonValue, *, where: str = "path") -> Path:
    if not isinstance(text, str):
        raise JsonNodeError(f'a path must be a string such as "/3/0/1", got {_describe(text)}', where=where)
    try:
        return Path.parse(text)
    except ValueError as exc:
        raise JsonNodeError(str(exc), where=where) from None


# ------------------------------------------------------------------------------ helpers


def _object(data: Mapping[str, JsonValue], model: ObjectModel | None, object_id: int, path: Path) -> Object:
    _check_id(data, object_id, "body", path)
    items = data.get("instances")
    if not isinstance(items, list):
        raise JsonNodeError('an object needs "instances": a list of instances', where="body", path=path)
    instances: dict[int, ObjectInstance] = {}
    for index, item in enumerate(items):
        where = f"instances[{index}]"
        _require_object(item, where, path)
        instance_id = _optional_id(item, where, path)
        if instance_id is None:
            raise JsonNodeError('an instance of an object write needs "id"', where=where, path=path)
        if instance_id in instances:
            raise JsonNodeError(f"instance {instance_id} is given twice", where=where, path=path)
        instances[instance_id] = _instance(item, model, object_id, instance_id, where, path.child(instance_id))
    return Object(object_id, instances)


def _instance(  # noqa: PLR0917 - private, and each argument is a different kind of thing
    data: Mapping[str, JsonValue],
    model: ObjectModel | None,
    object_id: int,
    instance_id: int | None,
    where: str,
    path: Path,
) -> ObjectInstance:
    items = data.get("resources")
    if not isinstance(items, list):
        raise JsonNodeError('an instance needs "resources": a list of resources', where=where, path=path)
    prefix = "" if where == "body" else f"{where}."
    resources: dict[int, Resource] = {}
    for index, item in enumerate(items):
        item_where = f"{prefix}resources[{index}]"
        _require_object(item, item_where, path)
        resource_id = _optional_id(item, item_where, path)
        if resource_id is None:
            raise JsonNodeError('a resource needs "id"', where=item_where, path=path)
        if resource_id in resources:
            raise JsonNodeError(f"resource {resource_id} is given twice", where=item_where, path=path)
        resource_path = Path.of(object_id, instance_id, resource_id) if instance_id is not None else path
        resource_model = _resource_model(model, object_id, resource_id, resource_path)
        resources[resource_id] = _resource(item, resource_model, resource_id, item_where, resource_path)
    return ObjectInstance(instance_id, resources)


def _resource(
    data: Mapping[str, JsonValue], model: ResourceModel | None, resource_id: int, where: str, path: Path
) -> Resource:
    kind = _declared_type(data, model, where, path)
    prefix = "" if where == "body" else f"{where}."
    multiple = model.multiple if model is not None else "values" in data
    if multiple:
        raw = data.get("values")
        if not isinstance(raw, dict):
            raise JsonNodeError('a multiple resource needs "values": {"0": value, ...}', where=where, path=path)
        values: dict[int, Value] = {}
        for key, item in raw.items():
            instance_id = _key_id(key, f"{prefix}values", path)
            values[instance_id] = value_from_json(item, kind, where=f"{prefix}values[{key!r}]", path=path)
        if model is None:
            return MultipleResource(resource_id, dict(sorted(values.items())), kind)
        return _checked(model, values, path)
    if "value" not in data:
        hint = ' (it is multiple: use "values")' if "values" not in data else ' (it is single: use "value")'
        raise JsonNodeError(f'a single resource needs "value"{hint}', where=where, path=path)
    value = value_from_json(data["value"], kind, where=f"{prefix}value", path=path)
    if model is None:
        return SingleResource(resource_id, value, kind)
    return _checked(model, value, path)


def _checked(model: ResourceModel, value: Value | dict[int, Value], path: Path) -> Resource:
    try:
        return resource_from_model(model, value, path=str(path))
    except InvalidValueError as exc:
        raise JsonNodeError(exc.reason, path=exc.path or path) from None


def _declared_type(data: Mapping[str, JsonValue], model: ResourceModel | None, where: str, path: Path) -> ResourceType:
    """The model's type; a ``"type"`` in the body must agree with it, and is needed only without a model."""
    declared = data.get("type")
    kind: ResourceType | None = None
    if declared is not None:
        if not isinstance(declared, str) or declared.upper() not in ResourceType.__members__:
            names = ", ".join(ResourceType.__members__)
            raise JsonNodeError(f"unknown type {declared!r}; one of {names}", where=where, path=path)
        kind = ResourceType[declared.upper()]
    if model is not None:
        if kind is not None and kind is not model.type:
            raise JsonNodeError(
                f"type {kind.name} contradicts the model ({model.name} is {type_name(model.type)})",
                where=where,
                path=path,
            )
        return model.type
    if kind is None:
        raise JsonNodeError('the model does not know this resource: give its "type"', where=where, path=path)
    return kind


def _resource_model(model: ObjectModel | None, object_id: int, resource_id: int, path: Path) -> ResourceModel | None:
    """The resource's model; None (types from the body) only for objects the server has no model of."""
    if model is None:
        return None
    found = model.resource(resource_id)
    if found is None:
        raise JsonNodeError(f"object {object_id} ({model.name}) has no resource {resource_id}", path=path)
    return found


def _require_object(data: JsonValue, where: str, path: Path | None) -> None:
    if not isinstance(data, dict):
        raise JsonNodeError(f"expected a JSON object, got {_describe(data)}", where=where, path=path)


def _optional_id(data: Mapping[str, JsonValue], where: str, path: Path) -> int | None:
    found = data.get("id")
    if found is None:
        return None
    if type(found) is not int or not 0 <= found <= MAX_ID:
        raise JsonNodeError(f'"id" must be an integer in 0..{MAX_ID}, got {_describe(found)}', where=where, path=path)
    return found


def _check_id(data: Mapping[str, JsonValue], expected: int | None, where: str, path: Path) -> None:
    found = _optional_id(data, where, path)
    if found is not None and found != expected:
        raise JsonNodeError(f'"id" {found} does not match the path', where=where, path=path)


def _key_id(key: str, where: str, path: Path) -> int:
    if not (key.isascii() and key.isdigit() and len(key) <= 5 and int(key) <= MAX_ID):
        raise JsonNodeError(f"instance key {key!r} is not an id in 0..{MAX_ID}", where=where, path=path)
    return int(key)


def _describe(data: JsonValue) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return f"boolean {str(data).lower()}"
    if isinstance(data, int | float):
        return f"number {data!r}"
    if isinstance(data, str):
        shown = data if len(data) <= 40 else data[:37] + "..."
        return f"string {shown!r}"
    if isinstance(data, list):
        return "a list"
    return "an object"
