"""The client's object tree: LwM2M device-management semantics and their response codes."""

from __future__ import annotations

import pytest

from spmp.client.objects import StoredObject
from spmp.client.tree import BOOTSTRAP, ObjectTree
from spmp.lwm2m import (
    ModelRegistry,
    MultipleResource,
    Object,
    ObjectInstance,
    ObjectModel,
    Operations,
    Path,
    ResourceInstance,
    ResourceModel,
    ResourceType,
    SingleResource,
    ValueRange,
    instance_from_model,
)
from spmp.lwm2m.response import OperationError, ResponseCode

R, W, RW, E = Operations.R, Operations.W, Operations.RW, Operations.E
F, INT, S = ResourceType.FLOAT, ResourceType.INTEGER, ResourceType.STRING


def port_status_model() -> ObjectModel:
    items = [
        ResourceModel(0, "Name", RW, False, True, S),
        ResourceModel(1, "Voltage Average", R, False, False, F),
        ResourceModel(2, "Length", RW, False, True, INT, ValueRange.parse("1..86400")),
        ResourceModel(3, "Secret", W, False, False, S),
        ResourceModel(4, "Reset", E, False, False, ResourceType.NONE),
        ResourceModel(5, "Tags", RW, True, False, S),
        ResourceModel(6, "Note", RW, False, False, S),
    ]
    return ObjectModel(26242, "Port Status", {r.id: r for r in items})


def device_model() -> ObjectModel:
    return ObjectModel(3, "Device", {0: ResourceModel(0, "Manufacturer", R, False, False, S)}, multiple=False)


Setup = tuple[ObjectTree, StoredObject, list[Path], list[dict[int, str | None]]]


@pytest.fixture
def setup() -> Setup:
    registry = ModelRegistry([port_status_model(), device_model()])
    tree = ObjectTree(registry)
    ports = StoredObject(port_status_model())
    ports.add_instance(0, instance_from_model(port_status_model(), 0, {0: "PV", 2: 60, 5: {0: "a", 1: "b"}}))
    ports.set_reader(1, lambda iid: 48.5 + iid)
    executed: list[dict[int, str | None]] = []
    ports.set_executor(4, lambda iid, args: executed.append(dict(args)))
    device = StoredObject(device_model())
    device.add_instance(0, instance_from_model(device_model(), 0, {0: "SPMP"}))
    tree.add(ports)
    tree.add(device)
    changes: list[Path] = []
    tree.listeners.append(changes.append)
    return tree, ports, changes, executed


def codes(exc: pytest.ExceptionInfo[OperationError]) -> ResponseCode:
    return exc.value.code


def test_read_levels(setup: Setup) -> None:
    tree, _, _, _ = setup
    instance = tree.read(Path.parse("/26242/0"))
    assert isinstance(instance, ObjectInstance)
    assert sorted(instance.resources) == [0, 1, 2, 5]  # the write-only resource 3 is never read
    assert instance.value(1) == 48.5
    whole = tree.read(Path.parse("/26242"))
    assert isinstance(whole, Object) and list(whole.instances) == [0]
    assert tree.read(Path.parse("/26242/0/2")) == SingleResource(2, 60, INT)
    assert tree.read(Path.parse("/26242/0/5/1")) == ResourceInstance(1, "b", S)
    assert tree.instance_paths() == [Path.of(3, 0), Path.of(26242, 0)]


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/", ResponseCode.METHOD_NOT_ALLOWED),
        ("/4", ResponseCode.NOT_FOUND),
        ("/26242/9", ResponseCode.NOT_FOUND),
        ("/26242/0/99", ResponseCode.NOT_FOUND),
        ("/26242/0/3", ResponseCode.METHOD_NOT_ALLOWED),
        ("/26242/0/6", ResponseCode.NOT_FOUND),
        ("/26242/0/5/7", ResponseCode.NOT_FOUND),
        ("/26242/0/2/0", ResponseCode.NOT_FOUND),
    ],
)
def test_read_errors(setup: Setup, path: str, code: ResponseCode) -> None:
    tree, _, _, _ = setup
    with pytest.raises(OperationError) as info:
        tree.read(Path.parse(path))
    assert codes(info) is code


def test_partial_update_and_replace(
    setup: Setup,
) -> None:
    tree, _, changes, _ = setup
    tree.write(Path.parse("/26242/0"), ObjectInstance(0, {2: SingleResource(2, 300, INT)}), replace=False)
    after = tree.read(Path.parse("/26242/0"))
    assert isinstance(after, ObjectInstance)
    assert after.value(2) == 300 and after.value(0) == "PV"
    assert Path.parse("/26242/0/2") in changes
    # Replace drops writable resources missing from the payload (the tags), keeps read-only ones.
    replacement = ObjectInstance(0, {0: SingleResource(0, "Load 1", S), 2: SingleResource(2, 5, INT)})
    tree.write(Path.parse("/26242/0"), replacement, replace=True)
    replaced = tree.read(Path.parse("/26242/0"))
    assert isinstance(replaced, ObjectInstance)
    assert sorted(replaced.resources) == [0, 1, 2]
    with pytest.raises(OperationError, match="mandatory resources missing: Length") as info:
        tree.write(Path.parse("/26242/0"), ObjectInstance(0, {0: SingleResource(0, "x", S)}), replace=True)
    assert codes(info) is ResponseCode.BAD_REQUEST


