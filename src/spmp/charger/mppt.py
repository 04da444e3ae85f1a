"""MPPT charge controller: stage machine, setpoints, temperature compensation, output regulation.

Stages (TriStar-MPPT charge states, as its Modbus register 0x32 reports them):

* MPPT (bulk): all available PV power, up to the charge current limit, until the battery reaches
  the absorption voltage (the regulator ends up holding that voltage) → ABSORPTION.
* ABSORPTION: constant voltage. Lead-acid: ends after ``absorption_time_s`` at regulation
  (2.5 h; notes: 2–3 h) or earlier when the current tails below ``tail_a_per_100ah`` (1.5 A per
  100 Ah; notes: 1–2) → EQUALIZE when one is due, else FLOAT. LiFePO4 (CC/CV to 3.55 V/cell):
  ends when the current falls to C/10 → DISCONNECT (charging stopped, no float).
* FLOAT: lead-acid maintenance voltage; back to MPPT when the battery stays below the restart
  voltage for ``rebulk_delay_s`` (the loads drained it faster than the sun refills it).
* EQUALIZE: lead-acid, ``equalize_time_s`` at the equalize voltage, every
  ``equalize_interval_days`` (flooded default 28, AGM on demand) or after ``request_equalize()``.
* DISCONNECT: sun up but no charging: LiFePO4 resting until its voltage falls below the restart
  voltage (3.35 V/cell), battery temperature outside its charge range, admin doNotCharge.
  PV still feeds the loads (battery current held at 0); admin discharge turns PV off entirely.
* NIGHT_CHECK → NIGHT: array Voc below battery + 1 V for ``night_confirm_s``; dawn → MPPT.
* FAULT: battery over-voltage (above the chemistry's maximum) or array above the input rating.

Setpoints are the chemistry's per-cell values × cells, lead-acid compensated by −3 mV/°C/cell
around 25 °C (battery temperature clamped to −20..50 °C so a broken sensor cannot ask for absurd
voltages). The converter loses ``tare + c·P²`` (0.5 % of rating at idle-on, 96 % at full power,
peak ~97 % near 40 % load).

RFC 7577 batteryChargingOperState follows from stage and battery current: charging in
MPPT/ABSORPTION/EQUALIZE with current in, maintainingCharge in FLOAT, discharging when current
flows out, noCharging otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, IntEnum

from spmp.charger.battery import Battery, Chemistry
from spmp.charger.pv import PvPoint

__all__ = [
    "ChargeState",
    "ChargerCommand",
    "ChargingAdminState",
    "ChargingOperState",
    "MpptCharger",
    "MpptConfig",
    "Regulation",
    "RegulationMode",
    "Setpoints",
    "regulate",
]


class ChargeState(IntEnum):
    """TriStar-MPPT charge state (Modbus register 0x32)."""

    START = 0
    NIGHT_CHECK = 1
    DISCONNECT = 2
    NIGHT = 3
    FAULT = 4
    MPPT = 5
    ABSORPTION = 6
    FLOAT = 7
    EQUALIZE = 8
    SLAVE = 9


class ChargingOperState(IntEnum):
    """RFC 7577 batteryChargingOperState."""

    UNKNOWN = 1
    CHARGING = 2
    MAINTAINING_CHARGE = 3
    NO_CHARGING = 4
    DISCHARGING = 5


class ChargingAdminState(IntEnum):
    """RFC 7577 batteryChargingAdminState."""

    NOT_SET = 1
    CHARGE = 2
    DO_NOT_CHARGE = 3
    DISCHARGE = 4


@dataclass(frozen=True, slots=True)
class MpptConfig:
    max_charge_current_a: float = 40.0
    rated_power_w: float = 2400.0
    max_input_v: float = 150.0
    full_load_efficiency: float = 0.96
    tare_fraction: float = 0.005
    self_consumption_w: float = 1.5  # the controller's own electronics, always on, from the bus
    absorption_time_s: float = 2.5 * 3600
    tail_a_per_100ah: float = 1.5
    lifepo4_stop_c_rate: float = 0.1
    equalize_time_s: float = 2 * 3600
    equalize_interval_days: float | None = None  # None: the chemistry's default (flooded 28, else on demand)
    rebulk_delay_s: float = 600.0
    night_margin_v: float = 1.0
    night_confirm_s: float = 600.0
    temp_comp_range_c: tuple[float, float] = (-20.0, 50.0)


@dataclass(frozen=True, slots=True)
class Setpoints:
    """Bank voltages after temperature compensation."""

    absorption_v: float
    float_v: float | None
    equalize_v: float | None
    restart_v: float


@dataclass(frozen=True, slots=True)
class ChargerCommand:
    """What the regulator may do this step."""

    target_v: float | None  # battery voltage to hold; None: hold the battery current at the limit
    current_limit_a: float  # battery charge current limit (0: feed the loads only)
    available_w: float  # converter output power available from PV


class RegulationMode(Enum):
    VOLTAGE = "voltage"  # holding the target voltage
    CURRENT = "current"  # at the charge current limit
    POWER = "power"  # all available PV power (MPPT proper), not enough to reach either limit
    OFF = "off"  # converter delivers nothing (no sun, or the battery is above the target)


@dataclass(frozen=True, slots=True)
class Regulation:
    """The solved bus: battery voltage and current, converter output, load current."""

    voltage_v: float
    battery_current_a: float
    output_w: float
    load_current_a: float
    mode: RegulationMode


def regulate(battery: Battery, load_current_a: float, load_power_w: float, cmd: ChargerCommand) -> Regulation:
    """Solve the DC bus: battery (V = OCV + I·R), loads (I + P/V) and the converter under ``cmd``.

    The converter supplies P = V·(I_batt + I_load) + P_load and cannot sink current. First the
    wanted battery current (from the target voltage, capped by the limit); if that needs more
    than the PV offers, or less than nothing, the converter delivers exactly what it has and the
    battery current follows from the power balance (a quadratic in I).
    """
    ocv = battery.open_circuit_voltage()
    wanted = (
        cmd.current_limit_a
        if cmd.target_v is None
        else min(battery.current_for_voltage(cmd.target_v), cmd.current_limit_a)
    )
    v = ocv + wanted * battery.resistance(wanted > 0)
    needed = v * (wanted + load_current_a) + load_power_w
    if 0.0 <= needed <= cmd.available_w:
        limited = cmd.target_v is None or wanted < battery.current_for_voltage(cmd.target_v)
        mode = RegulationMode.CURRENT if limited else RegulationMode.VOLTAGE
        return Regulation(v, wanted, needed, load_current_a + load_power_w / v, mode)
    output = cmd.available_w if needed > 0 else 0.0
    current = _battery_current_for_power(battery, ocv, load_current_a, output - load_power_w)
    if current is None:  # the bank cannot carry the loads: they get what its maximum power allows
        r = battery.resistance(False)
        current = -(ocv + r * load_current_a) / (2 * r)
        v = ocv + current * r
        return Regulation(v, current, output, max(0.0, output / v - current), RegulationMode.POWER)
    v = ocv + current * battery.resistance(current > 0)
    mode = RegulationMode.POWER if output > 0 else RegulationMode.OFF
    return Regulation(v, current, output, load_current_a + load_power_w / v, mode)


def _battery_current_for_power(battery: Battery, ocv: float, load_a: float, net_w: float) -> float | None:
    """I with (OCV + R·I)(I + load_a) = net_w, for the R of the sign of I; None if impossible."""
    for charging in (True, False):
        r = battery.resistance(charging)
        b = ocv + r * load_a
        disc = b * b - 4 * r * (ocv * load_a - net_w)
        if disc < 0:
            continue
        current = (-b + math.sqrt(disc)) / (2 * r)
        if (current > 0) == charging or current == 0:
            return current
    return None


class MpptCharger:
    """The charger's control: stage machine and setpoints; ``regulate`` solves the bus it commands."""

    def __init__(self, battery: Battery, config: MpptConfig | None = None) -> None:
        self.battery = battery
        self.config = config or MpptConfig()
        self.state = ChargeState.START
        self.admin_state = ChargingAdminState.NOT_SET
        self.pv_enabled = True
        self.fault_reason = ""
        self._day_state = ChargeState.MPPT  # the stage to return to after a false night check
        self._state_time = 0.0  # seconds at regulation in ABSORPTION/EQUALIZE
        self._timer = 0.0  # night check / rebulk
        self._equalize_requested = False
        self._last_equalize: datetime | None = None
        self.is_lithium = battery.chemistry is Chemistry.LIFEPO4

    # ---- setpoints and converter --------------------------------------------------------------
    @property
    def equalize_interval_days(self) -> float | None:
        if self.config.equalize_interval_days is not None:
            return self.config.equalize_interval_days
        return 28.0 if self.battery.chemistry is Chemistry.FLOODED else None

    def setpoints(self, battery_temp_c: float | None = None) -> Setpoints:
        p, n = self.battery.params, self.battery.cells
        t = self.battery.temperature_c if battery_temp_c is None else battery_temp_c
        lo, hi = self.config.temp_comp_range_c
        comp = p.temp_comp_v_per_c * (min(max(t, lo), hi) - 25.0)
        return Setpoints(
            absorption_v=(p.absorption_v + comp) * n,
            float_v=None if p.float_v is None else (p.float_v + comp) * n,
            equalize_v=None if p.equalize_v is None else (p.equalize_v + comp) * n,
            restart_v=p.restart_v * n,
        )

    def loss_w(self, output_w: float) -> float:
        """Conversion loss at converter output ``output_w``: tare + c·P² (0 when idle)."""
        if output_w <= 0:
            return 0.0
        cfg = self.config
        tare = cfg.tare_fraction * cfg.rated_power_w
        c = (1.0 / cfg.full_load_efficiency - 1.0 - cfg.tare_fraction) / cfg.rated_power_w
        return tare + c * output_w * output_w

    def output_for_input(self, input_w: float) -> float:
        """Largest output whose input (output + loss) is ``input_w``, capped at the rating."""
        cfg = self.config
        tare = cfg.tare_fraction * cfg.rated_power_w
        if input_w <= tare:
            return 0.0
        c = (1.0 / cfg.full_load_efficiency - 1.0 - cfg.tare_fraction) / cfg.rated_power_w
        out = (-1.0 + math.sqrt(1.0 + 4.0 * c * (input_w - tare))) / (2.0 * c)
        return min(out, cfg.rated_power_w)

    def request_equalize(self) -> None:
        self._equalize_requested = True

    # ---- control ------------------------------------------------------------------------------
    def command(self, pv: PvPoint, now: datetime, dt_s: float) -> ChargerCommand:
        """Decide this step's state and regulator command from the PV and the battery as they are."""
        b, cfg = self.battery, self.config
        sun_up = self.pv_enabled and not pv.dark and pv.voc_v > b.voltage_v + cfg.night_margin_v
        self._update_day_night(sun_up, dt_s)
        self._update_faults(pv)
        if self.state in (ChargeState.NIGHT, ChargeState.NIGHT_CHECK, ChargeState.FAULT) or not sun_up:
            return ChargerCommand(None, 0.0, 0.0)
        if self.admin_state is ChargingAdminState.DISCHARGE:
            self.state = ChargeState.DISCONNECT
            return ChargerCommand(None, 0.0, 0.0)
        available = self.output_for_input(pv.power_w)
        temp_ok = b.params.min_charge_temp_c <= b.temperature_c <= b.params.max_charge_temp_c
        if self.admin_state is ChargingAdminState.DO_NOT_CHARGE or not temp_ok:
            if self.state is not ChargeState.DISCONNECT:
                self._day_state = self.state
            self.state = ChargeState.DISCONNECT
            return ChargerCommand(None, 0.0, available)
        if self.state is ChargeState.DISCONNECT and not self.is_lithium:  # admin or temperature hold is over
            resume = self._day_state
            self.state = ChargeState.MPPT if resume in (ChargeState.DISCONNECT, ChargeState.FAULT) else resume
        if self.admin_state is ChargingAdminState.CHARGE and self.state in (ChargeState.FLOAT, ChargeState.DISCONNECT):
            self._enter(ChargeState.MPPT)
        sp = self.setpoints()
        limit = cfg.max_charge_current_a
        if self.state is ChargeState.DISCONNECT:  # LiFePO4 resting: PV feeds the loads only
            return ChargerCommand(None, 0.0, available)
        if self.state is ChargeState.FLOAT and sp.float_v is not None:
            return ChargerCommand(sp.float_v, limit, available)
        if self.state is ChargeState.EQUALIZE and sp.equalize_v is not None:
            return ChargerCommand(sp.equalize_v, limit, available)
        return ChargerCommand(sp.absorption_v, limit, available)

    def update(self, reg: Regulation, now: datetime, dt_s: float) -> None:
        """Advance the stage machine with the step's outcome."""
        cfg, b = self.config, self.battery
        at_target = reg.mode is RegulationMode.VOLTAGE
        state = self.state
        if state is ChargeState.MPPT and at_target:
            self._enter(ChargeState.ABSORPTION)
        elif state is ChargeState.ABSORPTION:
            if at_target:
                self._state_time += dt_s
            if self.is_lithium:
                stop = at_target and reg.battery_current_a <= cfg.lifepo4_stop_c_rate * b.design_capacity_ah
                if stop or self._state_time >= cfg.absorption_time_s:
                    self._enter(ChargeState.DISCONNECT)
            else:
                tail = at_target and reg.battery_current_a <= cfg.tail_a_per_100ah * b.design_capacity_ah / 100
                if tail or self._state_time >= cfg.absorption_time_s:
                    self._enter(ChargeState.EQUALIZE if self._equalize_due(now) else ChargeState.FLOAT)
        elif state is ChargeState.EQUALIZE:
            if at_target:
                self._state_time += dt_s
            if self._state_time >= cfg.equalize_time_s:
                self._last_equalize = now
                self._equalize_requested = False
                self._enter(ChargeState.FLOAT)
        elif state is ChargeState.FLOAT or (state is ChargeState.DISCONNECT and self.is_lithium):
            restart = self.setpoints().restart_v
            self._timer = self._timer + dt_s if reg.voltage_v < restart else 0.0
            if self._timer >= (cfg.rebulk_delay_s if state is ChargeState.FLOAT else 0.0) and self._timer > 0:
                self._enter(ChargeState.MPPT)

    def oper_state(self, battery_current_a: float) -> ChargingOperState:
        eps = 0.001 * self.battery.design_capacity_ah
        if battery_current_a < -eps:
            return ChargingOperState.DISCHARGING
        if self.state is ChargeState.FLOAT:
            return ChargingOperState.MAINTAINING_CHARGE
        charging_states = (ChargeState.MPPT, ChargeState.ABSORPTION, ChargeState.EQUALIZE)
        if self.state in charging_states and battery_current_a > eps:
            return ChargingOperState.CHARGING
        return ChargingOperState.NO_CHARGING

    # ---- internals ----------------------------------------------------------------------------
    def _enter(self, state: ChargeState) -> None:
        self.state = state
        self._state_time = 0.0
        self._timer = 0.0

    def _equalize_due(self, now: datetime) -> bool:
        if self.battery.params.equalize_v is None:
            return False
        if self._equalize_requested:
            return True
        interval = self.equalize_interval_days
        if interval is None:
            return False
        if self._last_equalize is None:
            self._last_equalize = now  # a new bank counts as freshly equalized
            return False
        return (now - self._last_equalize).total_seconds() >= interval * 86400

    def _update_day_night(self, sun_up: bool, dt_s: float) -> None:
        cfg = self.config
        if self.state is ChargeState.START:
            self.state = ChargeState.MPPT if sun_up else ChargeState.NIGHT
            return
        if sun_up:
            if self.state is ChargeState.NIGHT:
                self._enter(ChargeState.DISCONNECT if self._lithium_full() else ChargeState.MPPT)
            elif self.state is ChargeState.NIGHT_CHECK:
                self.state, self._timer = self._day_state, 0.0
            return
        if self.state is ChargeState.NIGHT:
            return
        if self.state is not ChargeState.NIGHT_CHECK:
            self._day_state, self._timer = self.state, 0.0
            self.state = ChargeState.NIGHT_CHECK
        self._timer += dt_s
        if self._timer >= cfg.night_confirm_s:
            self._enter(ChargeState.NIGHT)

    def _lithium_full(self) -> bool:
        return self.is_lithium and self.battery.voltage_v >= self.setpoints().restart_v

    def _update_faults(self, pv: PvPoint) -> None:
        b = self.battery
        reasons = []
        if b.voltage_v > b.params.max_v * b.cells:
            reasons.append("battery over-voltage")
        if pv.voc_v > self.config.max_input_v:
            reasons.append("array over-voltage")
        self.fault_reason = ", ".join(reasons)
        if reasons and self.state is not ChargeState.FAULT:
            self._day_state = self.state if self.state is not ChargeState.NIGHT_CHECK else self._day_state
            self.state = ChargeState.FAULT
        elif not reasons and self.state is ChargeState.FAULT:
            self._enter(ChargeState.MPPT)
