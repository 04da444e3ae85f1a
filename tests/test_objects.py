"""Tests of SPMP's own object definitions, their cross-check against OMA's files, and docs/objects.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spmp.lwm2m.ddf import load_ddf_directory
from spmp.lwm2m.model import ModelRegistry, ObjectModel, Operations, ResourceType
from spmp.lwm2m.objects import ALL_OBJECTS, SPMP_OBJECTS, STANDARD_OBJECTS, default_registry, ids
from spmp.lwm2m.objects.docs import render_markdown
from spmp.lwm2m.objects.reusable import REUSED_RESOURCES
from spmp.lwm2m.objects.smart_load import RULE_VALUE_TYPES
from spmp.lwm2m.objects.spmp_battery import SpmpBatteryResource

REPO = Path(__file__).resolve().parent.parent
REGISTRY_DIR = REPO / "tests" / "data" / "lwm2m-registry"

# Our standard objects are the LwM2M 1.1 versions; the registry files are the newest versions.
# Newer versions only add resources (listed here), except where noted in TYPE/RANGE/UNIT differences.
EXPECTED_VERSIONS = {  # object id: (our version, registry file's version)
    ids.SECURITY: ("1.1", "1.2"),
    ids.SERVER: ("1.1", "1.2"),
    ids.DEVICE: ("1.1", "1.2"),
    ids.CONNECTIVITY_MONITORING: ("1.2", "1.3"),
    ids.FIRMWARE_UPDATE: ("1.1", "1.2"),
}
ADDED_AFTER_OUR_VERSION = {
    ids.SECURITY: set(range(18, 31)),  # 1.2: TLS 1.3 parameters, MQTT, COSE, RDS
    ids.SERVER: {24, 25, 26, 27},  # 1.2: alternate APNs, server versions, notification mode, profile hash
    ids.CONNECTIVITY_MONITORING: {13},  # 1.3: Coverage Enhancement Level
    ids.FIRMWARE_UPDATE: {14},  # 1.2: Automatic Upgrade at Download
}
# (object, resource): (our value, registry value, why)
KNOWN_DIFFERENCES = {
    (ids.SECURITY, 15, "type"): ("Integer", "Unsigned Integer", "Security 1.1 types Certificate Usage Integer"),
    (ids.SECURITY, 16, "type"): ("Integer", "Unsigned Integer", "Security 1.1 types the ciphersuites Integer"),
    (ids.SERVER, 22, "range"): (
        "",
        "The possible values are those listed in the LwM2M Core Specification",
        "prose, not a range; the description says it",
    ),
    (ids.DEVICE, 7, "units"): ("mV", "", "the TS gives the unit in the description only"),
    (ids.DEVICE, 8, "units"): ("mA", "", "the TS gives the unit in the description only"),
    (ids.DEVICE, 9, "units"): ("%", "/100", "Device 1.1 writes percent as %, 1.2 as /100"),
    (ids.DEVICE, 10, "units"): ("KiB", "", "the TS gives the unit in the description only"),
    (ids.DEVICE, 11, "range"): ("0..8", "0..32", "Device 1.2 added error codes 9..32"),
    (ids.DEVICE, 21, "units"): ("KiB", "", "the TS gives the unit in the description only"),
}


def normalized(name: str) -> str:
    return " ".join(name.split())


def attribute(model: ObjectModel, resource_id: int, name: str) -> object:
    resource = model.resources[resource_id]
    return {
        "name": normalized(resource.name),
        "operations": resource.operations.value,
        "type": resource.type.value,
        "multiple": resource.multiple,
        "mandatory": resource.mandatory,
        "range": resource.range.text,
        "units": resource.units,
    }[name]


@pytest.fixture(scope="module")
def oma_registry() -> ModelRegistry:
    return load_ddf_directory(REGISTRY_DIR)


def test_default_registry_holds_every_object_once() -> None:
    registry = default_registry()
    id_constants = {value for name, value in vars(ids).items() if name.isupper() and isinstance(value, int)}
    assert set(registry.object_ids()) == id_constants == {model.id for model in ALL_OBJECTS}
    assert len(ALL_OBJECTS) == len(id_constants)
    assert registry is not default_registry()  # callers may add to theirs


def test_spmp_ids_are_private_vendor_ids_with_x_urns() -> None:
    assert [model.id for model in SPMP_OBJECTS] == list(ids.SPMP_OBJECT_IDS) == list(range(26241, 26247))
    for model in SPMP_OBJECTS:
        assert model.id in ids.VENDOR_PRIVATE_RANGE
        assert model.urn == f"urn:oma:lwm2m:x:{model.id}"
    assert ids.VENDOR_PRIVATE_RANGE[0] == 26241 and ids.VENDOR_PRIVATE_RANGE[-1] == 32768


@pytest.mark.parametrize("ours", STANDARD_OBJECTS, ids=lambda model: f"{model.id}-{model.name}")
def test_standard_objects_match_the_oma_definition_files(ours: ObjectModel, oma_registry: ModelRegistry) -> None:
    theirs = oma_registry.object_model(ours.id)
    assert theirs is not None
    our_version, their_version = EXPECTED_VERSIONS.get(ours.id, (theirs.version, theirs.version))
    assert (ours.version, theirs.version) == (our_version, their_version)
    assert (normalized(ours.name), ours.multiple, ours.mandatory) == (
        normalized(theirs.name),
        theirs.multiple,
        theirs.mandatory,
    )
    assert set(theirs.resources) - set(ours.resources) == ADDED_AFTER_OUR_VERSION.get(ours.id, set())
    assert set(ours.resources) <= set(theirs.resources)
    for resource_id in ours.resources:
        for name in ("name", "operations", "type", "multiple", "mandatory", "range", "units"):
            mine, registered = attribute(ours, resource_id, name), attribute(theirs, resource_id, name)
            known = KNOWN_DIFFERENCES.get((ours.id, resource_id, name))
            if known is None:
                assert mine == registered, f"/{ours.id}/{resource_id} {name}: {mine!r} != {registered!r}"
            else:
                assert (mine, registered) == known[:2], f"/{ours.id}/{resource_id} {name}: {known[2]}"


def test_every_resource_is_described() -> None:
    for model in ALL_OBJECTS:
        assert model.description, model.name
        for resource in model.resources.values():
            assert resource.description.strip(), f"/{model.id}/{resource.id} has no description"


def test_spmp_quantities_carry_units() -> None:
    for model in SPMP_OBJECTS:
        for resource in model.resources.values():
            if resource.type is ResourceType.FLOAT:
                assert resource.units, f"/{model.id}/{resource.id} {resource.name} has no units"


def test_spmp_objects_reuse_common_resource_ids_with_their_registered_type() -> None:
    for model in SPMP_OBJECTS:
        for resource in model.resources.values():
            if resource.id >= 2048:
                reused = REUSED_RESOURCES.get(resource.id)
                assert reused is not None, f"/{model.id}/{resource.id} uses an unlisted common id"
                assert resource.type is reused.type
                assert str(resource.id) in resource.description  # says it is the common resource


def resource_table(model: ObjectModel) -> dict[str, tuple[str, str, bool, bool]]:
    return {r.name: (r.operations.value, r.type.value, r.mandatory, r.multiple) for r in model.resources.values()}


def test_port_follows_the_seed() -> None:
    table = resource_table(default_registry().get(ids.PORT) or pytest.fail("no Port"))
    assert table["Name"] == ("R", "String", True, False)
    assert table["Control"] == ("R", "Objlnk", True, False)
    assert table["Status"] == ("R", "Objlnk", True, False)
    assert table["Smart Load Configuration"] == ("RW", "Objlnk", False, False)
    assert table["Smart Load Status"] == ("RW", "Objlnk", False, False)
    assert table["Voltage"] == ("R", "Objlnk", False, False)


def test_port_status_follows_the_seed() -> None:
    model = default_registry().get(ids.PORT_STATUS) or pytest.fail("no Port Status")
    table = resource_table(model)
    assert table["Name"] == ("RW", "String", True, False)
    assert table["Voltage Average"] == ("R", "Float", False, False)
    assert table["Amperage Average"] == ("R", "Float", False, False)
    assert table["Length"] == ("RW", "Integer", True, False)
    assert table["Timestamp"] == ("R", "Time", True, False)
    assert table["Alerts"] == ("R", "Objlnk", False, False)
    assert model.resources[5518].name == "Timestamp"
    units = {r.name: r.units for r in model.resources.values()}
    assert (units["Voltage Average"], units["Amperage Average"], units["Length"]) == ("V", "A", "s")


def test_alerts_are_optional_read_only_booleans() -> None:
    model = default_registry().get(ids.ALERTS) or pytest.fail("no Alerts")
    names = {r.name for r in model.resources.values()}
    seed = {"Short Circuit", "Over-Voltage", "Over-Current", "Low Voltage Disconnect", "Low Voltage Reconnect"}
    assert seed | {"Over-Temperature", "Reverse Polarity"} <= names
    for resource in model.resources.values():
        if resource.id != 5518:
            assert (resource.operations, resource.type, resource.mandatory) == (
                Operations.R,
                ResourceType.BOOLEAN,
                False,
            ), resource.name


def test_smart_load_bts_is_all_read_write() -> None:
    model = default_registry().get(ids.SMART_LOAD_BTS) or pytest.fail("no Smart Load (BTS)")
    assert all(r.operations is Operations.RW for r in model.resources.values())
    table = {r.name: r for r in model.resources.values()}
    assert table["Duty Cycle"].type is ResourceType.INTEGER and table["Duty Cycle"].range.text == "0..100"
    rf = table["RF Power Output"]
    assert (rf.type, rf.units, rf.range.minimum, rf.range.maximum) == (ResourceType.FLOAT, "dBm", 0, 50)
    assert table["Channel Bandwidth"].units == "MHz"
    assert len(table) == 14


def test_smart_load_rules_follow_the_seed() -> None:
    model = default_registry().get(ids.SMART_LOAD_RULES) or pytest.fail("no Smart Load Rules")
    table = resource_table(model)
    expected = {
        "Voltage Threshold": "Float",
        "Object ID": "Integer",
        "Object Instance ID": "Integer",
        "Resource ID": "Integer",
        "Value": "Opaque",
        "Type": "String",
    }
    for name, kind in expected.items():
        assert table[name] == ("RW", kind, True, False), name
    type_description = next(r.description for r in model.resources.values() if r.name == "Type")
    assert all(kind in type_description for kind in RULE_VALUE_TYPES)


# BATTERY-MIB (RFC 7577) batteryEntry columns and their MAX-ACCESS.
BATTERY_MIB_COLUMNS = {
    1: ("batteryIdentifier", "R"),
    2: ("batteryFirmwareVersion", "R"),
    3: ("batteryType", "R"),
    4: ("batteryTechnology", "R"),
    5: ("batteryDesignVoltage", "R"),
    6: ("batteryNumberOfCells", "R"),
    7: ("batteryDesignCapacity", "R"),
    8: ("batteryMaxChargingCurrent", "R"),
    9: ("batteryTrickleChargingCurrent", "R"),
    10: ("batteryActualCapacity", "R"),
    11: ("batteryChargingCycleCount", "R"),
    12: ("batteryLastChargingCycleTime", "R"),
    13: ("batteryChargingOperState", "R"),
    14: ("batteryChargingAdminState", "RW"),
    15: ("batteryActualCharge", "R"),
    16: ("batteryActualVoltage", "R"),
    17: ("batteryActualCurrent", "R"),
    18: ("batteryTemperature", "R"),
    19: ("batteryAlarmLowCharge", "RW"),
    20: ("batteryAlarmLowVoltage", "RW"),
    21: ("batteryAlarmLowCapacity", "RW"),
    22: ("batteryAlarmHighCycleCount", "RW"),
    23: ("batteryAlarmHighTemperature", "RW"),
    24: ("batteryAlarmLowTemperature", "RW"),
    25: ("batteryCellIdentifier", "R"),
}


def test_spmp_battery_carries_every_battery_mib_column_under_its_number() -> None:
    model = default_registry().get(ids.SPMP_BATTERY) or pytest.fail("no SPMP Battery")
    for column, (mib_name, access) in BATTERY_MIB_COLUMNS.items():
        resource = model.resources[column]
        assert mib_name in resource.description, (column, mib_name)
        assert resource.operations.value == access, mib_name
    assert model.resources[SpmpBatteryResource.STATE_OF_CHARGE].units == "/100"
    assert model.resources[SpmpBatteryResource.ACTUAL_VOLTAGE].units == "V"
    assert model.resources[SpmpBatteryResource.TEMPERATURE].units == "Cel"


def test_docs_page_is_up_to_date() -> None:
    """docs/objects.md is generated: run `python -m spmp.lwm2m.objects.docs > docs/objects.md` to refresh it."""
    page = (REPO / "docs" / "objects.md").read_text(encoding="utf-8")
    assert page == render_markdown(default_registry()), (
        "docs/objects.md is stale; regenerate it with `python -m spmp.lwm2m.objects.docs > docs/objects.md`"
    )


def test_docs_module_is_runnable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "spmp.lwm2m.objects.docs"], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout == render_markdown(default_registry())


def test_docs_page_lists_every_object_and_resource() -> None:
    page = render_markdown(default_registry())
    assert "26241–32768" in page
    for model in ALL_OBJECTS:
        assert f"## {model.id} {model.name}" in page
        assert f"`{model.urn}`" in page
        for resource in model.resources.values():
            assert f"| {resource.id} | {resource.name} |" in page
