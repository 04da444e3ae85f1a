"""The default smart-load rule set, placed in the site's own voltage band (docs/smart-load.md explains it).

The rules must act while the battery still has energy, well above the charger's low-voltage disconnect
(LVD): a step that sits below the LVD can never fire, and one just above it buys nothing. So the
thresholds are not fixed numbers but derived from the bank (chemistry, cells) and the LVD the site's
load ports actually use (:func:`saving_band`):

* **start saving** (the first, cheapest step): a resting voltage of about 60 % charge for lead-acid
  (2.05 V/cell, 49.2 V for 24 cells), about 30 % for LiFePO4 (3.25 V/cell, 52.0 V for 16 cells), whose
  curve is flat in the middle and says little before that;
* **last step**: the LVD plus a margin (lead-acid 0.02 V/cell, 0.48 V for 24 cells; LiFePO4
  0.10 V/cell), enough for the last rule's confirmation (60 s) before the load sags to the LVD.

The steps, the cheapest loss of service that saves the most first (field notes: RF chains and output
power dominate a BTS's draw), at fractions of the band from its top:

====  ==============================================  ==================================
Band  Action                                           Target
====  ==============================================  ==================================
0     RF power output −3 dB from the BTS's own setting  26244/i/11 RF Power Output
1/4   LTE data off, EDGE data off                      26244/i/5, 26244/i/6
1/2   one transceiver chain off                        26244/i/1 Transceiver Chain Enabled
4/5   emergency calls only                             26244/i/9 Emergency Calls Only
1     non-priority port off                            3201/p/5550 Digital Output State
====  ==============================================  ==================================

For the simulated 48 V lead-acid site (24 cells, LVD 1.95 V/cell = 46.8 V): 49.2, 48.72, 48.24, 47.66
and 47.28 V. Emergency-only sits low in the band (4/5) on purpose: it costs the most service, and
`spmp scenario poor-sun` shows that placed there the site keeps full service at least as long as a site
without rules, and emergency service long after that one went dark. Every rule keeps the default
hysteresis (2 % of its threshold, about 1 V) and dwell (300 s).

The RF rule writes a value, not a step: it is the BTS's RF power output *at the time the rules are
made* minus :data:`RF_STEP_DB`, so ``rf_power_dbm`` is required (the charger reads it from the BTS
first; a macro BTS at 43 dBm gets 40, the SPMP BTS at its factory 33 dBm gets 30). Writing a fixed
value could raise the power of a BTS that was set lower.
"""

from __future__ import annotations

from dataclasses import dataclass

from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.smart_load import SmartLoadBtsResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import Value
from spmp.smartload.rules import rule_resources

__all__ = [
    "DEFAULT_RULES",
    "EXAMPLE_RF_DBM",
    "RF_STEP_DB",
    "DefaultRule",
    "SavingBand",
    "default_rule_resources",
    "default_rules",
    "saving_band",
]

DIGITAL_OUTPUT_STATE = 5550
RF_STEP_DB = 3.0
"""The RF rule's reduction: −3 dB halves the PA's output and shrinks the cell edge a little."""
EXAMPLE_RF_DBM = 33.0
"""The SPMP BTS's factory RF power output (per chain); used only by :data:`DEFAULT_RULES`."""

DEFAULT_LVD_V_PER_CELL = {"agm": 1.95, "flooded": 1.95, "lifepo4": 3.0}
"""Low-voltage disconnect per cell when the caller gives none: the same defaults as the charger's
ports (NOTES: 46.8 V lead-acid, 48.0 V LiFePO4 16S). Chemistries are named by string so this
package stays below the charger (the charger depends on smart load, not the other way round)."""
START_SAVING_V_PER_CELL = {"agm": 2.05, "flooded": 2.05, "lifepo4": 3.25}
"""The first step: lead-acid ~60 % charge at rest, LiFePO4 ~30 % (its plateau hides the rest)."""
LVD_MARGIN_V_PER_CELL = {"agm": 0.02, "flooded": 0.02, "lifepo4": 0.10}
"""The last step sits this far above the LVD."""
STEP_FRACTIONS = (0.0, 0.25, 0.25, 0.5, 0.8, 1.0)
"""Where each default rule sits in the band, from its top (rule order of :func:`default_rules`)."""


@dataclass(frozen=True, slots=True)
class SavingBand:
    """The voltages between which the default rules shed the site's load."""

    start_v: float
    """The first (cheapest) step."""
    last_v: float
    """The last step: the LVD plus a margin."""
    lvd_v: float

    def at(self, fraction: float) -> float:
        """The threshold ``fraction`` of the way down the band (0: start, 1: last), to the centivolt."""
        return round(self.start_v - fraction * (self.start_v - self.last_v), 2)


