"""Minimal object models for the codec tests, until the real registry (spmp.lwm2m.objects) lands.

Device (3), Server (1) and Access Control (2) carry just the resources the TS examples use, with the
types of the OMA definitions; ``TS_EXAMPLE_*`` are the made-up objects 65/66 of the TS Objlnk
example; ``ALL_TYPES`` (object 32000) has one single and one multiple resource of every type, for
property tests: single resource ids are the ``ResourceType`` index, multiple ones that plus 100.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st

from spmp.lwm2m.model import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    ModelRegistry,
    ObjectModel,
    Operations,
    ResourceModel,
    ResourceType,
)
from spmp.lwm2m.values import ObjectLink, Value

S, I, U, F, B, O, T, L, C = (  # noqa: E741 - one letter per type keeps the tables below readable
    ResourceType.STRING,
    ResourceType.INTEGER,
    ResourceType.UNSIGNED_INTEGER,
    ResourceType.FLOAT,
    ResourceType.BOOLEAN,
    ResourceType.OPAQUE,
    ResourceType.TIME,
    ResourceType.OBJLNK,
    ResourceType.CORELNK,
)


def _res(
    rid: int, name: str, kind: ResourceType, *, multiple: bool = False, ops: Operations = Operations.RW
) -> ResourceModel:
    if kind is ResourceType.NONE:
        ops = Operations.E
    return ResourceModel(rid, name, ops, multiple, False, kind)


def _obj(oid: int, name: str, resources: list[ResourceModel], *, multiple: bool = True) -> ObjectModel:
    return ObjectModel(oid, name, {r.id: r for r in resources}, multiple=multiple)


SERVER = _obj(
    1,
    "LwM2M Server",
    [
        _res(0, "Short Server ID", I),
        _res(1, "Lifetime", I),
        _res(2, "Default Minimum Period", I),
        _res(3, "Default Maximum Period", I),
        _res(4, "Disable", ResourceType.NONE),
        _res(5, "Disable Timeout", I),
        _res(6, "Notification Storing When Disabled or Offline", B),
        _res(7, "Binding", S),
        _res(8, "Registration Update Trigger", ResourceType.NONE),
    ],
)

ACCESS_CONTROL = _obj(
    2,
    "LwM2M Access Control",
    [
        _res(0, "Object ID", I),
        _res(1, "Object Instance ID", I),
        _res(2, "ACL", I, multiple=True),
        _res(3, "Access Control Owner", I),
    ],
)

DEVICE = _obj(
    3,
    "Device",
    [
        _res(0, "Manufacturer", S),
        _res(1, "Model Number", S),
        _res(2, "Serial Number", S),
        _res(3, "Firmware Version", S),
        _res(4, "Reboot", ResourceType.NONE),
        _res(5, "Factory Reset", ResourceType.NONE),
        _res(6, "Available Power Sources", I, multiple=True),
        _res(7, "Power Source Voltage", I, multiple=True),
        _res(8, "Power Source Current", I, multiple=True),
        _res(9, "Battery Level", I),
        _res(10, "Memory Free", I),
        _res(11, "Error Code", I, multiple=True),
        _res(12, "Reset Error Code", ResourceType.NONE),
        _res(13, "Current Time", T),
        _res(14, "UTC Offset", S),
        _res(15, "Timezone", S),
        _res(16, "Supported Binding and Modes", S),
        _res(17, "Device Type", S),
        _res(18, "Hardware Version", S),
        _res(19, "Software Version", S),
        _res(20, "Battery Status", I),
        _res(21, "Memory Total", I),
        _res(22, "ExtDevInfo", L, multiple=True),
    ],
    multiple=False,
)

# TS Core §7.4.3 Objlnk example: object 65 links to instances of object 66, which links onwards.
TS_EXAMPLE_65 = _obj(65, "Example 65", [_res(0, "Links", L, multiple=True), _res(1, "Number", S), _res(2, "Value", I)])
TS_EXAMPLE_66 = _obj(66, "Example 66", [_res(0, "Name", S), _res(1, "Address", S), _res(2, "Link", L)])

VALUE_TYPES = [t for t in ResourceType if t is not ResourceType.NONE]
ALL_TYPES_ID = 32000
MULTIPLE_OFFSET = 100
ALL_TYPES = _obj(
    ALL_TYPES_ID,
    "All Types",
    [_res(index, kind.value, kind) for index, kind in enumerate(VALUE_TYPES)]
    + [_res(MULTIPLE_OFFSET + index, f"{kind.value}s", kind, multiple=True) for index, kind in enumerate(VALUE_TYPES)]
    + [_res(99, "Execute", ResourceType.NONE)],
)

MODELS = ModelRegistry([SERVER, ACCESS_CONTROL, DEVICE, TS_EXAMPLE_65, TS_EXAMPLE_66, ALL_TYPES])


def single_id(kind: ResourceType) -> int:
    """The ALL_TYPES resource id of the single resource of ``kind``."""
    return VALUE_TYPES.index(kind)


def multiple_id(kind: ResourceType) -> int:
    """The ALL_TYPES resource id of the multiple resource of ``kind``."""
    return MULTIPLE_OFFSET + VALUE_TYPES.index(kind)


def values(kind: ResourceType) -> st.SearchStrategy[Value]:
    """Hypothesis strategy for canonical values of ``kind`` (finite floats, whole-second UTC times)."""
    strategies: dict[ResourceType, st.SearchStrategy[Value]] = {
        ResourceType.STRING: st.text(),
        ResourceType.CORELNK: st.text(),
        ResourceType.INTEGER: st.integers(INT64_MIN, INT64_MAX),
        ResourceType.UNSIGNED_INTEGER: st.integers(0, UINT64_MAX),
        ResourceType.FLOAT: st.floats(allow_nan=False, allow_infinity=False),
        ResourceType.BOOLEAN: st.booleans(),
        ResourceType.OPAQUE: st.binary(),
        ResourceType.TIME: st.datetimes(datetime(1900, 1, 1), datetime(3000, 1, 1)).map(
            lambda d: d.replace(microsecond=0, tzinfo=UTC)
        ),
        ResourceType.OBJLNK: st.builds(ObjectLink, st.integers(0, 65535), st.integers(0, 65535)),
    }
    return strategies[kind]
