"""The closed-loop smart-load scenario: a 48 V site through days of poor sun, with rules and without.

``spmp scenario poor-sun`` runs :func:`run_poor_sun` twice on the same site, weather and seed: once
with the default rule set (:mod:`spmp.smartload.defaults`) driving an in-process BTS
(:class:`~spmp.bts.BtsDevice`, the same power model as ``spmp bts``) through the SPMP mapping
(``maps/spmp-bts.toml``) and the non-priority port's switch, once with no rules. No networking and a
manual clock: the physics (``Site.step``), the rules engine and its executor run in one loop, one
sample a minute, as fast as the CPU goes. The result table goes into docs/smart-load.md between
markers (:func:`write_results`).

The site (:func:`scenario_site`) is the standard preset ``Site.default_48v``, the site ``spmp demo`` and
``spmp charger`` simulate (the same 24-cell AGM bank, port protections with its low-voltage disconnect
at 1.95 V/cell = 46.8 V and reconnect at 2.10 V/cell, loads), sized smaller so that three poor days
matter: a 400 Wp array and a 100 Ah bank starting at 50 % (about two days of the full load). The BTS
is on LOAD1 (its draw is the BTS's ``power_draw_watts``) and a 15 W backhaul radio on LOAD2 (the
non-priority port the last rule switches off). The rules are the ones the charger makes for that site
(:func:`spmp.smartload.defaults.default_rules` from its chemistry, cells and LVD, RF relative to the
BTS's own setting).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path as FilePath

from spmp.bts import BtsDevice
from spmp.charger.loads import BtsLoad
from spmp.charger.netconf.mapping import BtsMapping, load_builtin_mapping
from spmp.charger.pv import Weather
from spmp.charger.site import Site
from spmp.lwm2m.objects import ids
from spmp.lwm2m.path import Path
from spmp.lwm2m.response import ResponseCode
from spmp.lwm2m.values import Value
from spmp.smartload.defaults import default_rules
from spmp.smartload.executor import SmartLoadExecutor, TargetError
from spmp.smartload.rules import RuleEngine, parse_rule

__all__ = [
    "BEGIN_MARK",
    "END_MARK",
    "LocalBtsWriter",
    "ScenarioResult",
    "poor_sun_table",
    "run_poor_sun",
    "scenario_site",
    "write_results",
]

BEGIN_MARK = "<!-- spmp scenario poor-sun: begin (generated, do not edit) -->"
END_MARK = "<!-- spmp scenario poor-sun: end -->"
BTS_PORT = "LOAD1"
SHED_PORT = "LOAD2"
SAMPLE_S = 60.0


def scenario_site(
    *,
    capacity_ah: float = 100.0,
    pv_wp: float = 400.0,
    soc: float = 0.5,
    seed: int = 1,
    weather: Weather = Weather.POOR,
    start: datetime | None = None,
    lat: float = -1.29,
    lon: float = 36.82,
    bts_draw: Callable[[], float] | None = None,
) -> Site:
    """The scenario's 48 V site (see the module docstring); ``bts_draw`` feeds the BTS port."""
    if start is None:  # local midnight at the site: the first night is the first test
        start = datetime(2024, 6, 1, tzinfo=UTC) - timedelta(hours=lon / 15.0)
    site = Site.default_48v(lat, lon, seed, start=start, weather=weather, soc=soc, capacity_ah=capacity_ah, pv_wp=pv_wp)
    bts = site.loads[BTS_PORT]
    assert isinstance(bts, BtsLoad)
    if bts_draw is not None:
        bts.draw = bts_draw
    return site


class LocalBtsWriter:
    """A TargetWriter without a network: Smart Load (BTS) through the mapping into a BtsDevice, and
    Digital Output State into the site's port switches (instance id = port index, as on the charger)."""

    def __init__(self, bts: BtsDevice, site: Site, mapping: BtsMapping | None = None) -> None:
        self.bts = bts
        self.site = site
        self.mapping = mapping or load_builtin_mapping()
        self.port_names = list(site.ports)

    async def read(self, path: Path) -> Value:
        assert path.instance_id is not None and path.resource_id is not None
        if path.object_id == ids.DIGITAL_OUTPUT:
            return self.site.ports[self.port_names[path.instance_id]].switch_on
        data = self.bts.running()
        value = self.mapping.read_values(data, path.instance_id).get(path.resource_id)
        if value is None:
            raise TargetError(ResponseCode.NOT_FOUND, f"{path}: no value")
        return value

    async def write(self, path: Path, value: Value) -> None:
        assert path.instance_id is not None and path.resource_id is not None
        if path.object_id == ids.DIGITAL_OUTPUT:
            assert isinstance(value, bool)
            self.site.ports[self.port_names[path.instance_id]].set_switch(value)
            return
        self.bts.edit(self.mapping.edit({path.resource_id: value}, path.instance_id, self.bts.running()))


@dataclass
class ScenarioResult:
    """What one run measured (hours are simulated hours)."""

    rules: bool
    hours: float
    on_air_h: float = 0.0
    """The BTS powered and on air with full service (not emergency-calls-only)."""
    emergency_h: float = 0.0
    """The BTS powered and on air in any mode: at least emergency calls."""
    min_soc: float = 1.0
    load_wh: float = 0.0
    bts_wh: float = 0.0
    pv_wh: float = 0.0
    lvd_events: int = 0
    final_soc: float = 0.0
    events: list[str] = field(default_factory=list)
    """Rule activations and restores, and load disconnects, with their simulated time."""


