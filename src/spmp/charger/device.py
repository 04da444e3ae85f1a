"""The SPMP charger as an LwM2M device: its objects, built from a measurement source.

A :class:`MeasurementSource` says what the charger measures: the simulated :class:`SiteSource`
(``spmp.charger.site.Site``) or :class:`ModbusMeasurementSource` (a real controller read over Modbus
TCP, which fills only what the controller reports; the rest stays absent). :class:`ChargerDevice`
turns a source into the objects of docs/charger.md ("The charger as an LwM2M device"):

=========================  ==================================================================
Voltage 3316 / Current     one instance per port (instance id = port index): calibrated value,
3317                       units, min/max measured and range, reset (5605), calibration (5821)
Port Status 26242          one per port: name, averages over Length seconds, Length, Timestamp
Alerts 26243               one per port: the port's protection flags
Port 26241                 one per port: links to Control, Status, Voltage, Current
Digital Output 3201        one per switchable port, same instance id: state switches the port
Temperature 3303           0 battery, 1 heat sink, 2 ambient (what the source knows)
Battery 3411, SPMP         instance 0: level, voltage, capacity, cycles; RFC 7577 information
Battery 26246
Device 3                   identity, power sources (solar, battery), battery level, time
=========================  ==================================================================

Time is the device's: a :class:`~spmp.charger.clock.SimClock` (accelerated for simulations, speed 1
for a real controller). :meth:`ChargerDevice.run` samples the source every ``sample_interval``
seconds of device time, feeds the averaging windows and updates the live values; Port Status
averages and Timestamp change once per window, so an observer of Port Status is notified once per
Length seconds of device time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Protocol

from spmp.charger.averaging import AveragingWindow, WindowResult
from spmp.charger.clock import SimClock
from spmp.charger.mppt import ChargingAdminState, ChargingOperState
from spmp.charger.objects import LiveObject, Sensor
from spmp.charger.ports import PortAlerts, PortKind
from spmp.charger.site import Site
from spmp.client.objects import ObjectEnabler
from spmp.lwm2m.model import ModelLookup
from spmp.lwm2m.node import Resource, SingleResource, instance_from_model
from spmp.lwm2m.objects import ids
from spmp.lwm2m.response import OperationError, ResponseCode
from spmp.lwm2m.values import ObjectLink, Value

if TYPE_CHECKING:
    from spmp.charger.modbus.source import ControllerReading, ModbusSource

__all__ = [
    "DEFAULT_LENGTH_S",
    "DEFAULT_SAMPLE_INTERVAL_S",
    "BatteryInfo",
    "ChargerDevice",
    "MeasurementSource",
    "ModbusMeasurementSource",
    "PortInfo",
    "PortReading",
    "Reading",
    "SiteSource",
]

log = logging.getLogger(__name__)

DEFAULT_LENGTH_S = 60
"""Port Status Length until a server writes another."""
DEFAULT_SAMPLE_INTERVAL_S = 5.0
"""Seconds of device time between two samples."""
NULL_LINK = ObjectLink(65535, 65535)
ALERT_FIELDS = PortAlerts.__dataclass_fields__
"""Alerts resources 0..12, in PortAlerts field order."""
LOW_BATTERY_PERCENT = 30


# ------------------------------------------------------------------------------------------ readings


@dataclass(frozen=True, slots=True)
class PortInfo:
    """A port as the source describes it: name on the charger, kind, label, whether it can be switched."""

    name: str
    kind: PortKind
    label: str
    switchable: bool = False
    voltage_range: tuple[float, float] = (0.0, 200.0)
    current_range: tuple[float, float] = (-100.0, 100.0)


@dataclass(frozen=True, slots=True)
class BatteryInfo:
    """Design data of the battery bank (RFC 7577 batteryTable identity and design columns)."""

    technology: int = 1  # IANA battery technology, 1 unknown
    type_name: str = ""
    design_voltage_v: float | None = None
    cells: int | None = None
    design_capacity_ah: float | None = None
    identifier: str = ""


@dataclass(frozen=True, slots=True)
class PortReading:
    voltage_v: float | None = None
    current_a: float | None = None  # positive out of the charger into the port
    switch_on: bool | None = None
    alerts: PortAlerts | None = None
    alerts_changed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything measured at one instant; None is "this source does not know"."""

    time: datetime
    ports: Mapping[str, PortReading]
    battery_voltage_v: float | None = None
    battery_current_a: float | None = None  # positive charging
    battery_temperature_c: float | None = None
    heatsink_c: float | None = None
    ambient_c: float | None = None
    soc: float | None = None  # 0..1
    charge_ah: float | None = None
    capacity_ah: float | None = None
    cycle_count: int | None = None
    last_cycle_time: datetime | None = None
    oper_state: ChargingOperState | None = None
    admin_state: ChargingAdminState | None = None
    charge_state: str | None = None
    pv_power_w: float | None = None
    load_power_w: float | None = None


