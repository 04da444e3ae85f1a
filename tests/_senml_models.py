"""Minimal object models for the SenML / LwM2M JSON / LwM2M CBOR codec tests.

Only what the TS examples use: Device (3), LwM2M Server (1), the Objlnk example objects 65-67 of
TS Core 1.1 Table 7.4.3-4, object 72 of Table 7.4.3-3, Light Control (3311), Set Point (3308), and
an "all types" test object (30000) with every resource type, single and multiple, for the
property tests.
"""

from __future__ import annotations

from spmp.lwm2m.model import ModelRegistry, ObjectModel, Operations, ResourceModel, ResourceType

S, I, U, F = ResourceType.STRING, ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.FLOAT  # noqa: E741 - one-letter type names keep the tables readable
B, O, T, L, C = ResourceType.BOOLEAN, ResourceType.OPAQUE, ResourceType.TIME, ResourceType.OBJLNK, ResourceType.CORELNK  # noqa: E741


def _r(
    rid: int, name: str, kind: ResourceType, *, multiple: bool = False, ops: Operations = Operations.RW
) -> ResourceModel:
    if kind is ResourceType.NONE:
        ops = Operations.E
    return ResourceModel(rid, name, ops, multiple, False, kind)


def _o(oid: int, name: str, *resources: ResourceModel, multiple: bool = True) -> ObjectModel:
    return ObjectModel(oid, name, {r.id: r for r in resources}, multiple=multiple)


DEVICE = _o(
    3,
    "Device",
    _r(0, "Manufacturer", S),
    _r(1, "Model Number", S),
    _r(2, "Serial Number", S),
    _r(3, "Firmware Version", S),
    _r(4, "Reboot", ResourceType.NONE),
    _r(5, "Factory Reset", ResourceType.NONE),
    _r(6, "Available Power Sources", I, multiple=True),
    _r(7, "Power Source Voltage", I, multiple=True),
    _r(8, "Power Source Current", I, multiple=True),
    _r(9, "Battery Level", I),
    _r(10, "Memory Free", I),
    _r(11, "Error Code", I, multiple=True),
    _r(13, "Current Time", T),
    _r(14, "UTC Offset", S),
    _r(15, "Timezone", S),
    _r(16, "Supported Binding and Modes", S),
    multiple=False,
)

SERVER = _o(
    1,
    "LwM2M Server",
    _r(0, "Short Server ID", I),
    _r(1, "Lifetime", I),
    _r(2, "Default Minimum Period", I),
    _r(3, "Default Maximum Period", I),
    _r(6, "Notification Storing", B),
    _r(7, "Binding", S),
)

ALL_TYPES_ID = 30000
SINGLE_IDS = {S: 0, I: 1, U: 2, F: 3, B: 4, O: 5, T: 6, L: 7, C: 8}
MULTIPLE_IDS = {kind: rid + 100 for kind, rid in SINGLE_IDS.items()}

ALL_TYPES = _o(
    ALL_TYPES_ID,
    "All Types",
    *(_r(rid, f"single {kind.value}", kind) for kind, rid in SINGLE_IDS.items()),
    *(_r(rid, f"multiple {kind.value}", kind, multiple=True) for kind, rid in MULTIPLE_IDS.items()),
    _r(200, "Execute", ResourceType.NONE),
)

MODELS = ModelRegistry(
    [
        DEVICE,
        SERVER,
        _o(65, "Example 65", _r(0, "Links", L, multiple=True), _r(1, "Number", S), _r(2, "Flag", I)),
        _o(66, "Example 66", _r(0, "Name", S), _r(1, "Address", S), _r(2, "Link", L)),
        _o(67, "Example 67", _r(0, "Address", S), _r(1, "Mask", S)),
        _o(72, "Example 72", _r(2, "Temperature", F)),
        _o(3311, "Light Control", _r(5850, "On/Off", B), _r(5851, "Dimmer", I)),
        _o(3308, "Set Point", _r(5900, "Set Point Value", F)),
        _o(1024, "Leshan test", _r(0, "String", S), _r(1, "Float", F), _r(2, "Boolean", B)),
        ALL_TYPES,
    ]
)


# --- hypothesis strategies shared by the three codec test modules ------------------------------

from datetime import datetime  # noqa: E402

from hypothesis import strategies as st  # noqa: E402

from spmp.lwm2m.node import MultipleResource, ObjectInstance, Resource, SingleResource  # noqa: E402
from spmp.lwm2m.values import ObjectLink, Value, time_from_seconds  # noqa: E402

VALUES: dict[ResourceType, st.SearchStrategy[Value]] = {
    S: st.text(max_size=20),
    C: st.text(max_size=20),
    I: st.integers(-(2**63), 2**63 - 1),
    U: st.integers(0, 2**64 - 1),
    F: st.floats(allow_nan=False, allow_infinity=False),
    B: st.booleans(),
    O: st.binary(max_size=20),
    T: st.integers(0, 2**33).map(time_from_seconds),
    L: st.builds(ObjectLink, st.integers(0, 65535), st.integers(0, 65535)),
}
KINDS = list(SINGLE_IDS)
ids = st.integers(0, 65534)


@st.composite
def resources(draw: st.DrawFn, kind: ResourceType | None = None, multiple: bool | None = None) -> Resource:
    kind = draw(st.sampled_from(KINDS)) if kind is None else kind
    multiple = draw(st.booleans()) if multiple is None else multiple
    if multiple:
        # at least one value: SenML has no way to say "a multiple resource with no instances"
        instances = draw(st.dictionaries(ids, VALUES[kind], min_size=1, max_size=3))
        return MultipleResource(MULTIPLE_IDS[kind], instances, kind)
    return SingleResource(SINGLE_IDS[kind], draw(VALUES[kind]), kind)


@st.composite
def instances(draw: st.DrawFn, instance_id: int | None = None) -> ObjectInstance:
    iid = draw(ids) if instance_id is None else instance_id
    found = draw(st.lists(resources(), max_size=5))
    return ObjectInstance(iid, {r.id: r for r in found})


def when(seconds: int) -> datetime:
    return time_from_seconds(seconds)