def _rules_engine(site: Site, rf_power_dbm: float) -> RuleEngine:
    from spmp.lwm2m.objects import default_registry  # noqa: PLC0415 - the full registry only here

    engine = RuleEngine()
    shed = list(site.ports).index(SHED_PORT)  # the Digital Output instance id on the charger (port index)
    battery = site.battery
    rules = default_rules(
        rf_power_dbm=rf_power_dbm,
        chemistry=battery.chemistry.value,
        cells=battery.cells,
        lvd_v=site.ports[BTS_PORT].limits.lvd_v,
        shed_port=shed,
    )
    for index, rule in enumerate(rules):
        engine.set_rule(parse_rule(index, rule.resources(), default_registry()), 0.0)
    return engine


async def _run(days: float, seed: int, with_rules: bool, site_options: dict[str, object]) -> ScenarioResult:
    elapsed = [0.0]
    bts = BtsDevice(clock=lambda: elapsed[0])
    site = scenario_site(seed=seed, bts_draw=lambda: bts.power_draw_watts, **site_options)  # type: ignore[arg-type]
    mapping = load_builtin_mapping()
    start = site.now
    executor: SmartLoadExecutor | None = None
    if with_rules:
        rf = float(bts.config.chains[0].rf_power_output_dbm) if bts.config.chains else 33.0
        engine = _rules_engine(site, rf)
        executor = SmartLoadExecutor(engine, LocalBtsWriter(bts, site, mapping), clock=lambda: elapsed[0])
    result = ScenarioResult(with_rules, days * 24)
    bts_port = site.ports[BTS_PORT]
    active: set[int] = set()
    was_on = True
    steps = round(days * 86400 / SAMPLE_S)
    h = SAMPLE_S / 3600
    for _ in range(steps):
        site.step(SAMPLE_S)
        elapsed[0] += SAMPLE_S
        snap = site.snapshot()
        stamp = (site.now - start).total_seconds() / 3600
        if executor is not None:
            executor.sample(snap.battery_voltage_v)
            await executor.settle()
            now_active = {r.id for r in executor.engine.rules() if executor.engine.is_active(r.id)}
            for rule in executor.engine.rules():
                if (rule.id in now_active) != (rule.id in active):
                    verb = "fires" if rule.id in now_active else "clears"
                    result.events.append(
                        f"{stamp:5.1f} h  {snap.battery_voltage_v:5.2f} V  rule {rule.id} ({rule.threshold:g} V) {verb}"
                    )
            active = now_active
        powered = bts_port.output_on
        if powered != was_on:
            result.events.append(
                f"{stamp:5.1f} h  {snap.battery_voltage_v:5.2f} V  load ports "
                + ("reconnected" if powered else "disconnected (LVD)")
            )
            was_on = powered
        state = bts.state()
        on_air = powered and state.on_air
        if on_air:
            result.emergency_h += h
            if not bts.config.emergency_calls_only:
                result.on_air_h += h
        if powered:
            result.bts_wh += bts.power_draw_watts * h
        result.min_soc = min(result.min_soc, snap.soc)
    balance = site.energy_balance()
    result.load_wh = balance.load_out_wh
    result.pv_wh = balance.pv_in_wh
    result.lvd_events = bts_port.lvd_events
    result.final_soc = site.battery.soc
    return result


def run_poor_sun(days: float = 3.0, seed: int = 1, *, rules: bool = True, **site_options: object) -> ScenarioResult:
    """One run of the scenario (synchronous; it runs its own event loop for the executor)."""
    return asyncio.run(_run(days, seed, rules, dict(site_options)))


def poor_sun_table(with_rules: ScenarioResult, without: ScenarioResult, *, days: float, seed: int) -> str:
    """The results as Markdown (what goes between the markers)."""
    rows = [
        ("BTS on air with full service", "h", with_rules.on_air_h, without.on_air_h, "{:.1f}"),
        ("BTS with at least emergency service (on air)", "h", with_rules.emergency_h, without.emergency_h, "{:.1f}"),
        ("minimum state of charge", "%", with_rules.min_soc * 100, without.min_soc * 100, "{:.0f}"),
        ("state of charge at the end", "%", with_rules.final_soc * 100, without.final_soc * 100, "{:.0f}"),
        ("energy delivered to the loads", "Wh", with_rules.load_wh, without.load_wh, "{:.0f}"),
        ("of which the BTS", "Wh", with_rules.bts_wh, without.bts_wh, "{:.0f}"),
        ("energy harvested from the array", "Wh", with_rules.pv_wh, without.pv_wh, "{:.0f}"),
        ("low-voltage disconnects", "", with_rules.lvd_events, without.lvd_events, "{}"),
    ]
    lines = [
        f"`spmp scenario poor-sun --days {days:g} --seed {seed}` ({days:g} days = {days * 24:g} h of poor sun):",
        "",
        "| | with the default rules | without rules |",
        "| --- | ---: | ---: |",
    ]
    for label, unit, a, b, fmt in rows:
        name = f"{label} ({unit})" if unit else label
        lines.append(f"| {name} | {fmt.format(a)} | {fmt.format(b)} |")
    lines += ["", "With rules, what happened when (simulated hours from the start):", "", "```"]
    lines += with_rules.events or ["(nothing)"]
    lines += ["```", "", "Without rules:", "", "```"]
    lines += without.events or ["(nothing)"]
    lines += ["```"]
    return "\n".join(lines)


def write_results(doc: FilePath, table: str) -> None:
    """Put ``table`` between the markers of ``doc`` (appending a section with them when absent)."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Smart load\n"
    block = f"{BEGIN_MARK}\n{table}\n{END_MARK}"
    if BEGIN_MARK in text and END_MARK in text:
        pattern = re.compile(re.escape(BEGIN_MARK) + r".*?" + re.escape(END_MARK), re.DOTALL)
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n## Closed-loop scenario: three days of poor sun\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")
