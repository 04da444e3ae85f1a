"""The charger's NETCONF side: mapping files, and the Smart Load (BTS) bridge against a real BTS over SSH.

The BTS is a real :class:`BtsNetconfServer` on 127.0.0.1 (ephemeral port); the charger side is the
real ncclient-based client. ncclient's TICK is lowered by the client itself (see client.py).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Iterator
from decimal import Decimal
from pathlib import Path as FilePath
from typing import Any

import pytest
from lxml import etree

from spmp.bts import BtsDevice, BtsNetconfServer, load_or_create_host_key
from spmp.charger.netconf.bridge import NetconfTargetWriter, SmartLoadBridge
from spmp.charger.netconf.client import NetconfClient, NetconfRpcError, NetconfUnavailableError
from spmp.charger.netconf.mapping import MappingError, MappingValueError, load_builtin_mapping, parse_mapping
from spmp.client.tree import Caller, ObjectTree
from spmp.lwm2m.model import ResourceType
from spmp.lwm2m.node import ObjectInstance, SingleResource
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.path import Path
from spmp.lwm2m.response import OperationError, ResponseCode
from spmp.smartload.executor import Backoff
from spmp.smartload.objects import install_smart_load
from spmp.smartload.rules import EngineConfig, rule_resources

BTS = "urn:spmp:bts"
USER, PASSWORD = "charger", "night-shift"


# ------------------------------------------------------------------------------------------- mapping
def _data(device: BtsDevice) -> etree._Element:
    data = device.running()
    data[0].append(device.state_xml())
    return data


def test_builtin_mapping_reads_the_bts() -> None:
    mapping = load_builtin_mapping()
    device = BtsDevice()
    values = mapping.read_values(_data(device), 0)
    assert values[11] == 33.0 and values[1] is True and values[2] == 10.0 and values[5828] == 100
    assert values[3] == 64 and isinstance(values[3], int)
    state = mapping.read_state(_data(device))
    assert state["power-draw-watts"] == pytest.approx(38.12) and state["on-air"] is True


def test_builtin_mapping_builds_one_edit() -> None:
    mapping = load_builtin_mapping()
    device = BtsDevice()
    config = mapping.edit({11: 30.9, 1: False, 9: True}, 0, device.running())
    device.edit(config)
    c = device.config
    # RF power rounds DOWN to the 1 dB step on every chain; the switchable chain is chain 1.
    assert [ch.rf_power_output_dbm for ch in c.chains] == [Decimal("30.0"), Decimal("30.0")]
    assert [ch.enabled for ch in c.chains] == [True, False]
    assert c.emergency_calls_only is True
    # Above the BTS's range: clamped to 46 dBm.
    device.edit(mapping.edit({11: 50.0}, 0, device.running()))
    assert device.config.chains[0].rf_power_output_dbm == Decimal("46.0")


def test_absent_leaves_take_the_mapping_default() -> None:
    mapping = load_builtin_mapping()
    data = etree.fromstring(f'<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><bts xmlns="{BTS}"/></data>')
    values = mapping.read_values(data, 0)
    assert values[0] is True and values[12] == 3600
    assert 1 not in values and 11 not in values  # no chain entry: no value
    with pytest.raises(MappingValueError, match="no transceiver-chain entry"):
        mapping.edit({11: 30.0}, 0, data)


OTHER_VENDOR = """
format = 1
name = "acme-enodeb"
instances = [0, 1]
namespace = "urn:acme:enb"
[namespaces]
pw = "urn:acme:power"

[[resource]]
id = 1
path = "enb/carrier[index=$instance]/admin-state"
type = "enumeration"
enum = { unlocked = true, locked = false }

[[resource]]
id = 11
path = "enb/carrier[index=$instance]/pw:tx-power-mw"
type = "decimal64"
fraction-digits = 0
scale = 1
choices = [100, 1000, 2000]

[[resource]]
id = 10
path = "enb/radio-active"
type = "boolean"
invert = true

