"""Charger ports: PV input, battery and load outputs, each with sensors, a switch and protections.

Sensors hold the true values; calibration is the LwM2M layer's business. Sign convention (Port
Status object): current is positive when it flows out of the charger into the port, so a load
port reads positive, the battery port positive while charging, and the PV port *negative* while
the array delivers (the current flows from the array into the charger).

Protections and the Alerts object (26243) flags they drive:

* short circuit: a prospective current ≥ ``short_circuit_a`` trips the port at once; latched
  (alert stays true, port stays off) until ``reset()`` or the switch is cycled off and on.
* over-current: current > ``over_current_a`` for ``over_current_delay_s`` trips, latched likewise.
* overload (I²t): heat accumulates as (I² − I_cont²)·dt above the continuous rating and trips at
  I_cont²·``overload_time_s`` (so 2× the rating trips after a third of that time); latched.
* over-voltage: port voltage above ``over_voltage_v``; a condition (clears by itself).
* low-voltage disconnect/reconnect (load ports): the battery voltage below ``lvd_v`` for
  ``lv_delay_s`` switches the port off (LVD alert true); only when it rises above ``lvr_v``
  (for the same delay) does the port come back (LVR alert true until the next LVD). The gap
  between the two is the hysteresis that stops flapping: disconnecting the load lifts the
  voltage by its I·R drop, which must not be enough to reconnect.
* high-voltage disconnect: above ``hvd_v`` off, back below ``hvr_v``.
* temperatures and open circuit: set by the site; reverse polarity, ground fault and sensor
  fault: injected with ``inject_fault`` (the first two switch the port off).

Timers count simulated step time, so a delay resolves to the site's step (≤ 60 s).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from enum import Enum

__all__ = ["Port", "PortAlerts", "PortKind", "PortLimits"]


class PortKind(Enum):
    PV = "pv"
    BATTERY = "battery"
    LOAD = "load"


@dataclass(frozen=True, slots=True)
class PortAlerts:
    """One flag per resource of the Alerts object, same names and order (resources 0..12)."""

    short_circuit: bool = False
    over_voltage: bool = False
    over_current: bool = False
    low_voltage_disconnect: bool = False
    low_voltage_reconnect: bool = False
    over_temperature: bool = False
    under_temperature: bool = False
    reverse_polarity: bool = False
    high_voltage_disconnect: bool = False
    open_circuit: bool = False
    ground_fault: bool = False
    sensor_fault: bool = False
    overload: bool = False

    def active(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name))


@dataclass(frozen=True, slots=True)
class PortLimits:
    """Protection setpoints of one port; None disables that protection."""

    over_voltage_v: float | None = None
    short_circuit_a: float | None = None
    over_current_a: float | None = None
    over_current_delay_s: float = 2.0
    continuous_a: float | None = None
    overload_time_s: float = 60.0
    lvd_v: float | None = None
    lvr_v: float | None = None
    lv_delay_s: float = 30.0
    hvd_v: float | None = None
    hvr_v: float | None = None

    def __post_init__(self) -> None:
        if self.lvd_v is not None and self.lvr_v is not None and self.lvr_v <= self.lvd_v:
            raise ValueError(f"reconnect voltage {self.lvr_v} must be above disconnect voltage {self.lvd_v}")
        if self.hvd_v is not None and self.hvr_v is not None and self.hvr_v >= self.hvd_v:
            raise ValueError(f"high-voltage reconnect {self.hvr_v} must be below disconnect {self.hvd_v}")


_LATCHED = ("short_circuit", "over_current", "overload")
_SWITCHING_OFF = ("reverse_polarity", "ground_fault")


class Port:
    """A port's switch, sensors, protection state and alerts."""

    def __init__(self, name: str, kind: PortKind, limits: PortLimits | None = None, *, switchable: bool = True) -> None:
        self.name = name
        self.kind = kind
        self.limits = limits or PortLimits()
        self.switchable = switchable
        self.switch_on = True  # the operator's command (Digital Output State)
        self.voltage_v = 0.0
        self.current_a = 0.0
        self.alerts = PortAlerts()
        self.alerts_changed_at: datetime | None = None
        self.lvd_events = 0
        self.lvr_events = 0
        self._trips: set[str] = set()
        self._faults: set[str] = set()
        self._lv_timer = 0.0
        self._oc_timer = 0.0
        self._heat = 0.0
        self._now: datetime | None = None

    # ---- operator side -----------------------------------------------------------------------
    def set_switch(self, on: bool) -> None:
        """Switch the port; switching it off clears latched trips (the classic reset by power cycle)."""
        if not self.switchable:
            raise ValueError(f"port {self.name} cannot be switched")
        if not on:
            self.reset()
        self.switch_on = on

    def reset(self) -> None:
        """Clear latched trips (short circuit, over-current, overload)."""
        self._trips.clear()
        self._oc_timer = 0.0
        self._heat = 0.0
        self._set(**dict.fromkeys(_LATCHED, False))

    def inject_fault(self, name: str, present: bool = True) -> None:
        """Simulate a condition the model does not produce: reverse_polarity, ground_fault, sensor_fault."""
        if name not in ("reverse_polarity", "ground_fault", "sensor_fault"):
            raise ValueError(f"cannot inject {name!r}")
        if present:
            self._faults.add(name)
        else:
            self._faults.discard(name)
        self._set(**{name: present})

    # ---- state -------------------------------------------------------------------------------
    @property
    def tripped(self) -> bool:
        return bool(self._trips)

    @property
    def output_on(self) -> bool:
        """Whether the port conducts: switched on and no protection holding it off."""
        a = self.alerts
        return (
            self.switch_on
            and not self._trips
            and not a.low_voltage_disconnect
            and not a.high_voltage_disconnect
            and not a.over_voltage
            and not any(f in self._faults for f in _SWITCHING_OFF)
        )

    # ---- called by the site each step ---------------------------------------------------------
    def check_voltage(self, bus_v: float, dt_s: float, now: datetime) -> None:
        """Voltage protections from the bus (battery) voltage, before the step's currents flow."""
        self._now = now
        lim = self.limits
        if lim.over_voltage_v is not None:
            self._set(over_voltage=bus_v > lim.over_voltage_v)
        if lim.hvd_v is not None:
            if bus_v > lim.hvd_v:
                self._set(high_voltage_disconnect=True)
            elif lim.hvr_v is None or bus_v < lim.hvr_v:
                self._set(high_voltage_disconnect=False)
        if lim.lvd_v is None or not self.switch_on:
            self._lv_timer = 0.0
            return
        if not self.alerts.low_voltage_disconnect:
            self._lv_timer = self._lv_timer + dt_s if self.output_on and bus_v < lim.lvd_v else 0.0
            if self._lv_timer > 0 and self._lv_timer >= lim.lv_delay_s:
                self._lv_timer = 0.0
                self.lvd_events += 1
                self._set(low_voltage_disconnect=True, low_voltage_reconnect=False)
        else:
            reconnect_v = lim.lvr_v if lim.lvr_v is not None else lim.lvd_v
            self._lv_timer = self._lv_timer + dt_s if bus_v > reconnect_v else 0.0
            if self._lv_timer > 0 and self._lv_timer >= lim.lv_delay_s:
                self._lv_timer = 0.0
                self.lvr_events += 1
                self._set(low_voltage_disconnect=False, low_voltage_reconnect=True)

    def check_current(self, prospective_a: float, dt_s: float) -> bool:
        """Current protections for this step's current; True if the port may carry it."""
        lim = self.limits
        if lim.short_circuit_a is not None and abs(prospective_a) >= lim.short_circuit_a:
            self._trip("short_circuit")
            return False
        current = abs(prospective_a)
        if lim.over_current_a is not None:
            self._oc_timer = self._oc_timer + dt_s if current > lim.over_current_a else 0.0
            if self._oc_timer > 0 and self._oc_timer >= lim.over_current_delay_s:
                self._trip("over_current")  # the current flowed during the delay; off from now on
        if lim.continuous_a is not None:
            cont2 = lim.continuous_a**2
            self._heat = max(0.0, self._heat + (current * current - cont2) * dt_s)
            if self._heat >= cont2 * lim.overload_time_s:
                self._trip("overload")
        return True

    def measure(self, voltage_v: float, current_a: float) -> None:
        self.voltage_v = voltage_v
        self.current_a = current_a

    def set_condition(self, **flags: bool) -> None:
        """Conditions the site detects itself (temperatures, open circuit)."""
        self._set(**flags)

    def _trip(self, name: str) -> None:
        self._trips.add(name)
        self._set(**{name: True})

    def _set(self, **flags: bool) -> None:
        current = self.alerts
        if all(getattr(current, name) == value for name, value in flags.items()):
            return  # the common case, and dataclasses.replace is slow
        self.alerts = replace(current, **flags)
        self.alerts_changed_at = self._now