def test_multiple_resource_writes(
    setup: Setup,
) -> None:
    tree, _, _, _ = setup
    tree.write(Path.parse("/26242/0/5"), MultipleResource(5, {7: "z"}, S), replace=False)
    assert tree.read(Path.parse("/26242/0/5")) == MultipleResource(5, {0: "a", 1: "b", 7: "z"}, S)
    tree.write(Path.parse("/26242/0/5"), MultipleResource(5, {2: "only"}, S), replace=True)
    assert tree.read(Path.parse("/26242/0/5")) == MultipleResource(5, {2: "only"}, S)
    tree.write(Path.parse("/26242/0/5/3"), ResourceInstance(3, "three", S), replace=True)
    assert tree.read(Path.parse("/26242/0/5")) == MultipleResource(5, {2: "only", 3: "three"}, S)


@pytest.mark.parametrize(
    ("path", "node", "code"),
    [
        ("/26242/0/1", SingleResource(1, 1.0, F), ResponseCode.METHOD_NOT_ALLOWED),
        ("/26242/0/2", SingleResource(2, 0, INT), ResponseCode.BAD_REQUEST),
        ("/26242/0/2", SingleResource(2, "x", S), ResponseCode.BAD_REQUEST),
        ("/26242/0/2", SingleResource(0, "x", S), ResponseCode.BAD_REQUEST),
        ("/26242/0/5", SingleResource(5, "x", S), ResponseCode.BAD_REQUEST),
        ("/26242/1/2", SingleResource(2, 5, INT), ResponseCode.NOT_FOUND),
        ("/26242", Object(26242, {}), ResponseCode.METHOD_NOT_ALLOWED),
        ("/26242/0", ObjectInstance(0, {9: SingleResource(9, 1, INT)}), ResponseCode.NOT_FOUND),
    ],
)
def test_write_errors_leave_state_unchanged(
    setup: Setup,
    path: str,
    node: SingleResource | Object | ObjectInstance,
    code: ResponseCode,
) -> None:
    tree, _, _, _ = setup
    before = tree.read(Path.parse("/26242/0"))
    with pytest.raises(OperationError) as info:
        tree.write(Path.parse(path), node, replace=True)
    assert codes(info) is code
    assert tree.read(Path.parse("/26242/0")) == before


def test_refused_write_hook_rolls_back(
    setup: Setup,
) -> None:
    tree, ports, _, _ = setup

    def refuse(_iid: int, _resource: object) -> None:
        raise OperationError(ResponseCode.SERVICE_UNAVAILABLE, "BTS unreachable")

    ports.set_write_hook(2, refuse)
    payload = ObjectInstance(0, {0: SingleResource(0, "new", S), 2: SingleResource(2, 10, INT)})
    with pytest.raises(OperationError, match="BTS unreachable"):
        tree.write(Path.parse("/26242/0"), payload, replace=False)
    current = tree.read(Path.parse("/26242/0"))
    assert isinstance(current, ObjectInstance)
    assert (current.value(0), current.value(2)) == ("PV", 60)


def test_execute(setup: Setup) -> None:
    tree, _, _, executed = setup
    tree.execute(Path.parse("/26242/0/4"), {0: "now"})
    assert executed == [{0: "now"}]
    for path, code in [("/26242/0/2", ResponseCode.METHOD_NOT_ALLOWED), ("/26242/5/4", ResponseCode.NOT_FOUND)]:
        with pytest.raises(OperationError) as info:
            tree.execute(Path.parse(path), {})
        assert codes(info) is code


def test_create_and_delete(setup: Setup) -> None:
    tree, _, changes, _ = setup
    new_id = tree.create(Path.parse("/26242"), instance_from_model(port_status_model(), None, {0: "Load", 2: 30}))
    assert new_id == 1 and Path.of(26242, 1) in changes
    with pytest.raises(OperationError, match="already exists"):
        tree.create(Path.parse("/26242"), instance_from_model(port_status_model(), 1, {0: "x", 2: 1}))
    with pytest.raises(OperationError, match="mandatory resources missing"):
        tree.create(Path.parse("/26242"), instance_from_model(port_status_model(), 5, {0: "x"}))
    with pytest.raises(OperationError, match="single-instance"):
        tree.create(Path.parse("/3"), ObjectInstance(1, {}))
    tree.delete(Path.parse("/26242/1"))
    assert tree.instance_paths() == [Path.of(3, 0), Path.of(26242, 0)]
    with pytest.raises(OperationError) as info:
        tree.delete(Path.parse("/3/0"))
    assert codes(info) is ResponseCode.METHOD_NOT_ALLOWED
    with pytest.raises(OperationError) as info:
        tree.delete(Path.parse("/26242"))
    assert codes(info) is ResponseCode.METHOD_NOT_ALLOWED


def test_bootstrap_may_create_by_write_and_delete_all(
    setup: Setup,
) -> None:
    tree, _, _, _ = setup
    tree.write(
        Path.parse("/26242/4"), ObjectInstance(4, {1: SingleResource(1, 1.0, F)}), replace=True, caller=BOOTSTRAP
    )
    assert Path.of(26242, 4) in tree.instance_paths()
    tree.delete(Path.parse("/"), caller=BOOTSTRAP)
    assert tree.instance_paths() == [Path.of(3, 0), Path.of(26242)]
