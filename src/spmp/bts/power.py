"""How much power a BTS draws with a given configuration (pure; the formula is in docs/bts.md).

Calibrated on published figures: an OpenCellular-class small site draws ~37-40 W with two chains at
2 W RF each (baseband 7-9 W, RF board 25-32 W); a GSM BTS with a 10 W power amplifier draws ~69 W,
the PA ~65 % of it. The PA transmits the beacon whatever the traffic, so what saves power is turning
chains off or down, duty-cycling and sleeping; data services, backhaul and users add little.

While in service the BTS draws ``in_service_watts``; in the off phase of its duty cycle and asleep it
draws ``standby_watts``; :func:`power_draw_watts` is the average of the two over the duty cycle.
"""

from __future__ import annotations

from spmp.bts.model import BtsConfig

__all__ = [
    "DEFAULT_DEMAND_USERS",
    "dbm_to_watts",
    "in_service_watts",
    "power_draw_watts",
    "serving_users",
    "standby_watts",
]

BASEBAND_W = 7.0  # baseband board (CPU, DSP, clocks) with no carrier
BASEBAND_W_PER_MHZ = 0.1  # more bandwidth, more PRBs to process: 7.1 W at 1.4 MHz, 9 W at 20 MHz
RF_BOARD_W = 2.0  # shared RF board circuitry (synthesiser, fans) while any chain is on
CHAIN_STATIC_W = 3.5  # per enabled chain: transceiver, LNA and PA bias, independent of output power
PA_EFFICIENCY = 0.25  # DC to RF, class-AB PA: 2 W out costs 8 W in (10 W out: 40 W, ~65 % of 69 W)
BACKHAUL_W = 2.0  # a small point-to-point radio or modem; kept on while asleep so the site can be woken
LOGGING_W = 0.3  # flash writes and CPU
SOFTWARE_UPDATES_W = 0.2  # the update agent polling and downloading
LTE_DATA_W = 1.0  # data bearers' baseband load; zero when emergency-only (no data service then)
EDGE_DATA_W = 0.4
GPRS_DATA_W = 0.3
PER_USER_W = 0.03  # scheduler and signalling per served user
STANDBY_W = 1.5  # asleep or off-duty: the wake-up controller only
DEFAULT_DEMAND_USERS = 32  # simulated offered load: users who want service when the BTS is on air


def dbm_to_watts(dbm: float) -> float:
    """Convert dBm to watts (30 dBm = 1 W)."""
    return float(10 ** ((dbm - 30.0) / 10.0))


def serving_users(config: BtsConfig, demand: int = DEFAULT_DEMAND_USERS) -> int:
    """Users served while on air: the demand up to user-limit; none when emergency-only or no chain is on."""
    if config.emergency_calls_only or not any(c.enabled for c in config.chains):
        return 0
    return min(demand, config.user_limit)


def standby_watts(config: BtsConfig) -> float:
    """Draw while asleep or in the off phase of the duty cycle."""
    return STANDBY_W + (BACKHAUL_W if config.backhaul_enabled else 0.0)


def in_service_watts(config: BtsConfig, demand: int = DEFAULT_DEMAND_USERS) -> float:
    """Draw while in service (awake, in the on phase of the duty cycle)."""
    watts = BASEBAND_W + BASEBAND_W_PER_MHZ * float(config.channel_bandwidth_mhz)
    watts += LOGGING_W * config.logging_enabled + SOFTWARE_UPDATES_W * config.software_updates_enabled
    watts += BACKHAUL_W * config.backhaul_enabled
    if not config.emergency_calls_only:
        watts += LTE_DATA_W * config.lte_data_enabled
        watts += EDGE_DATA_W * config.edge_data_enabled + GPRS_DATA_W * config.gprs_data_enabled
    watts += PER_USER_W * serving_users(config, demand)
    enabled = [c for c in config.chains if c.enabled]
    if enabled:
        watts += RF_BOARD_W
    for chain in enabled:
        watts += CHAIN_STATIC_W + dbm_to_watts(float(chain.rf_power_output_dbm)) / PA_EFFICIENCY
    return watts


def power_draw_watts(config: BtsConfig, demand: int = DEFAULT_DEMAND_USERS) -> float:
    """Average draw in watts: in-service and standby draw weighted by the duty cycle; standby when asleep."""
    if config.sleep:
        return standby_watts(config)
    on = config.duty_cycle_percent / 100.0
    return on * in_service_watts(config, demand) + (1.0 - on) * standby_watts(config)