[[state]]
name = "power-draw-watts"
path = "enb/pw:input-power"
type = "decimal64"
fraction-digits = 1
"""


def test_another_vendor_is_a_new_mapping() -> None:
    mapping = parse_mapping(OTHER_VENDOR, "acme.toml")
    data = etree.fromstring(
        '<data><enb xmlns="urn:acme:enb" xmlns:pw="urn:acme:power">'
        "<carrier><index>0</index><admin-state>unlocked</admin-state><pw:tx-power-mw>1000</pw:tx-power-mw></carrier>"
        "<carrier><index>1</index><admin-state>locked</admin-state></carrier>"
        "<radio-active>true</radio-active><pw:input-power>41.5</pw:input-power></enb></data>"
    )
    assert mapping.read_values(data, 0) == {1: True, 11: 1000.0, 10: False}
    assert mapping.read_values(data, 1) == {1: False, 10: False}
    assert mapping.read_state(data) == {"power-draw-watts": 41.5}
    config = mapping.edit({1: False, 11: 1400.0, 10: True}, 1, data)
    text = etree.tostring(config).decode()
    assert "<index>1</index><admin-state>locked</admin-state>" in text
    assert '<tx-power-mw xmlns="urn:acme:power">1000</tx-power-mw>' in text  # the nearest choice
    assert "<radio-active>false</radio-active>" in text  # inverted


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (("format = 1", "format = 2"), "format", "must be 1"),
        (('name = "acme-enodeb"', 'name = "x"\nbogus = 1'), "bogus", "unknown key"),
        (("id = 10", "id = 99"), "resource[2].id", "has no resource 99"),
        (("id = 10", 'id = 10\nname = "Wake"'), "resource[2].name", "is 'Sleep'"),
        (('type = "boolean"', 'type = "integer"'), "resource[2].type", "cannot carry 'Sleep'"),
        (("fraction-digits = 0\nscale", "scale"), "resource[1].fraction-digits", "required"),
        (("enb/radio-active", "enb/radio active"), "resource[2].path", "not a node name"),
        (("enb/radio-active", "x:enb/radio-active"), "resource[2].path", "prefix 'x'"),
        (("enb/radio-active", "other/radio-active"), "resource", "same top container"),
        (("enb/radio-active", "radio-active"), "resource[2].path", "at least container/leaf"),
        (("invert = true", "invert = true\nstep = 1"), "resource[2].step", "only for integer"),
        (("id = 10", "id = 1"), "resource[2].id", "mapped twice"),
        (('name = "power-draw-watts"', 'name = "volts"'), "state[0].name", "must be one of"),
        (("choices = [100, 1000, 2000]", "choices = [100]\nstep = 1"), "resource[1].choices", "not both"),
        (('"urn:acme:enb"', "3"), "namespace", "non-empty string"),
        (("[[resource]]\nid = 1", '[[resource]]\nid = "one"'), "resource[0].id", "must be an integer"),
        (("format = 1", "format = = 1"), "", "not valid TOML"),
    ],
)
def test_mapping_validation_names_file_and_key(change: tuple[str, str], key: str, message: str) -> None:
    old, new = change
    assert old in OTHER_VENDOR
    with pytest.raises(MappingError) as caught:
        parse_mapping(OTHER_VENDOR.replace(old, new, 1), "acme.toml")
    assert str(caught.value).startswith("acme.toml: ")
    assert caught.value.key == key
    assert message in str(caught.value)


def test_mapping_conversion_refuses_what_it_cannot_express() -> None:
    mapping = parse_mapping(
        'format = 1\nname = "n"\nnamespace = "urn:x"\n[[resource]]\nid = 3\npath = "x/limit"\n'
        'type = "integer"\nmin = 1\nmax = 10\n',
        "x.toml",
    )
    with pytest.raises(MappingValueError, match="above the maximum"):
        mapping.edit({3: 11}, 0, None)
    with pytest.raises(MappingValueError, match="not a finite number"):
        mapping.edit({3: True}, 0, None)


# ------------------------------------------------------------------------------- bridge over NETCONF
class Bts:
    """A BTS data dir with a running NETCONF server; ``stop``/``start`` keep the port."""

    def __init__(self, data: FilePath) -> None:
        self.data = data
        self.port = 0
        self.device = BtsDevice(data)
        self.server: BtsNetconfServer | None = None
        self.start()

    def start(self) -> None:
        self.server = BtsNetconfServer(
            self.device, host_key=load_or_create_host_key(self.data), port=self.port, users={USER: PASSWORD}
        )
        self.server.start()
        self.port = self.server.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


@pytest.fixture
def bts(tmp_path: FilePath) -> Iterator[Bts]:
    b = Bts(tmp_path / "bts")
    yield b
    b.stop()


@pytest.fixture
def bridge(bts: Bts) -> Iterator[SmartLoadBridge]:
    client = NetconfClient(
        "127.0.0.1", bts.port, username=USER, password=PASSWORD, timeout=5, backoff_initial=0.05, backoff_max=0.2
    )
    b = SmartLoadBridge(client, load_builtin_mapping(), refresh_interval=0.1)
    yield b
    client.close_sync()


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop (bounded: a broken BTS fails the test, not hangs it)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 60))

    return wrapper


def _tree(bridge: SmartLoadBridge) -> ObjectTree:
    tree = ObjectTree(default_registry())
    tree.add(bridge)
    return tree


@run_async
async def test_bridge_reads_the_bts_state_into_the_object(bts: Bts, bridge: SmartLoadBridge) -> None:
    assert await bridge.refresh()
    tree = _tree(bridge)
    node = tree.read(Path.of(26244, 0))
    assert isinstance(node, ObjectInstance)
    assert node.value(11) == 33.0 and node.value(1) is True and node.value(9) is False
    assert bridge.power_draw_watts == pytest.approx(bts.device.power_draw_watts, abs=0.01)
    assert bridge.on_air is True
    assert bridge.client.connects == 1


@run_async
async def test_lwm2m_write_becomes_edit_config(bts: Bts, bridge: SmartLoadBridge) -> None:
    assert await bridge.refresh()
    tree = _tree(bridge)
    seen: list[Path] = []
    tree.listeners.append(seen.append)
    external: list[tuple[Path, object]] = []
    bridge.on_external_write = lambda path, value: external.append((path, value))
    before = bts.device.power_draw_watts
    # One Write of two resources: one edit, both applied.
    tree.write(
        Path.of(26244, 0),
        ObjectInstance(
            0,
            {
                11: SingleResource(11, 27.5, ResourceType.FLOAT),
                5: SingleResource(5, False, ResourceType.BOOLEAN),
            },
        ),
        replace=False,
        caller=Caller(short_server_id=101),
    )
    config = bts.device.config
    assert [c.rf_power_output_dbm for c in config.chains] == [Decimal("27.0"), Decimal("27.0")]
    assert config.lte_data_enabled is False
    assert bridge.edits == 1
    assert bridge.value(0, 11) == 27.0  # re-read after the edit: what the BTS applied
    assert bridge.power_draw_watts == pytest.approx(bts.device.power_draw_watts, abs=0.01)
    assert bts.device.power_draw_watts < before
    assert Path.of(26244, 0, 11) in seen and Path.of(26244, 0, 5) in seen
    assert (Path.of(26244, 0, 11), 27.0) in external


@run_async
async def test_bts_refusal_is_4_00_with_its_message_and_nothing_changes(bts: Bts, bridge: SmartLoadBridge) -> None:
    assert await bridge.refresh()
    tree = _tree(bridge)
    before = bts.device.config
    with pytest.raises(OperationError) as caught:
        tree.write(
            Path.of(26244, 0),
            ObjectInstance(
                0,
                {
                    10: SingleResource(10, True, ResourceType.BOOLEAN),  # valid, but must not land alone
                    2: SingleResource(2, 7.0, ResourceType.FLOAT),  # this BTS has no 7 MHz carrier
                },
            ),
            replace=False,
        )
    assert caught.value.code is ResponseCode.BAD_REQUEST
    assert "channel-bandwidth: 7.0 is out of range" in caught.value.reason
    assert bts.device.config == before  # all or nothing
    assert bridge.value(0, 10) is False and bridge.value(0, 2) == 10.0
    assert not bridge.unreachable


@run_async
async def test_bts_refuses_with_typed_rpc_error(bts: Bts) -> None:
    client = NetconfClient("127.0.0.1", bts.port, username=USER, password=PASSWORD)
    try:
        config = etree.fromstring(
            f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><bts xmlns="{BTS}"><duty-cycle>101'
            "</duty-cycle></bts></config>"
        )
        with pytest.raises(NetconfRpcError) as caught:
            await client.edit_config(config)
        assert caught.value.tag == "invalid-value" and "duty-cycle" in caught.value.message
        assert caught.value.error_type == "application"
    finally:
        await client.close()


@run_async
async def test_unreachable_bts_is_5_03_with_backoff(tmp_path: FilePath) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = NetconfClient("127.0.0.1", port, username=USER, password=PASSWORD, backoff_initial=60)
    faults: list[bool] = []
    bridge = SmartLoadBridge(client, load_builtin_mapping(), on_fault=faults.append)
    try:
        assert not await bridge.refresh()
        assert faults == [True] and bridge.unreachable
        started = time.monotonic()
        with pytest.raises(NetconfUnavailableError, match="next attempt in"):
            client.ensure_connected()  # within the backoff: no new attempt, at once
        assert time.monotonic() - started < 0.5
        with pytest.raises(OperationError) as caught:
            bridge.write(0, {10: SingleResource(10, True, ResourceType.BOOLEAN)})
        assert caught.value.code is ResponseCode.SERVICE_UNAVAILABLE
    finally:
        await bridge.close()


@run_async
async def test_bts_down_write_fails_alert_raised_and_rule_applied_when_back(bts: Bts, bridge: SmartLoadBridge) -> None:
    """BTS down → the LwM2M write is 5.03, the Smart Load Fault alert is raised, the rules engine's write
    is retried with backoff and lands once the BTS is back; nothing half-applied meanwhile."""
    assert await bridge.refresh()
    tree = _tree(bridge)
    t = [0.0]
    alerts: list[bool] = []
    smart = install_smart_load(
        tree,
        remote_writers={26244: NetconfTargetWriter(bridge)},
        config=EngineConfig(confirm_seconds=0, dwell_seconds=0),
        clock=lambda: t[0],
        backoff=Backoff(initial=0.05, maximum=0.2),
        alert_after=2,
        on_alert=alerts.append,
    )
    bridge.on_external_write = smart.executor.external_write
    tree.create(
        Path.of(26245),
        ObjectInstance(
            0,
            {
                k: SingleResource(k, v, _rtype(v))
                for k, v in rule_resources(48.0, "/26244/0/10", "1", "Boolean").items()
            },
        ),
    )
    runner = asyncio.get_running_loop().create_task(smart.executor.run())
    refresher = asyncio.get_running_loop().create_task(bridge.run())
    try:
        bts.stop()
        await _until(lambda: bridge.unreachable, 10)  # the refresher finds it gone
        with pytest.raises(OperationError) as caught:
            tree.write(Path.of(26244, 0, 4), SingleResource(4, False, ResourceType.BOOLEAN), replace=False)
        assert caught.value.code is ResponseCode.SERVICE_UNAVAILABLE
        # The battery falls: the rule fires, its write fails and is retried; the alert goes up.
        smart.executor.sample(47.0)
        t[0] += 1
        smart.executor.sample(47.0)

        def tick() -> None:  # the executor's clock: 50 ms a poll
            t[0] += 0.05
            smart.executor.kick()

        await _until(lambda: smart.executor.alert, 5, tick)
        assert alerts[-1] is True
        rules = tree.read(Path.of(26245, 0))
        assert isinstance(rules, ObjectInstance) and rules.value(9) is True  # Fault
        assert bts.device.config.sleep is False and bts.device.config.backhaul_enabled is True
        bts.start()  # back on the same port
        await _until(lambda: bts.device.config.sleep is True, 10, tick)
        await _until(lambda: not smart.executor.alert and not bridge.unreachable, 10, tick)
        assert alerts[-1] is False
        assert bts.device.config.backhaul_enabled is True  # the refused operator write was not replayed
        assert bridge.value(0, 10) is True
    finally:
        for task in (runner, refresher):
            task.cancel()
        await asyncio.gather(runner, refresher, return_exceptions=True)


def _rtype(value: object) -> ResourceType:
    if isinstance(value, bool):
        return ResourceType.BOOLEAN
    if isinstance(value, float):
        return ResourceType.FLOAT
    if isinstance(value, int):
        return ResourceType.INTEGER
    if isinstance(value, bytes):
        return ResourceType.OPAQUE
    return ResourceType.STRING


async def _until(condition: Callable[[], bool], timeout: float, tick: Callable[[], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        if tick is not None:
            tick()
        await asyncio.sleep(0.02)
