"""Models, value ranges, the registry of versions, value coercion and node validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from spmp.lwm2m import (
    InvalidValueError,
    ModelError,
    ModelRegistry,
    MultipleResource,
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
    instance_from_model,
    validate,
)
from spmp.lwm2m.values import coerce

R, RW, E = Operations.R, Operations.RW, Operations.E


def sensor_model(version: str = "1.0", extra: tuple[ResourceModel, ...] = ()) -> ObjectModel:
    resources = (
        ResourceModel(5700, "Sensor Value", R, False, True, ResourceType.FLOAT, ValueRange.parse("0..100")),
        ResourceModel(5701, "Sensor Units", R, False, False, ResourceType.STRING),
        ResourceModel(5605, "Reset", E, False, False, ResourceType.NONE),
        ResourceModel(6, "Sources", R, True, False, ResourceType.INTEGER, ValueRange.parse("0..7")),
        ResourceModel(7, "Mode", RW, False, False, ResourceType.INTEGER, ValueRange.parse("1,2,5-6")),
        *extra,
    )
    return ObjectModel(3316, "Voltage", {r.id: r for r in resources}, version=version)


def test_operations_flags() -> None:
    assert R.readable and not R.writable
    assert RW.readable and RW.writable
    assert E.executable and not E.readable
    assert not Operations.NONE.readable


def test_resource_type_from_ddf() -> None:
    assert ResourceType.from_ddf("unsigned integer") is ResourceType.UNSIGNED_INTEGER
    assert ResourceType.from_ddf("") is ResourceType.NONE
    with pytest.raises(ModelError, match="unknown resource type 'Double'"):
        ResourceType.from_ddf("Double")


def test_value_range_forms() -> None:
    numeric = ValueRange.parse("-40..85")
    assert numeric.contains(-40) and numeric.contains(85.0) and not numeric.contains(85.5)
    assert not numeric.contains(float("nan"))
    enum = ValueRange.parse("0-3, 7")
    assert enum.choices == frozenset({0, 1, 2, 3, 7})
    assert enum.contains(7) and not enum.contains(4) and not enum.contains(2.5)
    prose = ValueRange.parse("0..100 percent")
    assert not prose.enforced and prose.contains(1e9)
    with pytest.raises(ModelError, match="minimum above its maximum"):
        ValueRange.parse("10..1")


def test_object_model_checks_and_urn() -> None:
    assert sensor_model().urn == "urn:oma:lwm2m:ext:3316"
    assert sensor_model("1.1").urn == "urn:oma:lwm2m:ext:3316:1.1"
    assert ObjectModel(26242, "Port Status", {}).urn == "urn:oma:lwm2m:x:26242"
    assert ObjectModel(3, "Device", {}).urn == "urn:oma:lwm2m:oma:3"
    with pytest.raises(ModelError, match="not MAJOR.MINOR"):
        ObjectModel(3, "Device", {}, version="1")
    with pytest.raises(ModelError, match="outside 0..65534"):
        ObjectModel(70000, "Big", {})
    with pytest.raises(ModelError, match="keyed 1 has id 2"):
        ObjectModel(3, "Device", {1: ResourceModel(2, "x", R, False, False, ResourceType.STRING)})


def test_executable_has_no_type_even_if_ddf_says_so() -> None:
    assert ResourceModel(4, "Reboot", E, False, True, ResourceType.STRING).type is ResourceType.NONE


def test_registry_versions_and_client_view() -> None:
    newer = sensor_model("1.1", (ResourceModel(5821, "Calibration", RW, False, False, ResourceType.FLOAT),))
    registry = ModelRegistry([sensor_model(), newer])
    assert registry.versions(3316) == ["1.0", "1.1"]
    assert registry.object_model(3316) is newer
    assert registry.get(3316, "1.0") == sensor_model()
    assert registry.get(3316, "2.0") is None
    pinned = registry.for_client({3316: "1.0"})
    assert pinned.object_model(3316) == sensor_model()
    assert registry.for_client({3316: "9.9"}).object_model(3316) is newer
    with pytest.raises(ModelError, match="already registered"):
        registry.add(ObjectModel(3316, "Other", {}, version="1.1"))
    assert 3316 in registry and 1 not in registry
    assert [m.version for m in registry] == ["1.0", "1.1"]


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (3, ResourceType.FLOAT, 3.0),
        (2**63 - 1, ResourceType.INTEGER, 2**63 - 1),
        (2**64 - 1, ResourceType.UNSIGNED_INTEGER, 2**64 - 1),
        (bytearray(b"ab"), ResourceType.OPAQUE, b"ab"),
        (0, ResourceType.TIME, datetime(1970, 1, 1, tzinfo=UTC)),
        (
            datetime(2026, 1, 1, 12, 0, 0, 999, tzinfo=timezone(timedelta(hours=2))),
            ResourceType.TIME,
            datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC),
        ),
        (ObjectLink(3, 0), ResourceType.OBJLNK, ObjectLink(3, 0)),
    ],
)
def test_coerce_accepts_lossless(value: object, kind: ResourceType, expected: object) -> None:
    assert coerce(value, kind) == expected


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, ResourceType.INTEGER),
        (1.5, ResourceType.INTEGER),
        (2**63, ResourceType.INTEGER),
        (-1, ResourceType.UNSIGNED_INTEGER),
        (2**64, ResourceType.UNSIGNED_INTEGER),
        (2**60 + 1, ResourceType.FLOAT),
        ("1", ResourceType.BOOLEAN),
        (b"x", ResourceType.STRING),
        (datetime(2026, 1, 1), ResourceType.TIME),  # naive
        ("3:0", ResourceType.OBJLNK),
        (1, ResourceType.NONE),
    ],
)
def test_coerce_rejects(value: object, kind: ResourceType) -> None:
    with pytest.raises(InvalidValueError):
        coerce(value, kind, path="/1/2/3")


def test_object_link_parse() -> None:
    assert ObjectLink.parse("26243:1") == ObjectLink(26243, 1)
    assert ObjectLink(65535, 65535).is_null
    for bad in ("3", "3:", "a:1", "3:0:1", "70000:1", "-1:2"):
        with pytest.raises(InvalidValueError):
            ObjectLink.parse(bad)


def test_instance_from_model_types_and_ranges() -> None:
    model = sensor_model()
    instance = instance_from_model(model, 0, {5700: 12, 5701: "V", 6: {0: 1, 3: 7}})
    assert instance.resources[5700] == SingleResource(5700, 12.0, ResourceType.FLOAT)
    assert instance.resources[6] == MultipleResource(6, {0: 1, 3: 7}, ResourceType.INTEGER)
    assert instance.value(5701) == "V"
    with pytest.raises(InvalidValueError, match="outside '0..100'"):
        instance_from_model(model, 0, {5700: 100.5})
    with pytest.raises(InvalidValueError, match="outside '1,2,5-6'"):
        instance_from_model(model, 0, {7: 3})
    with pytest.raises(InvalidValueError, match="has no resource 9"):
        instance_from_model(model, 0, {9: 1})
    with pytest.raises(InvalidValueError, match="needs a mapping"):
        instance_from_model(model, 0, {6: 1})
    with pytest.raises(InvalidValueError, match="cannot take several"):
        instance_from_model(model, 0, {5700: {0: 1.0}})


def test_validate_against_model() -> None:
    registry = ModelRegistry([sensor_model()])
    good = instance_from_model(sensor_model(), 1, {5700: 5.0, 6: {0: 1}})
    validate(good, Path.of(3316, 1), registry)
    validate(Object(3316, {1: good}), Path.of(3316), registry)
    validate(ResourceInstance(0, 2, ResourceType.INTEGER), Path.of(3316, 1, 6, 0), registry)
    bad_cases: list[tuple[object, Path, str]] = [
        (SingleResource(5700, "x", ResourceType.STRING), Path.of(3316, 0, 5700), "model says Float"),
        (SingleResource(6, 1, ResourceType.INTEGER), Path.of(3316, 0, 6), "is multiple"),
        (MultipleResource(5700, {0: 1.0}, ResourceType.FLOAT), Path.of(3316, 0, 5700), "is single"),
        (ObjectInstance(0, {42: SingleResource(42, 1, ResourceType.INTEGER)}), Path.of(3316, 0), "no resource 42"),
        (SingleResource(5700, 101.0, ResourceType.FLOAT), Path.of(3316, 0, 5700), "outside"),
        (ResourceInstance(0, 1.0, ResourceType.FLOAT), Path.of(3316, 0, 5700, 0), "only in multiple"),
        (Object(4, {}), Path.of(4), "unknown"),
        (Object(9, {}), Path.of(3316), "object 9 given"),
    ]
    for node, path, message in bad_cases:
        with pytest.raises(InvalidValueError, match=message):
            validate(node, path, registry)  # type: ignore[arg-type]
