"""Physics invariants of the charger model: energy balance, stages, LVD/LVR, cycles, protections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spmp.charger import (
    AmbientModel,
    Battery,
    ChargeState,
    ChargingOperState,
    Chemistry,
    ConstantCurrentLoad,
    ConstantPowerLoad,
    FixedPv,
    MpptCharger,
    MpptConfig,
    Port,
    PortKind,
    PortLimits,
    Site,
    Weather,
)
from spmp.charger.battery import FADE_AT_RATED_CYCLES

START = datetime(2024, 3, 20, tzinfo=UTC)
KAMPALA = (0.35, 32.58)


def bench_site(
    pv_w: float,
    *,
    chemistry: Chemistry = Chemistry.AGM,
    soc: float = 0.5,
    load_w: float = 0.0,
    config: MpptConfig | None = None,
    limits: PortLimits | None = None,
) -> tuple[Site, FixedPv]:
    """A 48 V, 200 Ah bank on a constant PV source at a constant 25 °C, one constant-power load."""
    cells = 16 if chemistry is Chemistry.LIFEPO4 else 24
    battery = Battery(chemistry, 200.0, cells, soc=soc, thermal_mass_j_per_c=1e12)  # temperature stays 25 °C
    pv = FixedPv(pv_w)
    charger = MpptCharger(battery, config or MpptConfig(self_consumption_w=0.0))
    p = battery.params
    port_limits = limits or PortLimits(lvd_v=p.lvd_v * cells, lvr_v=p.lvr_v * cells)
    loads = [(Port("LOAD1", PortKind.LOAD, port_limits), ConstantPowerLoad("load", load_w))]
    site = Site(pv, battery, charger, loads, start=START, ambient=AmbientModel(override=25.0))
    return site, pv


def run_states(site: Site, seconds: float, dt: float = 60.0) -> list[tuple[datetime, ChargeState, float, float]]:
    """Step and record (time, state, battery voltage, battery current) after each step."""
    out = []
    for _ in range(int(seconds / dt)):
        site.step(dt)
        s = site.snapshot()
        out.append((s.time, s.charge_state, s.battery_voltage_v, s.battery_current_a))
    return out


# ---- energy balance ---------------------------------------------------------------------------


@pytest.mark.parametrize("chemistry", [Chemistry.AGM, Chemistry.LIFEPO4])
def test_energy_balance_over_a_week(chemistry: Chemistry) -> None:
    site = Site.default_48v(*KAMPALA, seed=7, altitude_m=1190, chemistry=chemistry, weather=Weather.MIXED)
    site.step(7 * 86400)
    eb = site.energy_balance()
    assert eb.pv_in_wh > 5000 and eb.load_out_wh > 10000
    for loss in (eb.conversion_loss_wh, eb.controller_wh, eb.battery_resistive_wh, eb.coulombic_wh):
        assert loss >= 0
    assert eb.deficit_wh == 0  # the LVD (or the sun) kept the bank off empty
    # Stated tolerance (docs/charger.md): 0.1 % of the energy through the battery terminals.
    assert abs(eb.residual_wh) <= 1e-3 * eb.battery_throughput_wh
    # Loads (84 W + 1.5 W controller) ran the whole week unless disconnected.
    assert eb.load_out_wh <= 84 * 24 * 7 + 1e-6


def test_energy_balance_holds_through_lvd_and_empty_bank() -> None:
    site, _ = bench_site(0.0, soc=0.15, load_w=400.0)
    site.step(2 * 86400)
    eb = site.energy_balance()
    assert site.ports["LOAD1"].lvd_events == 1
    assert abs(eb.residual_wh) <= 1e-3 * eb.battery_throughput_wh


# ---- stages -----------------------------------------------------------------------------------


def test_lead_acid_bulk_absorption_then_float_on_time_limit() -> None:
    site, _ = bench_site(2500.0, soc=0.6, config=MpptConfig(max_charge_current_a=20.0, self_consumption_w=0.0))
    records = run_states(site, 10 * 3600)
    states = [r[1] for r in records]
    first_abs = states.index(ChargeState.ABSORPTION)
    assert first_abs > 60 and set(states[:first_abs]) == {ChargeState.MPPT}
    assert all(r[3] == pytest.approx(20.0) for r in records[:first_abs])  # bulk at the current limit
    # Bulk ends when the battery reaches the absorption voltage: 14.4 V × 4 = 57.6 V at 25 °C.
    assert site.charger.setpoints(25.0).absorption_v == pytest.approx(57.6)
    assert records[first_abs][2] == pytest.approx(57.6, abs=0.01)
    first_float = states.index(ChargeState.FLOAT)
    assert set(states[first_abs:first_float]) == {ChargeState.ABSORPTION}
    # From ~85 % SOC the current has not tailed off yet: the 2.5 h limit ends absorption.
    absorption_s = (records[first_float][0] - records[first_abs][0]).total_seconds()
    assert absorption_s == pytest.approx(2.5 * 3600, abs=61)
    assert records[first_float][3] > 1.5 * 2
    assert records[-1][1] is ChargeState.FLOAT
    assert records[-1][2] == pytest.approx(54.8, abs=0.01)  # float 13.7 V × 4
    assert site.snapshot().oper_state is ChargingOperState.MAINTAINING_CHARGE


def test_absorption_ends_early_when_the_current_tails_off() -> None:
    site, _ = bench_site(2500.0, soc=0.95, config=MpptConfig(max_charge_current_a=20.0, self_consumption_w=0.0))
    records = run_states(site, 6 * 3600)
    states = [r[1] for r in records]
    first_abs, first_float = states.index(ChargeState.ABSORPTION), states.index(ChargeState.FLOAT)
    assert (records[first_float][0] - records[first_abs][0]).total_seconds() < 2 * 3600
    assert records[first_float][3] <= 1.5 * 2 < records[first_float - 1][3]  # 1.5 A per 100 Ah of 200 Ah


def test_lifepo4_stops_at_c10_and_restarts_below_restart_voltage() -> None:
    site, pv = bench_site(3000.0, chemistry=Chemistry.LIFEPO4, soc=0.5, load_w=100.0)
    assert site.charger.setpoints(40.0).absorption_v == pytest.approx(3.55 * 16)  # no temperature compensation
    records = run_states(site, 8 * 3600)
    states = [r[1] for r in records]
    first_abs, stop = states.index(ChargeState.ABSORPTION), states.index(ChargeState.DISCONNECT)
    assert first_abs < stop
    assert records[stop][3] <= 20.0 < records[stop - 1][3]  # the step that stopped it was at C/10 of 200 Ah
    assert ChargeState.FLOAT not in states
    # Resting: PV carries the load, the battery neither charges nor discharges.
    assert abs(records[-1][3]) < 1e-6
    assert site.snapshot().oper_state is ChargingOperState.NO_CHARGING
    # Clouds: PV below the load; the battery discharges until it falls under 3.35 V/cell, then charging resumes.
    pv.power_w = 50.0
    records = run_states(site, 48 * 3600)
    resumed = [r for r in records if r[1] is ChargeState.MPPT]
    assert resumed
    assert resumed[0][2] < 3.35 * 16 + 0.05


def test_equalize_on_request_then_float() -> None:
    site, _ = bench_site(2500.0, soc=0.5)
    site.charger.request_equalize()
    states = [r[1] for r in run_states(site, 12 * 3600)]
    eq = states.index(ChargeState.EQUALIZE)
    assert states[eq - 1] is ChargeState.ABSORPTION
    assert ChargeState.FLOAT in states[eq:]


def test_night_detection() -> None:
    site, pv = bench_site(500.0, soc=0.5)
    site.step(600)
    assert site.charger.state is ChargeState.MPPT
    pv.power_w = 0.0
    site.step(60)
    assert site.charger.state is ChargeState.NIGHT_CHECK
    site.step(600)
    assert site.charger.state is ChargeState.NIGHT
    pv.power_w = 500.0
    site.step(60)
    assert site.charger.state is ChargeState.MPPT


# ---- temperature compensation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("temp_c", "absorption", "float_v", "equalize"),
    [
        (25.0, 57.6, 54.8, 60.4),
        (35.0, 57.6 - 0.72, 54.8 - 0.72, 60.4 - 0.72),  # −3 mV/°C/cell × 24 cells × 10 °C
        (0.0, 57.6 + 1.8, 54.8 + 1.8, 60.4 + 1.8),
        (-30.0, 57.6 + 3.24, 54.8 + 3.24, 60.4 + 3.24),  # clamped at −20 °C
    ],
)
def test_temperature_compensation_agm_48v(temp_c: float, absorption: float, float_v: float, equalize: float) -> None:
    sp = MpptCharger(Battery(Chemistry.AGM, 200, 24)).setpoints(temp_c)
    assert sp.absorption_v == pytest.approx(absorption)
    assert sp.float_v == pytest.approx(float_v)
    assert sp.equalize_v == pytest.approx(equalize)


def test_setpoints_12v_flooded_and_lifepo4() -> None:
    sp = MpptCharger(Battery(Chemistry.FLOODED, 100, 6)).setpoints(25.0)
    assert (sp.absorption_v, sp.float_v, sp.equalize_v) == pytest.approx((14.6, 13.5, 15.3))
    lfp = MpptCharger(Battery(Chemistry.LIFEPO4, 100, 4)).setpoints(10.0)
    assert lfp.absorption_v == pytest.approx(14.2)
    assert lfp.float_v is None


# ---- LVD / LVR --------------------------------------------------------------------------------


def test_lvd_lvr_hysteresis_no_oscillation() -> None:
    site, pv = bench_site(0.0, soc=0.3, load_w=300.0)
    port = site.ports["LOAD1"]
    voltages = []
    for _ in range(24 * 60):
        site.step(60)
        voltages.append(site.battery.voltage_v)
        if port.alerts.low_voltage_disconnect:
            break
    assert port.lvd_events == 1
    # The step that saw the voltage under the 46.8 V LVD (1.95 V/cell) for its 30 s delay disconnected.
    assert voltages[-2] < 46.8 <= voltages[-3]
    assert voltages[-1] > voltages[-2]  # the I·R drop recovers
    assert not port.output_on
    # The load is off: the voltage recovers by the I·R drop but stays below the 50.4 V LVR all night.
    site.step(12 * 3600)
    assert port.lvd_events == 1 and port.lvr_events == 0
    assert site.battery.voltage_v < 50.4
    assert site.snapshot().port("LOAD1").current_a == 0.0
    # The sun returns: charging lifts the voltage above LVR, the port reconnects once and stays on.
    pv.power_w = 1500.0
    site.step(8 * 3600)
    assert port.lvr_events == 1 and port.lvd_events == 1
    assert port.output_on
    assert port.alerts.low_voltage_reconnect and not port.alerts.low_voltage_disconnect


def test_lifepo4_lvd_default_is_48v() -> None:
    b = Battery(Chemistry.LIFEPO4, 200, 16)
    assert b.params.lvd_v * 16 == pytest.approx(48.0)
    assert b.params.lvr_v * 16 == pytest.approx(50.4)


def test_lvd_setpoints_must_have_hysteresis() -> None:
    with pytest.raises(ValueError, match="reconnect"):
        PortLimits(lvd_v=48.0, lvr_v=44.0)


# ---- battery: cycles, fade, OCV ---------------------------------------------------------------


def test_cycle_count_three_partial_discharges_of_40_percent() -> None:
    b = Battery(Chemistry.LIFEPO4, 200.0, 16, soc=1.0)
    t = START
    crossing = None
    for _ in range(3):
        for _ in range(120):  # 40 A for 2 h = 80 Ah = 40 % of design capacity
            t += timedelta(minutes=1)
            b.step(-40.0, 60.0, 25.0, t)
            if crossing is None and b.cycle_count == 1:
                crossing = t
        for _ in range(240):  # recharge (charging does not count)
            t += timedelta(minutes=1)
            b.step(25.0, 60.0, 25.0, t)
    assert b.cycles == pytest.approx(1.2)
    assert b.cycle_count == 1
    # The 200th Ah was drawn 1 h into the third discharge (two 80 Ah discharges + 40 Ah).
    assert crossing is not None
    assert abs((crossing - (START + timedelta(hours=6 + 6 + 1))).total_seconds()) <= 60  # within one step
    assert b.last_cycle_time == crossing


def test_capacity_fades_with_cycles() -> None:
    b = Battery(Chemistry.AGM, 100.0, 6, soc=1.0)
    capacities = [b.capacity_ah]
    for _ in range(6):
        b.discharged_ah += 100 * 100  # 100 cycles
        capacities.append(b.capacity_ah)
    assert capacities == sorted(capacities, reverse=True) and capacities[0] > capacities[-1]
    assert b.cycles == pytest.approx(600)
    assert b.capacity_ah == pytest.approx(100 * (1 - FADE_AT_RATED_CYCLES))  # 80 % at the rated 600 cycles


def test_ocv_matches_field_notes() -> None:
    lead = Battery(Chemistry.AGM, 100, 6)
    for soc, volts in ((1.0, 12.7), (0.5, 12.2), (0.0, 11.8)):
        assert lead.ocv_cell(soc) * 6 == pytest.approx(volts)
    lfp = Battery(Chemistry.LIFEPO4, 100, 4)
    for soc, volts in ((0.99, 13.6), (0.7, 13.3), (0.4, 13.2), (0.3, 13.0), (0.2, 12.8), (0.1, 12.0), (0.0, 10.0)):
        assert lfp.ocv_cell(soc) * 4 == pytest.approx(volts)


def test_terminal_voltage_follows_current() -> None:
    b = Battery(Chemistry.AGM, 200, 24, soc=0.5)
    ocv = b.open_circuit_voltage()
    assert b.terminal_voltage(10.0) > ocv > b.terminal_voltage(-10.0)
    assert b.current_for_voltage(b.terminal_voltage(7.5)) == pytest.approx(7.5)


def test_coulomb_counting_with_charge_efficiency() -> None:
    b = Battery(Chemistry.AGM, 200, 24, soc=0.5)
    b.params = b.params.__class__(**{**_params_dict(b), "self_discharge_per_day": 0.0})
    b.step(10.0, 3600.0, 25.0)
    assert b.charge_ah == pytest.approx(100 + 10 * 0.92)
    b.step(-10.0, 3600.0, 25.0)
    assert b.charge_ah == pytest.approx(100 + 10 * 0.92 - 10)


def _params_dict(b: Battery) -> dict[str, object]:
    return {name: getattr(b.params, name) for name in b.params.__dataclass_fields__}


# ---- port protections -------------------------------------------------------------------------


def test_short_circuit_trips_at_once_and_latches() -> None:
    site, _ = bench_site(1000.0, soc=0.7, load_w=50.0, limits=PortLimits(short_circuit_a=60.0))
    site.step(60)
    load = site.loads["LOAD1"]
    port = site.ports["LOAD1"]
    assert site.snapshot().port("LOAD1").current_a > 0
    load.short_circuit = True
    site.step(1)
    assert port.alerts.short_circuit and not port.output_on
    assert site.snapshot().port("LOAD1").current_a == 0.0
    load.short_circuit = False  # the fault is gone, the trip is not
    site.step(600)
    assert port.alerts.short_circuit and not port.output_on
    port.set_switch(False)
    port.set_switch(True)
    site.step(60)
    assert not port.alerts.short_circuit and port.output_on
    assert site.snapshot().port("LOAD1").current_a > 0


def test_over_current_trips_after_its_delay() -> None:
    port = Port("P", PortKind.LOAD, PortLimits(over_current_a=10.0, over_current_delay_s=2.0))
    assert port.check_current(12.0, 1.0)
    assert not port.alerts.over_current and port.output_on
    port.check_current(9.0, 1.0)  # back under the limit: the delay starts again
    port.check_current(12.0, 1.0)
    assert port.output_on
    port.check_current(12.0, 1.0)
    assert port.alerts.over_current and not port.output_on
    port.check_current(0.0, 10.0)
    assert not port.output_on  # latched
    port.reset()
    assert port.output_on and not port.alerts.over_current


def test_over_current_trips_in_the_site() -> None:
    battery = Battery(Chemistry.AGM, 200, 24, soc=0.8, thermal_mass_j_per_c=1e12)
    limits = PortLimits(over_current_a=10.0, over_current_delay_s=2.0)
    loads = [(Port("LOAD1", PortKind.LOAD, limits), ConstantCurrentLoad("heater", 12.0))]
    site = Site(FixedPv(0.0), battery, MpptCharger(battery), loads, start=START, ambient=AmbientModel(override=25))
    site.step(1.5)  # three 0.5 s steps of 12 A: still on
    assert site.ports["LOAD1"].output_on
    site.step(0.5)
    assert site.ports["LOAD1"].alerts.over_current
    assert not site.ports["LOAD1"].output_on


def test_overload_i2t() -> None:
    port = Port("P", PortKind.LOAD, PortLimits(continuous_a=10.0, overload_time_s=60.0))
    for _ in range(200):
        port.check_current(10.0, 1.0)  # at the rating: never trips
    assert port.output_on
    for _ in range(19):
        port.check_current(20.0, 1.0)  # 2× the rating trips after 60/3 = 20 s
    assert port.output_on
    port.check_current(20.0, 1.0)
    assert port.alerts.overload and not port.output_on


def test_over_voltage_and_injected_faults() -> None:
    port = Port("P", PortKind.LOAD, PortLimits(over_voltage_v=62.4))
    port.check_voltage(63.0, 1.0, START)
    assert port.alerts.over_voltage and not port.output_on
    port.check_voltage(55.0, 1.0, START)
    assert not port.alerts.over_voltage and port.output_on
    port.inject_fault("reverse_polarity")
    assert port.alerts.reverse_polarity and not port.output_on
    port.inject_fault("reverse_polarity", False)
    port.inject_fault("sensor_fault")
    assert port.output_on and port.alerts.active() == ("sensor_fault",)


def test_open_circuit_alert() -> None:
    site, _ = bench_site(1000.0, soc=0.7, load_w=50.0)
    site.loads["LOAD1"].connected = False
    site.step(60)
    snap = site.snapshot().port("LOAD1")
    assert snap.alerts.open_circuit and snap.current_a == 0.0


def test_battery_port_is_not_switchable() -> None:
    site, _ = bench_site(0.0)
    with pytest.raises(ValueError, match="cannot be switched"):
        site.ports["BATT"].set_switch(False)


# ---- snapshot and sign conventions --------------------------------------------------------------


def test_snapshot_signs_and_rfc7577_states() -> None:
    site, pv = bench_site(1000.0, soc=0.5, load_w=100.0)
    site.step(600)
    s = site.snapshot()
    assert s.charge_state is ChargeState.MPPT
    assert s.oper_state is ChargingOperState.CHARGING
    assert s.port("PV").current_a < 0 < s.pv_current_a  # into the charger: negative on the port
    assert s.port("BATT").current_a == s.battery_current_a > 0
    assert s.port("LOAD1").current_a > 0
    assert s.pv_power_w == pytest.approx(1000.0)
    # At the MPP the PV port's V·I is the power taken from the array.
    assert s.pv_voltage_v * s.pv_current_a == pytest.approx(s.pv_power_w)
    pv.power_w = 0.0
    site.step(60)
    assert site.snapshot().oper_state is ChargingOperState.DISCHARGING


def test_admin_do_not_charge_feeds_loads_only() -> None:
    from spmp.charger import ChargingAdminState

    site, _ = bench_site(1000.0, soc=0.5, load_w=100.0)
    site.charger.admin_state = ChargingAdminState.DO_NOT_CHARGE
    site.step(600)
    s = site.snapshot()
    assert s.charge_state is ChargeState.DISCONNECT
    assert abs(s.battery_current_a) < 1e-9
    assert s.load_power_w == pytest.approx(100.0)
    site.charger.admin_state = ChargingAdminState.NOT_SET
    site.step(60)
    assert site.snapshot().battery_current_a > 0


def test_small_12v_preset_runs_a_day() -> None:
    site = Site.small_12v(*KAMPALA, seed=1)
    site.step(86400)
    s = site.snapshot()
    assert 11.0 < s.battery_voltage_v < 15.5
    assert s.design_capacity_ah == 150.0
    assert abs(site.energy_balance().residual_wh) <= 1e-3 * site.energy_balance().battery_throughput_wh
