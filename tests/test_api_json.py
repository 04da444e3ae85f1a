"""spmp.api.json_nodes: node ↔ JSON for every LwM2M type and level, round trips and precise 400 messages."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spmp.api.json_nodes import JsonNodeError, node_from_json, node_to_json, nodes_from_json, value_from_json
from spmp.lwm2m import (
    ModelRegistry,
    MultipleResource,
    Node,
    Object,
    ObjectInstance,
    ObjectLink,
    ObjectModel,
    Operations,
    Path,
    ResourceInstance,
    ResourceModel,
    ResourceType,
    SingleResource,
    ValueRange,
)
from spmp.lwm2m.model import INT64_MAX, INT64_MIN, UINT64_MAX

TYPES = [t for t in ResourceType if t is not ResourceType.NONE]
OID = 60000


def _model() -> ObjectModel:
    items = [ResourceModel(i, f"single {t.value}", Operations.RW, False, False, t) for i, t in enumerate(TYPES)]
    items += [ResourceModel(100 + i, f"multi {t.value}", Operations.RW, True, False, t) for i, t in enumerate(TYPES)]
    items.append(
        ResourceModel(200, "Percent", Operations.RW, False, False, ResourceType.INTEGER, ValueRange.parse("0..100"))
    )
    items.append(ResourceModel(201, "Run", Operations.E, False, False, ResourceType.NONE))
    return ObjectModel(OID, "All types", {r.id: r for r in items})


MODELS = ModelRegistry([_model()])

_VALUES: dict[ResourceType, st.SearchStrategy[Any]] = {
    ResourceType.STRING: st.text(),
    ResourceType.CORELNK: st.text(),
    ResourceType.INTEGER: st.integers(INT64_MIN, INT64_MAX),
    ResourceType.UNSIGNED_INTEGER: st.integers(0, UINT64_MAX),
    ResourceType.FLOAT: st.floats(allow_nan=False),
    ResourceType.BOOLEAN: st.booleans(),
    ResourceType.OPAQUE: st.binary(max_size=64),
    ResourceType.TIME: st.datetimes(timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0)),
    ResourceType.OBJLNK: st.builds(ObjectLink, st.integers(0, 65535), st.integers(0, 65535)),
}


@st.composite
def resources(draw: st.DrawFn) -> SingleResource | MultipleResource:
    index = draw(st.integers(0, len(TYPES) - 1))
    kind = TYPES[index]
    if draw(st.booleans()):
        return SingleResource(index, draw(_VALUES[kind]), kind)
    values = draw(st.dictionaries(st.integers(0, 65534), _VALUES[kind], max_size=4))
    return MultipleResource(100 + index, dict(sorted(values.items())), kind)


@st.composite
def instances(draw: st.DrawFn, instance_id: int | None = None) -> ObjectInstance:
    found = draw(st.lists(resources(), max_size=6, unique_by=lambda r: r.id))
    iid = draw(st.integers(0, 65534)) if instance_id is None else instance_id
    return ObjectInstance(iid, {r.id: r for r in sorted(found, key=lambda r: r.id)})


def through_json(node: Node, path: Path, **options: Any) -> Node:
    """Node → JSON text → node, as a client of the API would send it back."""
    text = json.dumps(node_to_json(node, path), allow_nan=False)
    return node_from_json(json.loads(text), path, MODELS, **options)


@given(resources(), st.integers(0, 65534))
def test_resource_round_trip(resource: SingleResource | MultipleResource, instance_id: int) -> None:
    path = Path.of(OID, instance_id, resource.id)
    assert through_json(resource, path) == resource


@given(st.integers(0, len(TYPES) - 1), st.integers(0, 65534), st.data())
def test_resource_instance_round_trip(index: int, ri: int, data: st.DataObject) -> None:
    kind = TYPES[index]
    node = ResourceInstance(ri, data.draw(_VALUES[kind]), kind)
    assert through_json(node, Path.of(OID, 0, 100 + index, ri)) == node


@given(instances(instance_id=3))
def test_instance_round_trip(instance: ObjectInstance) -> None:
    assert through_json(instance, Path.of(OID, 3)) == instance


@given(st.lists(instances(), max_size=3, unique_by=lambda i: i.id))
def test_object_round_trip(found: list[ObjectInstance]) -> None:
    node = Object(OID, {i.id: i for i in sorted(found, key=lambda i: i.id or 0)})
    assert through_json(node, Path.of(OID)) == node


@given(instances())
def test_create_body_round_trip(instance: ObjectInstance) -> None:
    assert through_json(instance, Path.of(OID), create=True) == instance
    without_id = {k: v for k, v in node_to_json(instance).items() if k != "id"}
    created = node_from_json(without_id, Path.of(OID), MODELS, create=True)
    assert created == ObjectInstance(None, instance.resources)


def test_json_shapes() -> None:
    float_index, time_index = TYPES.index(ResourceType.FLOAT), TYPES.index(ResourceType.TIME)
    when = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert node_to_json(SingleResource(time_index, when, ResourceType.TIME), Path.of(OID, 0, time_index)) == {
        "path": f"/{OID}/0/{time_index}",
        "kind": "singleResource",
        "id": time_index,
        "type": "TIME",
        "value": "2024-05-01T12:00:00Z",
        "epoch": 1714564800,
    }
    opaque = node_to_json(SingleResource(1, b"\x00\xff", ResourceType.OPAQUE))
    assert opaque["type"] == "OPAQUE" and opaque["value"] == "AP8="
    link = node_to_json(ResourceInstance(0, ObjectLink(3, 0), ResourceType.OBJLNK))
    assert link == {"kind": "resourceInstance", "id": 0, "type": "OBJLNK", "value": "3:0"}
    multiple = node_to_json(MultipleResource(7, {0: 1, 1: 5}, ResourceType.INTEGER))
    assert multiple == {"kind": "multipleResource", "id": 7, "type": "INTEGER", "values": {"0": 1, "1": 5}}
    non_finite = MultipleResource(100 + float_index, {0: math.inf, 1: -math.inf, 2: math.nan}, ResourceType.FLOAT)
    shown = node_to_json(non_finite)
    assert shown["values"] == {"0": "Infinity", "1": "-Infinity", "2": "NaN"}
    back = node_from_json(shown, Path.of(OID, 0, 100 + float_index), MODELS)
    assert isinstance(back, MultipleResource) and math.isnan(back.instances[2]) and back.instances[0] == math.inf


def test_lenient_inputs() -> None:
    float_index, time_index = TYPES.index(ResourceType.FLOAT), TYPES.index(ResourceType.TIME)
    int_index = TYPES.index(ResourceType.INTEGER)
    assert value_from_json(3, ResourceType.FLOAT) == 3.0
    assert value_from_json(5.0, ResourceType.INTEGER) == 5
    assert value_from_json(0, ResourceType.TIME) == datetime(1970, 1, 1, tzinfo=UTC)
    node = node_from_json({"value": "2024-05-01T14:00:00.5+02:00"}, Path.of(OID, 0, time_index), MODELS)
    assert node == SingleResource(time_index, datetime(2024, 5, 1, 12, tzinfo=UTC), ResourceType.TIME)
    typed = node_from_json({"type": "float", "value": 1}, Path.of(OID, 0, float_index), MODELS)
    assert typed == SingleResource(float_index, 1.0, ResourceType.FLOAT)
    assert node_from_json({"id": int_index, "value": 1}, Path.of(OID, 0, int_index), MODELS).id == int_index


def test_unknown_object_needs_explicit_types() -> None:
    path = Path.of(4242, 0, 1)
    with pytest.raises(JsonNodeError, match='give its "type"'):
        node_from_json({"value": 1}, path, MODELS)
    assert node_from_json({"type": "INTEGER", "value": 1}, path, MODELS) == SingleResource(1, 1, ResourceType.INTEGER)
    multiple = node_from_json({"type": "STRING", "values": {"1": "b", "0": "a"}}, path, MODELS)
    assert multiple == MultipleResource(1, {0: "a", 1: "b"}, ResourceType.STRING)


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (
            {"value": "x"},
            (OID, 0, 1),
            r"/60000/0/1, at value: expected an integer for a Integer resource, got string 'x'",
        ),
        ({"value": True}, (OID, 0, 1), "expected an integer"),
        ({"value": 1}, (OID, 0, 4), "expected true or false"),
        ({"value": "@@"}, (OID, 0, 5), "expected base64 text"),
        ({"value": "yesterday"}, (OID, 0, 6), "ISO 8601"),
        ({"value": "2024-05-01T12:00:00"}, (OID, 0, 6), "with a zone"),
        ({"value": "3-0"}, (OID, 0, 7), "OBJECT:INSTANCE"),
        ({"value": "NaN"}, (OID, 0, 1), "expected an integer"),
        ({"value": 101}, (OID, 0, 200), "outside '0..100'"),
        ({"value": 1}, (OID, 0, 201), "executable resource has no value"),
        ({"value": 1}, (OID, 0, 999), "has no resource 999"),
        ({"values": {"0": 1}}, (OID, 0, 1), 'single resource needs "value"'),
        ({"value": 1}, (OID, 0, 101), 'multiple resource needs "values"'),
        ({"values": {"x": 1}}, (OID, 0, 101), "instance key 'x'"),
        ({"type": "STRING", "value": 1}, (OID, 0, 1), "contradicts the model"),
        ({"type": "DECIMAL", "value": 1}, (OID, 0, 1), "unknown type"),
        ({"id": 2, "value": 1}, (OID, 0, 1), "does not match the path"),
        ([1], (OID, 0, 1), "expected a JSON object, got a list"),
        ({"resources": {}}, (OID, 0), '"resources": a list'),
        ({"resources": [{"value": 1}]}, (OID, 0), 'at resources\\[0\\]: a resource needs "id"'),
        ({"resources": [{"id": 1, "value": "x"}]}, (OID, 0), "at resources\\[0\\].value: expected an integer"),
        ({"resources": [{"id": 1, "value": 1}, {"id": 1, "value": 2}]}, (OID, 0), "given twice"),
        ({"instances": [{"resources": []}]}, (OID,), 'needs "id"'),
        ({"value": 1}, (OID, 0, 1, 0), "is single"),
        ({}, (), "root"),
    ],
)
def test_errors_say_what_and_where(body: Any, path: tuple[int, ...], message: str) -> None:
    with pytest.raises(JsonNodeError, match=message):
        node_from_json(body, Path(path), MODELS)


def test_composite_write_body() -> None:
    nodes = nodes_from_json({"nodes": {f"/{OID}/0/1": {"value": 5}, f"/{OID}/1/0": {"value": "a"}}}, MODELS)
    assert nodes == {
        Path.of(OID, 0, 1): SingleResource(1, 5, ResourceType.INTEGER),
        Path.of(OID, 1, 0): SingleResource(0, "a", ResourceType.STRING),
    }
    with pytest.raises(JsonNodeError, match=r"nodes\['/60000/0/1'\].value: expected an integer"):
        nodes_from_json({"nodes": {f"/{OID}/0/1": {"value": "five"}}}, MODELS)
    with pytest.raises(JsonNodeError, match='"nodes"'):
        nodes_from_json({"paths": []}, MODELS)