class MeasurementSource(Protocol):
    """What the charger reads its measurements from."""

    @property
    def ports(self) -> Sequence[PortInfo]: ...

    @property
    def battery(self) -> BatteryInfo: ...

    async def refresh(self, now: datetime) -> None:
        """Bring the measurements up to device time ``now`` (step the simulation, poll the controller)."""

    def latest(self) -> Reading | None:
        """The most recent measurements (None before the first)."""

    def switch(self, port: str, on: bool) -> None:
        """Switch a port (Digital Output State); raises ValueError if it cannot be switched."""

    def set_admin_state(self, state: ChargingAdminState) -> None:
        """RFC 7577 Charging Administrative State; raises ValueError if not supported."""


class SiteSource:
    """The simulated site as a measurement source."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._ports = tuple(
            PortInfo(
                port.name,
                port.kind,
                _label(port.kind, site.loads[name].name if name in site.loads else name),
                port.switchable,
            )
            for name, port in site.ports.items()
        )
        b = site.battery
        self._battery = BatteryInfo(
            technology=b.params.iana_technology,
            type_name=b.params.name,
            design_voltage_v=round(b.params.nominal_cell_v * b.cells, 1),
            cells=b.cells,
            design_capacity_ah=b.design_capacity_ah,
            identifier=f"SIM-{b.chemistry.value.upper()}-{b.cells}S",
        )

    @property
    def ports(self) -> Sequence[PortInfo]:
        return self._ports

    @property
    def battery(self) -> BatteryInfo:
        return self._battery

    async def refresh(self, now: datetime) -> None:
        if now > self.site.now:
            self.site.run_until(now)

    def latest(self) -> Reading:
        s = self.site.snapshot()
        ports: dict[str, PortReading] = {}
        for p in s.ports:
            port = self.site.ports[p.name]
            # A switch opens at once: an output switched off reads 0 before the next simulation step.
            off = not port.output_on and p.kind is PortKind.LOAD
            ports[p.name] = PortReading(
                0.0 if off else p.voltage_v,
                0.0 if off else p.current_a,
                port.switch_on,
                port.alerts,
                port.alerts_changed_at,
            )
        return Reading(
            time=s.time,
            ports=ports,
            battery_voltage_v=s.battery_voltage_v,
            battery_current_a=s.battery_current_a,
            battery_temperature_c=s.battery_temperature_c,
            heatsink_c=s.heatsink_c,
            ambient_c=s.ambient_c,
            soc=s.soc,
            charge_ah=s.charge_ah,
            capacity_ah=s.capacity_ah,
            cycle_count=s.cycle_count,
            last_cycle_time=s.last_cycle_time,
            oper_state=s.oper_state,
            admin_state=s.admin_state,
            charge_state=s.charge_state.name,
            pv_power_w=s.pv_power_w,
            load_power_w=s.load_power_w,
        )

    def switch(self, port: str, on: bool) -> None:
        self.site.ports[port].set_switch(on)

    def set_admin_state(self, state: ChargingAdminState) -> None:
        self.site.charger.admin_state = state


def _label(kind: PortKind, load_name: str) -> str:
    if kind is PortKind.PV:
        return "PV array"
    if kind is PortKind.BATTERY:
        return "battery"
    return load_name


class ModbusMeasurementSource:
    """A real charge controller read over Modbus TCP (``spmp.charger.modbus``).

    A TriStar-style MPPT controller reports its array and battery side, temperatures, charge stage
    and power; it has no switchable load outputs and no state of charge, so those stay absent.
    ``poll_interval`` (wall seconds) bounds how often the controller is read.
    """

    PORTS = (
        PortInfo("PV", PortKind.PV, "PV array"),
        PortInfo("BATT", PortKind.BATTERY, "battery"),
    )

    def __init__(self, source: ModbusSource, *, poll_interval: float = 1.0) -> None:
        self.source = source
        self.poll_interval = poll_interval
        self._reading: Reading | None = None
        self._last_poll: float | None = None
        self.errors = 0

    @property
    def ports(self) -> Sequence[PortInfo]:
        return self.PORTS

    @property
    def battery(self) -> BatteryInfo:
        return BatteryInfo()

    async def refresh(self, now: datetime) -> None:
        from spmp.charger.modbus.source import ModbusSourceError  # noqa: PLC0415 - pymodbus only when used

        loop_time = asyncio.get_running_loop().time()
        if self._last_poll is not None and loop_time - self._last_poll < self.poll_interval:
            return
        self._last_poll = loop_time
        try:
            controller = await self.source.read()
        except ModbusSourceError as exc:
            self.errors += 1
            log.warning("modbus read failed", extra={"error": str(exc)})
            self._reading = Reading(now, {}) if self._reading is None else replace(self._reading, time=now)
            return
        for error in controller.errors:
            log.info("modbus quantity missing", extra={"error": str(error)})
        self._reading = reading_from_controller(controller, now)

    def latest(self) -> Reading | None:
        return self._reading

    def switch(self, port: str, on: bool) -> None:
        raise ValueError(f"port {port} of a Modbus controller cannot be switched from here")

    def set_admin_state(self, state: ChargingAdminState) -> None:
        raise ValueError("this controller's charging cannot be commanded over its register map")


def reading_from_controller(controller: ControllerReading, now: datetime) -> Reading:
    """Map a Modbus controller reading onto the charger's quantities (absent stays absent)."""
    v = controller.value
    array_a = v("array_current")
    battery_a = v("battery_current")
    stage = controller.charge_state
    oper: ChargingOperState | None = None
    if battery_a is not None:
        if stage == "FLOAT":
            oper = ChargingOperState.MAINTAINING_CHARGE
        elif battery_a > 0.05:
            oper = ChargingOperState.CHARGING
        elif battery_a < -0.05:
            oper = ChargingOperState.DISCHARGING
        else:
            oper = ChargingOperState.NO_CHARGING
    return Reading(
        time=now,
        ports={
            "PV": PortReading(v("array_voltage"), None if array_a is None else -array_a),
            "BATT": PortReading(v("battery_voltage"), battery_a),
        },
        battery_voltage_v=v("battery_voltage"),
        battery_current_a=battery_a,
        battery_temperature_c=v("battery_temperature"),
        heatsink_c=v("heatsink_temperature"),
        oper_state=oper,
        charge_state=stage,
        pv_power_w=v("input_power"),
    )