def saving_band(chemistry: str = "agm", cells: int = 24, lvd_v: float | None = None) -> SavingBand:
    """The band for a bank of ``cells`` cells whose loads disconnect at ``lvd_v`` (default: the chemistry's).

    ``chemistry`` is ``"agm"``, ``"flooded"`` or ``"lifepo4"``. ValueError when the LVD leaves no
    room (the start-saving voltage is not above LVD + margin) or the chemistry is unknown.
    """
    if cells <= 0:
        raise ValueError(f"cells must be positive, got {cells}")
    if chemistry not in START_SAVING_V_PER_CELL:
        raise ValueError(f"unknown chemistry {chemistry!r}: use one of {', '.join(START_SAVING_V_PER_CELL)}")
    lvd = DEFAULT_LVD_V_PER_CELL[chemistry] * cells if lvd_v is None else lvd_v
    start = round(START_SAVING_V_PER_CELL[chemistry] * cells, 2)
    last = round(lvd + LVD_MARGIN_V_PER_CELL[chemistry] * cells, 2)
    if start <= last:
        raise ValueError(
            f"the low-voltage disconnect {lvd:g} V leaves no room for smart-load steps: they would have to act "
            f"between {start:g} V and {last:g} V"
        )
    return SavingBand(start, last, lvd)


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
    *,
    rf_power_dbm: float | None,
    chemistry: str = "agm",
    cells: int = 24,
    lvd_v: float | None = None,
    bts_instance: int = 0,
    shed_port: int | None = 1,
) -> list[DefaultRule]:
    """The default rules for the BTS instance ``bts_instance`` and the non-priority port ``shed_port``.

    ``rf_power_dbm`` is the BTS's RF power output now; the RF rule writes it minus :data:`RF_STEP_DB`
    (None: unknown, the RF rule is left out rather than guessed). ``shed_port`` None: no port rule.
    The thresholds come from :func:`saving_band` (``chemistry``, ``cells``, ``lvd_v``).
    """
    band = saving_band(chemistry, cells, lvd_v)
    b = SmartLoadBtsResource
    f = STEP_FRACTIONS

    def knob(resource: SmartLoadBtsResource) -> Path:
        return Path.of(ids.SMART_LOAD_BTS, bts_instance, int(resource))

    rules: list[DefaultRule] = []
    if rf_power_dbm is not None:
        reduced = max(0.0, rf_power_dbm - RF_STEP_DB)
        rules.append(
            DefaultRule(band.at(f[0]), knob(b.RF_POWER_OUTPUT), f"{reduced:g}", "Float", "RF power output −3 dB")
        )
    rules += [
        DefaultRule(band.at(f[1]), knob(b.LTE_DATA_ENABLED), "0", "Boolean", "LTE data off"),
        DefaultRule(band.at(f[2]), knob(b.EDGE_DATA_ENABLED), "0", "Boolean", "EDGE data off"),
        DefaultRule(band.at(f[3]), knob(b.TRANSCEIVER_CHAIN_ENABLED), "0", "Boolean", "one transceiver chain off"),
        DefaultRule(band.at(f[4]), knob(b.EMERGENCY_CALLS_ONLY), "1", "Boolean", "emergency calls only"),
    ]
    if shed_port is not None:
        port = Path.of(ids.DIGITAL_OUTPUT, shed_port, DIGITAL_OUTPUT_STATE)
        rules.append(DefaultRule(band.at(f[5]), port, "0", "Boolean", "non-priority port off"))
    return rules


def default_rule_resources(
    *,
    rf_power_dbm: float | None = EXAMPLE_RF_DBM,
    chemistry: str = "agm",
    cells: int = 24,
    lvd_v: float | None = None,
    bts_instance: int = 0,
    shed_port: int | None = 1,
) -> list[dict[int, Value]]:
    """The default rules as Smart Load Rules instance resources, instance ids in list order."""
    rules = default_rules(
        rf_power_dbm=rf_power_dbm,
        chemistry=chemistry,
        cells=cells,
        lvd_v=lvd_v,
        bts_instance=bts_instance,
        shed_port=shed_port,
    )
    return [rule.resources() for rule in rules]


DEFAULT_RULES: tuple[DefaultRule, ...] = tuple(default_rules(rf_power_dbm=EXAMPLE_RF_DBM, shed_port=3))
"""The worked example of docs/smart-load.md: the simulated 48 V AGM site (24 cells, LVD 46.8 V, LOAD2 =
port 3 shed) with the SPMP BTS at its factory 33 dBm."""
