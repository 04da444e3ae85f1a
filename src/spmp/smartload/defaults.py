"""The default smart-load rule set for a 48 V lead-acid site (docs/smart-load.md explains the choice).

A 24-cell lead-acid bank rests near 50.4 V full (2.10 V/cell) and 48.0 V around half charge under a
BTS-sized load (2.00 V/cell); the low-voltage disconnect of the charger is typically 44–45 V
(1.85 V/cell). Between the two, the rules shed the base station's draw in steps, the cheapest
loss of service first (field notes: RF chains and output power dominate a BTS's draw):

========  ==============================================  ==================================
Voltage   Action                                           Target
========  ==============================================  ==================================
48.0 V    RF power output −3 dB (half the PA output)       26244/i/11 RF Power Output
47.0 V    LTE data off, EDGE data off                      26244/i/5, 26244/i/6
46.5 V    one transceiver chain off                        26244/i/1 Transceiver Chain Enabled
46.0 V    emergency calls only                             26244/i/9 Emergency Calls Only
45.5 V    non-priority port off                            3201/p/5550 Digital Output State
========  ==============================================  ==================================

Every rule keeps the default hysteresis (2 % of its threshold: about 0.9–1 V, i.e. the bank must
recover to ~2.04 V/cell before a step is undone) and the default dwell (300 s).
"""

from __future__ import annotations

from dataclasses import dataclass

from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.smart_load import SmartLoadBtsResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import Value
from spmp.smartload.rules import rule_resources

__all__ = ["DEFAULT_RULES", "DefaultRule", "default_rule_resources", "default_rules"]

DIGITAL_OUTPUT_STATE = 5550
NOMINAL_RF_DBM = 43.0
"""20 W per chain at the antenna connector, a common macro GSM/LTE setting."""


@dataclass(frozen=True, slots=True)
class DefaultRule:
    """One default rule, readable: what it writes where, and why."""

    threshold: float
    target: Path
    value: str
    type_name: str
    purpose: str

    def resources(self) -> dict[int, Value]:
        """The Smart Load Rules instance resources (Value as its plain-text encoding)."""
        return rule_resources(self.threshold, self.target, self.value, self.type_name)


def default_rules(
    *, bts_instance: int = 0, shed_port: int = 1, nominal_rf_dbm: float = NOMINAL_RF_DBM
) -> list[DefaultRule]:
    """The default rule set for the BTS instance ``bts_instance`` and the non-priority port ``shed_port``."""
    bts = ids.SMART_LOAD_BTS
    b = SmartLoadBtsResource

    def knob(resource: SmartLoadBtsResource) -> Path:
        return Path.of(bts, bts_instance, int(resource))

    reduced = nominal_rf_dbm - 3.0
    return [
        DefaultRule(48.0, knob(b.RF_POWER_OUTPUT), f"{reduced:g}", "Float", "RF power output −3 dB"),
        DefaultRule(47.0, knob(b.LTE_DATA_ENABLED), "0", "Boolean", "LTE data off"),
        DefaultRule(47.0, knob(b.EDGE_DATA_ENABLED), "0", "Boolean", "EDGE data off"),
        DefaultRule(46.5, knob(b.TRANSCEIVER_CHAIN_ENABLED), "0", "Boolean", "one transceiver chain off"),
        DefaultRule(46.0, knob(b.EMERGENCY_CALLS_ONLY), "1", "Boolean", "emergency calls only"),
        DefaultRule(
            45.5,
            Path.of(ids.DIGITAL_OUTPUT, shed_port, DIGITAL_OUTPUT_STATE),
            "0",
            "Boolean",
            "non-priority port off",
        ),
    ]


def default_rule_resources(
    *, bts_instance: int = 0, shed_port: int = 1, nominal_rf_dbm: float = NOMINAL_RF_DBM
) -> list[dict[int, Value]]:
    """The default rules as Smart Load Rules instance resources, instance ids in list order."""
    rules = default_rules(bts_instance=bts_instance, shed_port=shed_port, nominal_rf_dbm=nominal_rf_dbm)
    return [rule.resources() for rule in rules]


DEFAULT_RULES: tuple[DefaultRule, ...] = tuple(default_rules())