# ---------------------------------------------------------------------------------------- the device


def _adc_gain(rng: random.Random, error: float) -> float:
    """A unit's converter gain: 1 ± ``error`` (2 % by default, an uncalibrated ADC front end)."""
    return round(1.0 + rng.uniform(-error, error), 4) if error else 1.0


class ChargerDevice:
    """The LwM2M objects of one charger over a measurement source; see the module docstring.

    ``seed`` makes the unit's ADC gain errors (and so its factory calibration) reproducible;
    ``factory_calibrated=False`` leaves every calibration at 1.0 (a unit whose calibration was lost);
    ``adc_error`` is the largest simulated converter gain error (0: exact sensors).
    """

    def __init__(
        self,
        source: MeasurementSource,
        clock: SimClock,
        models: ModelLookup,
        *,
        serial: str = "0000",
        length_s: int = DEFAULT_LENGTH_S,
        sample_interval: float = DEFAULT_SAMPLE_INTERVAL_S,
        seed: int = 0,
        factory_calibrated: bool = True,
        adc_error: float = 0.02,
        min_wall_tick: float = 0.02,
    ) -> None:
        if sample_interval <= 0:
            raise ValueError("sample_interval must be positive")
        self.source = source
        self.clock = clock
        self.models = models
        self.serial = serial
        self.sample_interval = sample_interval
        self.min_wall_tick = min_wall_tick
        self.ports = list(source.ports)
        self.samples = 0
        self.windows_closed = 0
        self.sample_listeners: list[Callable[[Reading], None]] = []
        """Told every sample's reading (the smart-load rules take the battery voltage from it)."""
        self._reading: Reading | None = None
        self._last_sample: datetime | None = None
        start = clock.now()
        rng = random.Random(f"spmp-charger-adc:{seed}")
        self.voltage_sensors: list[Sensor] = []
        self.current_sensors: list[Sensor] = []
        for port in self.ports:
            gv, gi = _adc_gain(rng, adc_error), _adc_gain(rng, adc_error)
            self.voltage_sensors.append(
                Sensor(
                    "V",
                    *port.voltage_range,
                    f"{port.name} voltage",
                    calibration=round(1 / gv, 6) if factory_calibrated else 1.0,
                    adc_gain=gv,
                )
            )
            self.current_sensors.append(
                Sensor(
                    "A",
                    *port.current_range,
                    f"{port.name} current",
                    calibration=round(1 / gi, 6) if factory_calibrated else 1.0,
                    adc_gain=gi,
                )
            )
        self.temperature_sensors = [
            Sensor("Cel", -40.0, 85.0, "battery", calibration=None),
            Sensor("Cel", -40.0, 125.0, "heat sink", calibration=None),
            Sensor("Cel", -40.0, 85.0, "ambient", calibration=None),
        ]
        self.windows = [AveragingWindow(length_s, start) for _ in self.ports]
        self.results: list[WindowResult | None] = [None for _ in self.ports]
        self.objects: dict[int, LiveObject] = {}
        self._build(start, length_s)

    # -- objects ----------------------------------------------------------------------------------

    def _object(self, object_id: int) -> LiveObject:
        model = self.models.object_model(object_id)
        if model is None:
            raise ValueError(f"object {object_id} is not in the model registry")
        found = LiveObject(model)
        self.objects[object_id] = found
        return found

    def enablers(self) -> list[ObjectEnabler]:
        """Every object of the charger (add the Security and Server objects to make a tree)."""
        return list(self.objects.values())

    def port_index(self, name: str) -> int:
        for index, port in enumerate(self.ports):
            if port.name == name:
                return index
        raise KeyError(name)

    def _build(self, start: datetime, length_s: int) -> None:
        self._build_sensors(ids.VOLTAGE, self.voltage_sensors)
        self._build_sensors(ids.CURRENT, self.current_sensors)
        self._build_port_status(start, length_s)
        self._build_alerts()
        self._build_ports()
        self._build_outputs(start)
        self._build_temperatures()
        self._build_batteries()
        self._build_device()

    def _build_sensors(self, object_id: int, sensors: Sequence[Sensor], *, offset: int = 0) -> LiveObject:
        obj = self._object(object_id)
        model = obj.model
        for index, sensor in enumerate(sensors):
            iid = index + offset
            values: dict[int, Value] = {
                5701: sensor.units,
                5603: sensor.range_min,
                5604: sensor.range_max,
                5750: sensor.application,
            }
            if sensor.calibration is not None and model.resource(5821) is not None:
                values[5821] = sensor.calibration
            obj.add_instance(iid, instance_from_model(model, iid, values))
            obj.set_live(iid, 5700, partial(_sensor_field, sensor, "value"))
            obj.set_live(iid, 5601, partial(_sensor_field, sensor, "min_measured"))
            obj.set_live(iid, 5602, partial(_sensor_field, sensor, "max_measured"))
            obj.set_live(iid, 5518, self._sample_time)

        def calibrate(iid: int, resource: Resource) -> None:
            value = resource.value if isinstance(resource, SingleResource) else None
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 < float(value) < 100.0:
                raise OperationError(ResponseCode.BAD_REQUEST, "calibration must be a gain between 0 and 100")
            sensors[iid - offset].calibration = float(value)

        def reset(iid: int, _arguments: Mapping[int, str | None]) -> None:
            sensors[iid - offset].reset_min_max()
            obj.refresh()

        if model.resource(5821) is not None:
            obj.set_write_hook(5821, calibrate)
        obj.set_executor(5605, reset)
        return obj

    def _sample_time(self) -> Value | None:
        return None if self._last_sample is None else self._last_sample.replace(microsecond=0)

    def _build_port_status(self, start: datetime, length_s: int) -> None:
        obj = self._object(ids.PORT_STATUS)
        for index, port in enumerate(self.ports):
            values: dict[int, Value] = {
                0: port.label,
                3: length_s,
                5518: start.replace(microsecond=0),
                4: ObjectLink(ids.ALERTS, index),
            }
            obj.add_instance(index, instance_from_model(obj.model, index, values))

        def length_written(iid: int, resource: Resource) -> None:
            value = resource.value if isinstance(resource, SingleResource) else None
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 86400:
                raise OperationError(ResponseCode.BAD_REQUEST, "Length must be 1..86400 seconds")
            # A new window starts now; the averages of the last finished window stay until it ends.
            self.windows[iid].restart(self.clock.now(), value)

        obj.set_write_hook(3, length_written)

    def _build_alerts(self) -> None:
        obj = self._object(ids.ALERTS)
        names = list(ALERT_FIELDS)
        for index, port in enumerate(self.ports):
            obj.add_instance(index, instance_from_model(obj.model, index, {}))
            for rid, name in enumerate(names):
                obj.set_live(index, rid, partial(self._alert, port.name, name))
            obj.set_live(index, 5518, partial(self._alerts_changed, port.name))

    def _port_reading(self, name: str) -> PortReading | None:
        return None if self._reading is None else self._reading.ports.get(name)

    def _alert(self, port: str, name: str) -> Value | None:
        reading = self._port_reading(port)
        if reading is None or reading.alerts is None:
            return None
        return bool(getattr(reading.alerts, name))

    def _alerts_changed(self, port: str) -> Value | None:
        reading = self._port_reading(port)
        if reading is None or reading.alerts_changed_at is None:
            return None
        return reading.alerts_changed_at.replace(microsecond=0)

    def _build_ports(self) -> None:
        obj = self._object(ids.PORT)
        for index, port in enumerate(self.ports):
            values: dict[int, Value] = {
                0: port.name,
                1: ObjectLink(ids.DIGITAL_OUTPUT, index) if port.switchable else NULL_LINK,
                2: ObjectLink(ids.PORT_STATUS, index),
                5: ObjectLink(ids.VOLTAGE, index),
                6: ObjectLink(ids.CURRENT, index),
            }
            obj.add_instance(index, instance_from_model(obj.model, index, values))

    def _build_outputs(self, start: datetime) -> None:
        obj = self._object(ids.DIGITAL_OUTPUT)
        for index, port in enumerate(self.ports):
            if not port.switchable:
                continue
            values: dict[int, Value] = {
                5550: True,
                5750: f"{port.name} ({port.label})",
                5518: start.replace(microsecond=0),
            }
            obj.add_instance(index, instance_from_model(obj.model, index, values))

        def switched(iid: int, resource: Resource) -> None:
            value = resource.value if isinstance(resource, SingleResource) else None
            if not isinstance(value, bool):
                raise OperationError(ResponseCode.BAD_REQUEST, "Digital Output State is a Boolean")
            try:
                self.source.switch(self.ports[iid].name, value)
            except (ValueError, KeyError) as exc:
                raise OperationError(ResponseCode.METHOD_NOT_ALLOWED, str(exc)) from None
            log.info("port switched", extra={"port": self.ports[iid].name, "on": value})
            obj.set_value(
                iid, SingleResource(5518, self.clock.now().replace(microsecond=0), obj.model.resources[5518].type)
            )
            self._measure(self.clock.now())  # the port's current reads 0 at once, not at the next sample

        obj.set_write_hook(5550, switched)

    def _build_temperatures(self) -> None:
        obj = self._build_sensors(ids.TEMPERATURE, self.temperature_sensors)
        for index in range(len(self.temperature_sensors)):
            obj.set_live(index, 5518, self._sample_time)

    def _build_batteries(self) -> None:
        info = self.source.battery
        battery = self._object(ids.BATTERY)
        battery.add_instance(
            0,
            instance_from_model(battery.model, 0, {4: info.type_name or "unknown", 5: LOW_BATTERY_PERCENT}),
        )
        battery.set_live(0, 1, self._soc_percent)
        battery.set_live(0, 2, partial(self._float, "capacity_ah"))
        battery.set_live(0, 3, partial(self._float, "battery_voltage_v"))
        battery.set_live(0, 6, self._battery_low)
        battery.set_live(0, 8, self._cycle_count)
        battery.set_live(0, 5518, self._sample_time)

        spmp = self._object(ids.SPMP_BATTERY)
        values: dict[int, Value] = {1: info.identifier, 3: 4, 4: info.technology, 20: 0.0}
        if info.design_voltage_v is not None:
            values[5] = info.design_voltage_v
        if info.cells is not None:
            values[6] = info.cells
        if info.design_capacity_ah is not None:
            values[7] = info.design_capacity_ah
        spmp.add_instance(0, instance_from_model(spmp.model, 0, values))
        spmp.set_live(0, 10, partial(self._float, "capacity_ah"))
        spmp.set_live(0, 11, self._cycle_count)
        spmp.set_live(0, 12, lambda: None if self._reading is None else self._reading.last_cycle_time)
        spmp.set_live(0, 13, self._oper_state)
        spmp.set_live(
            0,
            14,
            lambda: (
                None if self._reading is None or self._reading.admin_state is None else int(self._reading.admin_state)
            ),
        )
        spmp.set_live(0, 15, partial(self._float, "charge_ah"))
        spmp.set_live(0, 16, lambda: self._float("battery_voltage_v") or 0.0)
        spmp.set_live(0, 17, partial(self._float, "battery_current_a"))
        spmp.set_live(0, 18, partial(self._float, "battery_temperature_c"))
        spmp.set_live(0, 26, self._soc_percent)
        spmp.set_live(0, 5518, self._sample_time)

        def admin(iid: int, resource: Resource) -> None:
            value = resource.value if isinstance(resource, SingleResource) else None
            try:
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError("Charging Administrative State is an Integer 1..4")
                self.source.set_admin_state(ChargingAdminState(value))
            except ValueError as exc:
                raise OperationError(ResponseCode.BAD_REQUEST, str(exc)) from None

        spmp.set_write_hook(14, admin)

    def _float(self, name: str) -> float | None:
        value = None if self._reading is None else getattr(self._reading, name)
        return round(value, 4) if isinstance(value, float | int) else None

    def _soc_percent(self) -> int | None:
        soc = None if self._reading is None else self._reading.soc
        return None if soc is None else round(soc * 100)

    def _cycle_count(self) -> int | None:
        return None if self._reading is None else self._reading.cycle_count

    def _oper_state(self) -> int:
        state = None if self._reading is None else self._reading.oper_state
        return int(ChargingOperState.UNKNOWN if state is None else state)

    def _battery_low(self) -> bool | None:
        soc = None if self._reading is None else self._reading.soc
        if soc is None:
            return None
        threshold = self.objects[ids.BATTERY].stored_value(0, 5)
        return soc * 100 < (threshold if isinstance(threshold, int) else LOW_BATTERY_PERCENT)

    def _build_device(self) -> None:
        device = self._object(ids.DEVICE)
        values: dict[int, Value | Mapping[int, Value]] = {
            0: "SPMP",
            1: "SPMP-CC1",
            2: self.serial,
            3: "0.1",
            6: {0: 7, 1: 2},  # solar, external battery
            14: "UTC+00:00",
            15: "UTC",
            16: "U",
            17: "solar charge controller",
            18: "1.0",
        }
        device.add_instance(0, instance_from_model(device.model, 0, values))
        pv = next((i for i, p in enumerate(self.ports) if p.kind is PortKind.PV), None)
        batt = next((i for i, p in enumerate(self.ports) if p.kind is PortKind.BATTERY), None)

        def millis(sensors: list[Sensor]) -> Mapping[int, Value] | None:
            out: dict[int, Value] = {}
            for slot, index in enumerate((pv, batt)):
                if index is not None and (value := sensors[index].value) is not None:
                    out[slot] = round(abs(value) * 1000) if slot == 0 else round(value * 1000)
            return out or None

        device.set_live(0, 7, lambda: millis(self.voltage_sensors))
        device.set_live(0, 8, lambda: millis(self.current_sensors))
        device.set_live(0, 9, self._soc_percent)
        device.set_live(0, 11, self._error_codes)
        device.set_live(0, 13, lambda: self.clock.now().replace(microsecond=0))
        device.set_live(0, 20, self._battery_status)

        def reboot(_iid: int, _arguments: Mapping[int, str | None]) -> None:
            log.warning("reboot requested (the simulated charger keeps running)")

        device.set_executor(4, reboot)

    def _error_codes(self) -> Mapping[int, Value]:
        codes: list[int] = []
        if self._battery_low():
            codes.append(1)  # low battery
        reading = self._reading
        if reading is not None and reading.ports and not reading.ports.get("BATT", PortReading()).voltage_v:
            codes.append(2)  # external power off
        return dict(enumerate(codes or [0]))

    def _battery_status(self) -> Value | None:
        reading = self._reading
        if reading is None or reading.oper_state is None:
            return None
        if self._battery_low():
            return 4
        if reading.oper_state is ChargingOperState.CHARGING:
            return 1
        if reading.oper_state is ChargingOperState.MAINTAINING_CHARGE:
            return 2
        return 0

    # -- sampling ---------------------------------------------------------------------------------

    @property
    def reading(self) -> Reading | None:
        """The latest measurements the objects show."""
        return self._reading

    def _measure(self, now: datetime) -> None:
        """Update the sensors from the source's latest reading and tell observers what changed."""
        reading = self.source.latest()
        if reading is None:
            return
        self._reading = reading
        self._last_sample = now
        for index, port in enumerate(self.ports):
            pr = reading.ports.get(port.name, PortReading())
            self.voltage_sensors[index].update(pr.voltage_v)
            self.current_sensors[index].update(pr.current_a)
        for sensor, value in zip(
            self.temperature_sensors,
            (reading.battery_temperature_c, reading.heatsink_c, reading.ambient_c),
            strict=True,
        ):
            sensor.update(value)
        for obj in self.objects.values():
            obj.refresh()

    def sample(self, now: datetime | None = None) -> None:
        """Take one sample at device time ``now`` (default: the clock) from the source's latest reading."""
        when = self.clock.now() if now is None else now
        self._measure(when)
        if self._reading is None:
            return
        self.samples += 1
        status = self.objects[ids.PORT_STATUS]
        for index in range(len(self.ports)):
            result = self.windows[index].add(when, self.voltage_sensors[index].value, self.current_sensors[index].value)
            if result is not None:
                self._publish(status, index, result)
        for listener in list(self.sample_listeners):
            try:
                listener(self._reading)
            except Exception:
                log.exception("sample listener failed")

    def _publish(self, status: LiveObject, index: int, result: WindowResult) -> None:
        """A window ended: Voltage Average, Amperage Average and Timestamp change together."""
        self.results[index] = result
        self.windows_closed += 1
        model = status.model
        changes: dict[int, Resource] = {
            5518: SingleResource(5518, result.end.replace(microsecond=0), model.resources[5518].type)
        }
        for rid, value in ((1, result.voltage_v), (2, result.current_a)):
            if value is not None:
                changes[rid] = SingleResource(rid, round(value, 4), model.resources[rid].type)
            else:
                status.remove_resources(index, [rid])
        for resource in changes.values():
            status.set_value(index, resource)

    async def step(self, now: datetime | None = None) -> None:
        """Refresh the source up to ``now`` (default: the clock) and sample it."""
        when = self.clock.now() if now is None else now
        await self.source.refresh(when)
        self.sample(when)

    async def run(self) -> None:
        """Sample every ``sample_interval`` seconds of device time until cancelled."""
        interval = timedelta(seconds=self.sample_interval)
        if self._last_sample is None:
            await self.step()
        next_at = (self._last_sample or self.clock.now()) + interval
        while True:
            delta = (next_at - self.clock.now()).total_seconds()
            if self.clock.manual:
                await self.clock.sleep_sim(delta)
            else:
                await asyncio.sleep(max(delta / self.clock.speed, self.min_wall_tick))
            now = self.clock.now()
            behind = (now - next_at).total_seconds()
            if behind > 3600:  # a stalled loop: do not replay hours of samples in a burst
                next_at = now
            while next_at <= now:
                try:
                    await self.step(next_at)
                except Exception:
                    log.exception("charger sample failed")
                next_at += interval


def _sensor_field(sensor: Sensor, name: str) -> Value | None:
    value = getattr(sensor, name)
    return round(value, 4) if isinstance(value, float) else None


def utc_start() -> datetime:
    """Today at 06:00 UTC: a simulated site starts near sunrise at longitude 0."""
    now = datetime.now(UTC)
    return now.replace(hour=6, minute=0, second=0, microsecond=0)
