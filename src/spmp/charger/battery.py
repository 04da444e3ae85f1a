"""Battery bank: OCV curve, internal resistance, coulomb counting, temperature, RFC 7577 cycles, fade.

State is the stored charge ``charge_ah`` (SOC = charge / actual capacity). Per step with terminal
current I (positive = charging):

* terminal voltage ``V = n·(OCV(SOC) + I·r(SOC, I))``, n cells in series. ``r`` is the ohmic
  resistance (``r_ohm_ah / C``) plus, while charging, a polarization term
  ``(k1 + k2/(1 − SOC + 0.01)) / C`` that grows as the cell fills. Without it a lead-acid bank at
  C/10 would never reach its absorption voltage (OCV at 100 % is 2.12 V/cell, absorption 2.40) and
  absorption current would never tail off; k1, k2 are fitted so that a lead-acid cell reaches
  2.40 V near 85 % SOC at C/10 and near 65 % at C/5, tails to ~0.7 A per 100 Ah when full and
  floats at ~0.4 A per 100 Ah (linear in current: a compromise, real polarization is closer to
  logarithmic), and a LiFePO4 cell at
  C/5 reaches 3.55 V near 97 % and tails through C/10 near 99 %. Discharging adds
  ``k3/(SOC + 0.01) / C``, the steep sag of a nearly empty cell (Shepherd-like): it makes a
  lead-acid bank under a light load reach its LVD (1.95 V/cell, below the 0 % OCV of 1.97 V)
  at a few percent SOC instead of never.
* coulomb counting: charging stores ``η·I·dt`` (η = charge efficiency), discharging removes
  ``I·dt``; self-discharge removes ``rate·C·dt``. At 100 % the excess is gassing/heat, at 0 % the
  missing charge is booked as a deficit (the LVD should prevent that), so energy stays accounted.
* temperature: one thermal mass, ``C_th·dT/dt = (T_amb − T)/R_th + I²·r``, time constant hours.
* RFC 7577 §3.4 cycles: discharged Ah accumulate across partial discharges; each design
  capacity's worth is one cycle (``cycle_count``, ``last_cycle_time``).
* fade: actual capacity = design × (1 − 0.2 × cycles / rated cycle life), never below 50 %:
  "end of life = 80 % capacity at the rated cycle count", the usual datasheet definition, linear
  in between (a deliberately simple law).

Numbers per chemistry come from the project's field notes (OCV vs SOC, setpoints, LVD/LVR) and
are per cell, so the same chemistry serves 12, 24 and 48 V banks.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

__all__ = ["Battery", "BatteryStep", "Chemistry", "ChemistryParams"]


class Chemistry(Enum):
    AGM = "agm"
    FLOODED = "flooded"
    LIFEPO4 = "lifepo4"


@dataclass(frozen=True, slots=True)
class ChemistryParams:
    """Per-cell parameters of a chemistry; voltages in V per cell, resistances in Ω·Ah (÷ capacity)."""

    name: str
    iana_technology: int  # IANA battery-technologies registry (RFC 7577 batteryTechnology)
    nominal_cell_v: float
    ocv_soc: tuple[float, ...]  # SOC points (0..1), increasing
    ocv_v: tuple[float, ...]  # OCV per cell at those points
    r_ohm_ah: float  # ohmic resistance × capacity
    pol_k1: float  # polarization while charging, see module docstring
    pol_k2: float
    pol_k3: float  # polarization while discharging: k3/(SOC + 0.01), the sag of a nearly empty cell
    charge_efficiency: float  # coulombic
    self_discharge_per_day: float  # fraction of capacity
    rated_cycles: float  # cycles to 80 % capacity
    # Charger setpoints per cell at 25 °C (NOTES: 12 V values / 6 cells lead-acid, / 4 cells LiFePO4).
    absorption_v: float
    float_v: float | None  # None: no float (LiFePO4 stops and rests)
    equalize_v: float | None
    restart_v: float  # LiFePO4: resume charging below this; lead-acid: re-bulk from float below this
    temp_comp_v_per_c: float  # per cell, lead-acid −3 mV/°C; 0 for LiFePO4
    lvd_v: float
    lvr_v: float
    max_v: float  # above this the bank is over-voltage (charger stops, loads protected)
    min_charge_temp_c: float
    max_charge_temp_c: float


# Lead-acid OCV (NOTES, 12 V): 11.8 V = 0 %, 12.2 V = 50 %, 12.7 V = 100 %  → ÷ 6 cells.
_LEAD_SOC = (0.0, 0.5, 1.0)
_LEAD_OCV = (11.8 / 6, 12.2 / 6, 12.7 / 6)
# LiFePO4 OCV (NOTES, 12 V pack of 4 cells): 10.0/0 %, 12.0/10 %, 12.8/20 %, 13.0/30 %, 13.2/40 %,
# 13.3/70 %, 13.6/99 %; 100 % set 50 mV above 99 % so that the curve stays strictly increasing.
_LFP_SOC = (0.0, 0.10, 0.20, 0.30, 0.40, 0.70, 0.99, 1.0)
_LFP_OCV = tuple(v / 4 for v in (10.0, 12.0, 12.8, 13.0, 13.2, 13.3, 13.6, 13.65))

CHEMISTRIES: dict[Chemistry, ChemistryParams] = {
    Chemistry.AGM: ChemistryParams(
        name="Lead-acid AGM",
        iana_technology=14,
        nominal_cell_v=2.0,
        ocv_soc=_LEAD_SOC,
        ocv_v=_LEAD_OCV,
        r_ohm_ah=0.4,
        pol_k1=0.13,
        pol_k2=0.408,
        pol_k3=0.27,
        charge_efficiency=0.92,
        self_discharge_per_day=0.001,
        rated_cycles=600,
        absorption_v=14.4 / 6,
        float_v=13.7 / 6,
        equalize_v=15.1 / 6,
        restart_v=12.3 / 6,
        temp_comp_v_per_c=-0.003,
        lvd_v=1.95,
        lvr_v=2.10,
        max_v=2.60,
        min_charge_temp_c=-20.0,
        max_charge_temp_c=50.0,
    ),
    Chemistry.FLOODED: ChemistryParams(
        name="Lead-acid flooded",
        iana_technology=12,
        nominal_cell_v=2.0,
        ocv_soc=_LEAD_SOC,
        ocv_v=_LEAD_OCV,
        r_ohm_ah=0.5,
        pol_k1=0.13,
        pol_k2=0.408,
        pol_k3=0.27,
        charge_efficiency=0.90,
        self_discharge_per_day=0.002,
        rated_cycles=1200,
        absorption_v=14.6 / 6,
        float_v=13.5 / 6,
        equalize_v=15.3 / 6,
        restart_v=12.3 / 6,
        temp_comp_v_per_c=-0.003,
        lvd_v=1.95,
        lvr_v=2.10,
        max_v=2.65,
        min_charge_temp_c=-20.0,
        max_charge_temp_c=50.0,
    ),
    Chemistry.LIFEPO4: ChemistryParams(
        name="LiFePO4",
        iana_technology=18,
        nominal_cell_v=3.2,
        ocv_soc=_LFP_SOC,
        ocv_v=_LFP_OCV,
        r_ohm_ah=0.1,
        pol_k1=0.273,
        pol_k2=0.0171,
        pol_k3=0.02,
        charge_efficiency=0.99,
        self_discharge_per_day=0.0001,
        rated_cycles=3000,
        absorption_v=3.55,
        float_v=None,
        equalize_v=None,
        restart_v=3.35,
        temp_comp_v_per_c=0.0,
        lvd_v=3.0,
        lvr_v=3.15,
        max_v=3.65,
        min_charge_temp_c=0.0,
        max_charge_temp_c=45.0,
    ),
}

FADE_AT_RATED_CYCLES = 0.20
MIN_CAPACITY_FRACTION = 0.5
_POL_DELTA = 0.01  # keeps the polarization finite at 100 % SOC


@dataclass(frozen=True, slots=True)
class BatteryStep:
    """Energy terms of one battery step (Wh); terminal ≈ stored + losses − deficit (to the OCV step error)."""

    terminal_wh: float  # V·I·dt into the terminals (negative when discharging)
    stored_wh: float  # change of chemical energy (∫OCV dQ)
    resistive_wh: float  # I²·r·dt (ohmic + polarization), heats the bank
    coulombic_wh: float  # charge that did not store (efficiency < 1) and gassing at 100 %
    self_discharge_wh: float
    fade_wh: float  # chemical energy lost as capacity shrank
    deficit_wh: float  # energy delivered with the bank at 0 % (should not happen behind an LVD)


class Battery:
    """A bank of ``cells`` identical cells in series; see the module docstring for the model."""

    def __init__(
        self,
        chemistry: Chemistry = Chemistry.AGM,
        capacity_ah: float = 200.0,
        cells: int = 24,
        *,
        soc: float = 0.8,
        temperature_c: float = 25.0,
        thermal_mass_j_per_c: float | None = None,
        thermal_resistance_c_per_w: float | None = None,
    ) -> None:
        if capacity_ah <= 0 or cells <= 0:
            raise ValueError("capacity and cells must be positive")
        self.chemistry = chemistry
        self.params = CHEMISTRIES[chemistry]
        self.cells = cells
        self.design_capacity_ah = float(capacity_ah)
        self.charge_ah = min(max(soc, 0.0), 1.0) * capacity_ah
        self.temperature_c = temperature_c
        # ~30 kg per 100 Ah of 48 V lead-acid, heat capacity ~ 800 J/(kg·°C); time constant R·C ≈ hours.
        # Lead-acid ~0.07 kg per Ah per 2 V cell, LiFePO4 ~0.02 kg, both ~800–1000 J/(kg·°C); the thermal
        # resistance to the air is ~0.1 °C/W for a 48 V 200 Ah bank and grows as the bank shrinks.
        # Time constants come out at several hours, as for a real bank in a cabinet.
        j_per_c_per_ah_cell = 20.0 if chemistry is Chemistry.LIFEPO4 else 56.0
        self.thermal_mass_j_per_c = thermal_mass_j_per_c or j_per_c_per_ah_cell * capacity_ah * cells
        self.thermal_resistance_c_per_w = thermal_resistance_c_per_w or 0.1 * math.sqrt(4800.0 / (capacity_ah * cells))
        self.discharged_ah = 0.0  # total ever discharged at the terminals (RFC 7577 cycle counting)
        self.last_cycle_time: datetime | None = None
        self.current_a = 0.0
        xs, ys = self.params.ocv_soc, self.params.ocv_v
        cum = [0.0]
        for k in range(len(xs) - 1):
            cum.append(cum[-1] + (xs[k + 1] - xs[k]) * (ys[k] + ys[k + 1]) / 2.0)
        self._ocv_integral = tuple(cum)  # ∫ OCV ds from 0 to each SOC breakpoint
        self.voltage_v = self.open_circuit_voltage()

    # ---- static properties -------------------------------------------------------------------
    @property
    def design_voltage_v(self) -> float:
        return self.params.nominal_cell_v * self.cells

    @property
    def cycles(self) -> float:
        """Charging cycles so far, fractional (RFC 7577 §3.4: discharge / design capacity)."""
        return self.discharged_ah / self.design_capacity_ah

    @property
    def cycle_count(self) -> int:
        return int(self.cycles)

    @property
    def capacity_ah(self) -> float:
        """Actual capacity after fade (RFC 7577 batteryActualCapacity)."""
        fade = FADE_AT_RATED_CYCLES * self.cycles / self.params.rated_cycles
        return self.design_capacity_ah * max(MIN_CAPACITY_FRACTION, 1.0 - fade)

    @property
    def soc(self) -> float:
        return self.charge_ah / self.capacity_ah

    # ---- electrical model --------------------------------------------------------------------
    def ocv_cell(self, soc: float | None = None) -> float:
        s = self.soc if soc is None else soc
        xs, ys = self.params.ocv_soc, self.params.ocv_v
        s = min(max(s, xs[0]), xs[-1])
        k = min(max(0, bisect_right(xs, s) - 1), len(xs) - 2)
        return ys[k] + (ys[k + 1] - ys[k]) * (s - xs[k]) / (xs[k + 1] - xs[k])

    def open_circuit_voltage(self) -> float:
        return self.ocv_cell() * self.cells

    def resistance(self, charging: bool) -> float:
        """Bank resistance (Ω) seen by a charging or discharging current at the present SOC."""
        p = self.params
        per_cell_ah = p.r_ohm_ah
        soc = min(max(self.soc, 0.0), 1.0)
        if charging:
            per_cell_ah += p.pol_k1 + p.pol_k2 / (1.0 - soc + _POL_DELTA)
        else:
            per_cell_ah += p.pol_k3 / (soc + _POL_DELTA)
        return per_cell_ah / self.capacity_ah * self.cells

    def terminal_voltage(self, current_a: float) -> float:
        return self.open_circuit_voltage() + current_a * self.resistance(current_a > 0)

    def current_for_voltage(self, voltage_v: float) -> float:
        """The current that makes the terminals sit at ``voltage_v`` (inverse of terminal_voltage)."""
        diff = voltage_v - self.open_circuit_voltage()
        return diff / self.resistance(diff > 0)

    def energy_wh(self, charge_ah: float | None = None, capacity_ah: float | None = None) -> float:
        """Chemical energy stored: cells × capacity × ∫₀^SOC OCV ds, exact for the piecewise-linear curve."""
        cap = self.capacity_ah if capacity_ah is None else capacity_ah
        q = self.charge_ah if charge_ah is None else charge_ah
        s = min(max(q / cap, 0.0), 1.0)
        xs, ys, cum = self.params.ocv_soc, self.params.ocv_v, self._ocv_integral
        k = max(0, bisect_right(xs, s) - 1)
        if k >= len(xs) - 1:
            integral = cum[-1]
        else:
            y = ys[k] + (ys[k + 1] - ys[k]) * (s - xs[k]) / (xs[k + 1] - xs[k])
            integral = cum[k] + (s - xs[k]) * (ys[k] + y) / 2.0
        return integral * cap * self.cells

    # ---- time step ---------------------------------------------------------------------------
    def step(self, current_a: float, dt_s: float, ambient_c: float, now: datetime | None = None) -> BatteryStep:
        """Pass ``current_a`` (positive charging) for ``dt_s`` seconds; returns the energy terms."""
        p = self.params
        hours = dt_s / 3600.0
        r = self.resistance(current_a > 0)
        ocv = self.open_circuit_voltage()
        voltage = ocv + current_a * r
        resistive_wh = current_a * current_a * r * hours
        terminal_wh = voltage * current_a * hours

        cap0, q0, cycles_before = self.capacity_ah, self.charge_ah, self.cycle_count
        e0 = self.energy_wh(q0, cap0)
        if current_a > 0:
            dq = current_a * hours * p.charge_efficiency
            lost_ah = current_a * hours - dq
        else:
            dq = current_a * hours
            lost_ah = 0.0
            self.discharged_ah -= dq
        self_dq = min(p.self_discharge_per_day * cap0 * dt_s / 86400.0, max(0.0, q0 + dq))
        q1 = q0 + dq - self_dq
        deficit_ah = max(0.0, -q1)
        gassed_ah = max(0.0, q1 - cap0)
        q1 = min(max(q1, 0.0), cap0)
        e1 = self.energy_wh(q1, cap0)
        stored_wh = e1 - e0
        # Each loss is valued at this step's OCV on its own, not as "whatever is left over", so that
        # the site's energy balance really checks the model (its residual is the OCV discretization).
        coulombic_wh = (lost_ah + gassed_ah) * ocv
        self_discharge_wh = self_dq * ocv
        deficit_wh = deficit_ah * ocv
        # Fade: the capacity after this step's discharge rescales the OCV curve and may cut charge.
        cap1 = self.capacity_ah
        self.charge_ah = min(q1, cap1)
        fade_wh = e1 - self.energy_wh(self.charge_ah, cap1)

        if self.cycle_count > cycles_before:
            self.last_cycle_time = now
        heat_w = current_a * current_a * r
        t_eq = ambient_c + heat_w * self.thermal_resistance_c_per_w
        decay = math.exp(-dt_s / (self.thermal_mass_j_per_c * self.thermal_resistance_c_per_w))
        self.temperature_c = t_eq + (self.temperature_c - t_eq) * decay
        self.current_a = current_a
        self.voltage_v = voltage
        return BatteryStep(
            terminal_wh=terminal_wh,
            stored_wh=stored_wh,
            resistive_wh=resistive_wh,
            coulombic_wh=coulombic_wh,
            self_discharge_wh=self_discharge_wh,
            fade_wh=fade_wh,
            deficit_wh=deficit_wh,
        )
