"""The charger's LwM2M objects: averaging windows, calibration, alerts, port switching, live values.

No network here: the objects are read and written through the client's ObjectTree, as the engine
does for a server; time is a manual SimClock so every window and average is computed by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from spmp.charger import PortAlerts, PortKind, SimClock, Site
from spmp.charger.averaging import AveragingWindow
from spmp.charger.device import (
    BatteryInfo,
    ChargerDevice,
    PortInfo,
    PortReading,
    Reading,
    SiteSource,
    reading_from_controller,
)
from spmp.charger.mppt import ChargingAdminState, ChargingOperState
from spmp.client.tree import Caller, ObjectTree
from spmp.lwm2m.node import ObjectInstance, SingleResource
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.path import Path
from spmp.lwm2m.response import OperationError
from spmp.lwm2m.values import ObjectLink

REGISTRY = default_registry()
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
SERVER = Caller(short_server_id=1)


class FakeSource:
    """A measurement source whose values the test sets: a load port and a battery port."""

    def __init__(self) -> None:
        self.values: dict[str, PortReading] = {
            "BATT": PortReading(52.0, 5.0),
            "LOAD1": PortReading(52.0, 1.0, True, PortAlerts()),
        }
        self.switched: list[tuple[str, bool]] = []
        self.now = T0

    @property
    def ports(self) -> Sequence[PortInfo]:
        return (
            PortInfo("BATT", PortKind.BATTERY, "battery"),
            PortInfo("LOAD1", PortKind.LOAD, "BTS", switchable=True),
        )

    @property
    def battery(self) -> BatteryInfo:
        return BatteryInfo(technology=14, type_name="AGM", design_voltage_v=48.0, cells=24, design_capacity_ah=200.0)

    async def refresh(self, now: datetime) -> None:
        self.now = now

    def latest(self) -> Reading:
        return Reading(self.now, dict(self.values), battery_voltage_v=self.values["BATT"].voltage_v, soc=0.5)

    def switch(self, port: str, on: bool) -> None:
        self.switched.append((port, on))
        self.values[port] = replace(
            self.values[port], switch_on=on, current_a=self.values[port].current_a if on else 0.0
        )

    def set_admin_state(self, state: ChargingAdminState) -> None:
        raise ValueError("not supported")


def make(source: object, **options: object) -> tuple[ChargerDevice, ObjectTree, SimClock]:
    start = source.site.now if isinstance(source, SiteSource) else T0
    clock = SimClock(start, manual=True)
    device = ChargerDevice(source, clock, REGISTRY, **options)  # type: ignore[arg-type]
    tree = ObjectTree(REGISTRY)
    for enabler in device.enablers():
        tree.add(enabler)
    return device, tree, clock


def value(tree: ObjectTree, path: str) -> object:
    node = tree.read(Path.parse(path), SERVER)
    assert isinstance(node, SingleResource), node
    return node.value


def run(coro: object) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------- averaging


def test_window_means_are_the_means_of_its_samples_and_close_at_its_end() -> None:
    window = AveragingWindow(60, T0)
    assert window.add(T0, 50.0, 1.0) is None
    assert window.add(T0 + timedelta(seconds=20), 52.0, 2.0) is None
    assert window.add(T0 + timedelta(seconds=40), 54.0, None) is None
    done = window.add(T0 + timedelta(seconds=60), 10.0, 10.0)  # first sample of the next window
    assert done is not None
    assert (done.start, done.end, done.samples) == (T0, T0 + timedelta(seconds=60), 3)
    assert done.voltage_v == pytest.approx(52.0)
    assert done.current_a == pytest.approx(1.5)  # the sample without a current does not count
    # a gap of more than one window: the empty windows are skipped, alignment is kept
    late = window.add(T0 + timedelta(seconds=250), 20.0, 0.0)
    assert late is not None and late.voltage_v == pytest.approx(10.0) and late.end == T0 + timedelta(seconds=120)
    assert window.start == T0 + timedelta(seconds=240)


def test_port_status_averages_over_length_of_device_time() -> None:
    source = FakeSource()
    device, tree, clock = make(source, length_s=60, sample_interval=10, adc_error=0.0)
    changes: list[Path] = []
    tree.listeners.append(changes.append)
    voltages = [50.0, 51.0, 52.0, 53.0, 54.0, 55.0]  # samples at t = 0, 10, ..., 50 s
    currents = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]

    async def body() -> None:
        for v, i in zip(voltages, currents, strict=True):
            source.values["LOAD1"] = PortReading(v, i, True, PortAlerts())
            await device.step(clock.now())
            clock.advance(10)
        assert value(tree, "/26242/1/5518") == T0  # nothing averaged yet: the start
        assert tree.read(Path.parse("/26242/1"), SERVER).resource(1) is None  # type: ignore[union-attr]
        source.values["LOAD1"] = PortReading(99.0, 99.0, True, PortAlerts())
        await device.step(clock.now())  # t = 60 s: closes [0, 60)

    run(body())
    assert value(tree, "/26242/1/1") == pytest.approx(sum(voltages) / 6)  # 52.5 V
    assert value(tree, "/26242/1/2") == pytest.approx(sum(currents) / 6)  # 3.5 A
    assert value(tree, "/26242/1/5518") == T0 + timedelta(seconds=60)
    assert value(tree, "/26242/1/3") == 60
    status_changes = [p for p in changes if p.object_id == 26242 and p.instance_id == 1]
    assert {p.resource_id for p in status_changes} == {1, 2, 5518}  # once, together, at the window's end


def test_writing_length_starts_a_new_window_and_is_checked() -> None:
    source = FakeSource()
    device, tree, clock = make(source, length_s=60, sample_interval=10, adc_error=0.0)

    async def body() -> None:
        await device.step(clock.now())
        clock.advance(30)
        tree.write(
            Path.parse("/26242/1/3"),
            SingleResource(3, 300, REGISTRY.get(26242).resources[3].type),
            replace=True,
            caller=SERVER,
        )  # type: ignore[union-attr]
        for _ in range(30):  # 300 s more, one sample per 10 s
            await device.step(clock.now())
            clock.advance(10)
        await device.step(clock.now())

    run(body())
    assert device.windows[1].length_s == 300
    assert value(tree, "/26242/1/5518") == T0 + timedelta(seconds=30 + 300)
    assert value(tree, "/26242/1/1") == pytest.approx(52.0)
    with pytest.raises(OperationError):
        tree.write(
            Path.parse("/26242/1/3"),
            SingleResource(3, 0, REGISTRY.get(26242).resources[3].type),
            replace=True,
            caller=SERVER,
        )  # type: ignore[union-attr]


def test_run_samples_every_interval_of_the_manual_clock() -> None:
    source = FakeSource()
    device, tree, clock = make(source, length_s=30, sample_interval=5)

    async def body() -> None:
        task = asyncio.ensure_future(device.run())
        await asyncio.sleep(0)
        for _ in range(12):  # 60 s of device time
            clock.advance(5)
            for _ in range(3):
                await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(body())
    assert device.samples == 13  # t = 0, 5, ..., 60
    assert value(tree, "/26242/0/5518") == T0 + timedelta(seconds=60)


# ------------------------------------------------------------------------------------- calibration


def test_calibration_is_a_gain_on_the_raw_reading() -> None:
    source = FakeSource()
    device, tree, _clock = make(source, seed=7)
    run(device.step())
    sensor = device.voltage_sensors[0]
    assert sensor.adc_gain != 1.0  # this unit's converter is off by a little
    assert sensor.raw == pytest.approx(52.0 * sensor.adc_gain)
    # factory calibrated: the value is the true voltage again
    assert value(tree, "/3316/0/5700") == pytest.approx(52.0, abs=1e-3)
    assert value(tree, "/3316/0/5821") == pytest.approx(1 / sensor.adc_gain, rel=1e-5)

    kind = REGISTRY.get(3316).resources[5821].type  # type: ignore[union-attr]
    tree.write(Path.parse("/3316/0/5821"), SingleResource(5821, 1.1, kind), replace=True, caller=SERVER)
    run(device.step())
    assert value(tree, "/3316/0/5700") == pytest.approx(round(sensor.raw * 1.1, 4))
    tree.write(Path.parse("/3317/1/5821"), SingleResource(5821, 2.0, kind), replace=True, caller=SERVER)
    run(device.step())
    assert value(tree, "/3317/1/5700") == pytest.approx(round(1.0 * device.current_sensors[1].adc_gain * 2.0, 4))
    # averages are of calibrated readings too
    assert device.windows[1].samples >= 1
    with pytest.raises(OperationError):
        tree.write(Path.parse("/3316/0/5821"), SingleResource(5821, -1.0, kind), replace=True, caller=SERVER)
    assert value(tree, "/3316/0/5821") == 1.1  # a refused write leaves the old value


def test_min_max_and_their_reset() -> None:
    source = FakeSource()
    device, tree, _clock = make(source, adc_error=0.0)

    async def body() -> None:
        for v in (50.0, 56.0, 48.0, 52.0):
            source.values["BATT"] = PortReading(v, 0.0)
            await device.step()

    run(body())
    assert value(tree, "/3316/0/5601") == 48.0 and value(tree, "/3316/0/5602") == 56.0
    assert value(tree, "/3316/0/5603") == 0.0 and value(tree, "/3316/0/5701") == "V"
    tree.execute(Path.parse("/3316/0/5605"), {}, SERVER)
    assert value(tree, "/3316/0/5601") == 52.0 and value(tree, "/3316/0/5602") == 52.0


# ------------------------------------------------------------------------------------------ alerts


def test_alerts_follow_the_port_protections() -> None:
    source = FakeSource()
    device, tree, _clock = make(source)
    changes: list[Path] = []
    tree.listeners.append(changes.append)
    run(device.step())
    assert all(value(tree, f"/26243/1/{rid}") is False for rid in range(13))
    assert value(tree, "/26242/1/4") == ObjectLink(26243, 1)
    source.values["LOAD1"] = PortReading(0.0, 0.0, True, PortAlerts(short_circuit=True, low_voltage_disconnect=True))
    changes.clear()
    run(device.step())
    assert value(tree, "/26243/1/0") is True  # short circuit
    assert value(tree, "/26243/1/3") is True  # LVD
    assert value(tree, "/26243/1/1") is False
    assert Path.parse("/26243/1/0") in changes and Path.parse("/26243/1/3") in changes  # observers are told


def test_alerts_of_a_real_site_low_voltage_disconnect() -> None:
    site = Site.default_48v(0, 0, 1, start=datetime(2024, 3, 20, 0, 0, tzinfo=UTC))
    port = site.ports["LOAD1"]
    port.limits = replace(port.limits, lvd_v=60.0, lvr_v=62.0)  # the bank (~50 V) is "too low" for it
    device, tree, clock = make(SiteSource(site), sample_interval=60)

    async def body() -> None:
        for _ in range(3):
            clock.advance(60)
            await device.step()

    run(body())
    load1 = device.port_index("LOAD1")
    assert value(tree, f"/26243/{load1}/3") is True  # low-voltage disconnect
    assert value(tree, f"/3317/{load1}/5700") == 0.0
    assert isinstance(value(tree, f"/26243/{load1}/5518"), datetime)


# ------------------------------------------------------------------------------- ports and switching


def test_digital_output_switches_the_port_for_real() -> None:
    site = Site.default_48v(0, 0, 3, start=datetime(2024, 3, 20, 12, tzinfo=UTC))
    device, tree, clock = make(SiteSource(site), sample_interval=10)
    clock.advance(60)
    run(device.step())
    load1 = device.port_index("LOAD1")
    assert value(tree, f"/26241/{load1}/1") == ObjectLink(3201, load1)
    assert value(tree, f"/3317/{load1}/5700") > 1.0  # type: ignore[operator]
    kind = REGISTRY.get(3201).resources[5550].type  # type: ignore[union-attr]
    tree.write(Path.parse(f"/3201/{load1}/5550"), SingleResource(5550, False, kind), replace=True, caller=SERVER)
    assert site.ports["LOAD1"].switch_on is False
    assert value(tree, f"/3317/{load1}/5700") == 0.0  # at once
    clock.advance(60)
    run(device.step())
    assert value(tree, f"/3317/{load1}/5700") == 0.0  # and after the next simulation step
    assert site.snapshot().port("LOAD1").current_a == 0.0
    tree.write(Path.parse(f"/3201/{load1}/5550"), SingleResource(5550, True, kind), replace=True, caller=SERVER)
    clock.advance(60)
    run(device.step())
    assert value(tree, f"/3317/{load1}/5700") > 1.0  # type: ignore[operator]
    battery = device.port_index("BATT")
    assert value(tree, f"/26241/{battery}/1") == ObjectLink(65535, 65535)  # the battery has no switch
    assert battery not in tree.enabler(3201).instance_ids()


def test_objects_of_a_simulated_site() -> None:
    site = Site.default_48v(10, 20, 5, start=datetime(2024, 3, 20, 12, tzinfo=UTC))
    device, tree, clock = make(SiteSource(site), serial="site-5")
    run(device.step())
    assert tree.object_ids() == [3, 3201, 3303, 3316, 3317, 3411, 26241, 26242, 26243, 26246]
    names = [value(tree, f"/26241/{i}/0") for i in tree.enabler(26241).instance_ids()]
    assert names == ["PV", "BATT", "LOAD1", "LOAD2"]
    assert value(tree, "/26242/2/0") == "BTS"
    battery = tree.read(Path.parse("/26246/0"), SERVER)
    assert isinstance(battery, ObjectInstance)
    assert battery.value(4) == 14 and battery.value(16) == pytest.approx(site.battery.voltage_v, rel=0.03)
    assert battery.value(26) == round(site.battery.soc * 100)
    assert value(tree, "/3411/0/1") == round(site.battery.soc * 100)
    assert value(tree, "/3/0/2") == "site-5"
    assert value(tree, "/3/0/9") == round(site.battery.soc * 100)
    assert value(tree, "/3/0/13") == clock.now().replace(microsecond=0)  # the device's (simulated) clock
    assert tree.read(Path.parse("/3/0/6"), SERVER).instances == {0: 7, 1: 2}  # type: ignore[union-attr]
    assert value(tree, "/3303/0/5701") == "Cel"
    kind = REGISTRY.get(26246).resources[14].type  # type: ignore[union-attr]
    tree.write(Path.parse("/26246/0/14"), SingleResource(14, 3, kind), replace=True, caller=SERVER)
    assert site.charger.admin_state is ChargingAdminState.DO_NOT_CHARGE


def test_modbus_reading_fills_only_what_the_controller_reports() -> None:
    from spmp.charger.modbus.source import ControllerReading, Quantity

    controller = ControllerReading(
        T0,
        "127.0.0.1:502",
        {
            "battery_voltage": Quantity(52.5, "V", "adc_vb_f_med"),
            "battery_current": Quantity(-3.0, "A", "adc_ib_f_shadow"),
            "array_voltage": Quantity(0.5, "V", "adc_va_f"),
        },
        "NIGHT",
    )
    reading = reading_from_controller(controller, T0)
    assert reading.ports["BATT"].voltage_v == 52.5 and reading.ports["PV"].current_a is None
    assert reading.oper_state is ChargingOperState.DISCHARGING and reading.soc is None

    class Static(FakeSource):
        @property
        def ports(self) -> Sequence[PortInfo]:
            return (PortInfo("PV", PortKind.PV, "PV array"), PortInfo("BATT", PortKind.BATTERY, "battery"))

        def latest(self) -> Reading:
            return reading

    device, tree, _clock = make(Static(), adc_error=0.0)
    run(device.step())
    assert value(tree, "/3316/1/5700") == 52.5
    pv_current = tree.read(Path.parse("/3317/0"), SERVER)
    assert isinstance(pv_current, ObjectInstance) and pv_current.resource(5700) is None  # absent, not made up
    alerts = tree.read(Path.parse("/26243/1"), SERVER)
    assert isinstance(alerts, ObjectInstance) and not alerts.resources
    assert tree.read(Path.parse("/3411/0"), SERVER).resource(1) is None  # type: ignore[union-attr]
    assert value(tree, "/26246/0/16") == 52.5 and value(tree, "/26246/0/13") == 5
