"""The spmp-bts YANG module as Python: the schema the NETCONF server validates against, and BtsConfig.

The server does not parse YANG at run time (pyang is a development tool); instead ``SCHEMA`` mirrors
``yang/spmp-bts.yang`` leaf by leaf, and a test compares the two with pyang so they cannot drift.

``BtsConfig`` is the typed, validated view of the running configuration the power model and the
charger use; :func:`config_from_xml` builds it from a ``<bts>`` element (absent leaves take their YANG
defaults) and :func:`config_to_xml` writes one back.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from importlib import resources

from lxml import etree

__all__ = [
    "BTS_NS",
    "FACTORY_CONFIG",
    "MODULE_NAME",
    "MODULE_REVISION",
    "NC_NS",
    "SCHEMA",
    "BtsConfig",
    "ChainConfig",
    "Leaf",
    "LeafError",
    "config_from_xml",
    "config_to_xml",
    "yang_text",
]

BTS_NS = "urn:spmp:bts"
NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
MODULE_NAME = "spmp-bts"
MODULE_REVISION = "2026-11-22"


class LeafError(ValueError):
    """A leaf value the schema rejects; the message says why (it becomes the rpc-error's message)."""


@dataclass(frozen=True)
class Leaf:
    """One YANG leaf: its type, the ranges it allows, its step and default, and the BtsConfig attribute."""

    name: str
    attr: str
    kind: str  # "boolean", "uint" or "decimal64"
    ranges: tuple[tuple[Decimal, Decimal], ...] = ()
    fraction_digits: int = 0
    step: Decimal | None = None
    default: str | None = None

    def parse(self, text: str | None) -> bool | int | Decimal:
        """Return the value of ``text`` as this leaf's type, or raise LeafError."""
        raw = (text or "").strip()
        if self.kind == "boolean":
            if raw not in ("true", "false"):
                raise LeafError(f"{self.name}: {raw!r} is not a boolean (true or false)")
            return raw == "true"
        value = self._number(raw)
        if self.ranges and not any(lo <= value <= hi for lo, hi in self.ranges):
            allowed = " | ".join(str(lo) if lo == hi else f"{lo}..{hi}" for lo, hi in self.ranges)
            raise LeafError(f"{self.name}: {raw} is out of range ({allowed})")
        if self.step is not None and (value - self.ranges[0][0]) % self.step != 0:
            raise LeafError(f"{self.name}: {raw} is off the step: it is applied in steps of {self.step}")
        return int(value) if self.kind == "uint" else value

    def _number(self, raw: str) -> Decimal:
        # YANG's lexical forms: integers are digits with an optional sign; decimal64 allows one '.'
        # and at most fraction-digits digits after it. Decimal alone would also take "1e3" or "NaN".
        body = raw[1:] if raw[:1] in "+-" else raw
        whole, dot, frac = body.partition(".")
        ok = whole.isdigit() and (not dot or (frac.isdigit() and len(frac) <= self.fraction_digits))
        if self.kind == "uint" and dot:
            ok = False
        try:
            value = Decimal(raw) if ok else None
        except InvalidOperation:
            value = None
        if value is None:
            what = "an unsigned integer" if self.kind == "uint" else f"a decimal with {self.fraction_digits} digit(s)"
            raise LeafError(f"{self.name}: {raw!r} is not {what}")
        return value

    def canonical(self, value: bool | int | Decimal) -> str:
        """The canonical YANG text of a parsed value (what the datastore stores and get-config returns)."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if self.kind == "decimal64":
            return f"{Decimal(value):.{self.fraction_digits}f}"
        return str(int(value))


def _r(lo: str, hi: str | None = None) -> tuple[Decimal, Decimal]:
    return Decimal(lo), Decimal(hi if hi is not None else lo)


def _bool(name: str, attr: str, default: bool) -> Leaf:
    return Leaf(name, attr, "boolean", default="true" if default else "false")


CHAIN_ID = Leaf("id", "id", "uint", ranges=(_r("0", "7"),))
CHAIN_LEAVES: tuple[Leaf, ...] = (
    CHAIN_ID,
    _bool("enabled", "enabled", True),
    Leaf(
        "rf-power-output",
        "rf_power_output_dbm",
        "decimal64",
        ranges=(_r("0", "46"),),
        fraction_digits=1,
        step=Decimal(1),
        default="33.0",
    ),
)
MAX_CHAINS = 8

BTS_LEAVES: tuple[Leaf, ...] = (
    _bool("logging-enabled", "logging_enabled", True),
    Leaf(
        "channel-bandwidth",
        "channel_bandwidth_mhz",
        "decimal64",
        ranges=tuple(_r(v) for v in ("1.4", "3", "5", "10", "15", "20")),
        fraction_digits=1,
        default="10.0",
    ),
    Leaf("user-limit", "user_limit", "uint", ranges=(_r("0", "65535"),), default="64"),
    _bool("backhaul-enabled", "backhaul_enabled", True),
    _bool("lte-data-enabled", "lte_data_enabled", True),
    _bool("edge-data-enabled", "edge_data_enabled", True),
    _bool("gprs-data-enabled", "gprs_data_enabled", True),
    _bool("software-updates-enabled", "software_updates_enabled", True),
    _bool("emergency-calls-only", "emergency_calls_only", False),
    Leaf("duty-cycle", "duty_cycle_percent", "uint", ranges=(_r("0", "100"),), default="100"),
    Leaf("duty-cycle-period", "duty_cycle_period_s", "uint", ranges=(_r("60", "86400"),), default="3600"),
    _bool("sleep", "sleep", False),
)

#: Config leaves by name: the ``bts`` container's and the ``transceiver-chain`` list entry's.
SCHEMA: dict[str, dict[str, Leaf]] = {
    "bts": {leaf.name: leaf for leaf in BTS_LEAVES},
    "transceiver-chain": {leaf.name: leaf for leaf in CHAIN_LEAVES},
}
#: Names of the ``bts`` container's children that are not leaves: the list and the config-false state.
CHAIN_LIST = "transceiver-chain"
STATE = "state"


@dataclass(frozen=True)
class ChainConfig:
    """One transceiver chain."""

    id: int
    enabled: bool = True
    rf_power_output_dbm: Decimal = Decimal("33.0")


@dataclass(frozen=True)
class BtsConfig:
    """The running configuration, typed; field defaults are the YANG defaults."""

    logging_enabled: bool = True
    chains: tuple[ChainConfig, ...] = ()
    channel_bandwidth_mhz: Decimal = Decimal("10.0")
    user_limit: int = 64
    backhaul_enabled: bool = True
    lte_data_enabled: bool = True
    edge_data_enabled: bool = True
    gprs_data_enabled: bool = True
    software_updates_enabled: bool = True
    emergency_calls_only: bool = False
    duty_cycle_percent: int = 100
    duty_cycle_period_s: int = 3600
    sleep: bool = False

    def with_chains(self, *, enabled: bool | None = None, rf_power_output_dbm: Decimal | None = None) -> BtsConfig:
        """A copy with every chain enabled or disabled, or set to another RF power."""
        chains = tuple(
            replace(
                c,
                enabled=c.enabled if enabled is None else enabled,
                rf_power_output_dbm=c.rf_power_output_dbm if rf_power_output_dbm is None else rf_power_output_dbm,
            )
            for c in self.chains
        )
        return replace(self, chains=chains)


#: What a new BTS starts with: two chains (2x2 MIMO) at 33 dBm (2 W), like an OpenCellular site.
FACTORY_CONFIG = BtsConfig(chains=(ChainConfig(0), ChainConfig(1)))


def _q(name: str) -> str:
    return f"{{{BTS_NS}}}{name}"


def _leaf_values(elem: etree._Element, leaves: dict[str, Leaf]) -> dict[str, object]:
    values: dict[str, object] = {}
    for leaf in leaves.values():
        child = elem.find(_q(leaf.name))
        text = child.text if child is not None else leaf.default
        if text is not None:
            values[leaf.attr] = leaf.parse(text)
    return values


def config_from_xml(bts: etree._Element | None) -> BtsConfig:
    """The BtsConfig of a validated ``<bts>`` element (None: no configuration, all defaults)."""
    if bts is None:
        return BtsConfig()
    chains = tuple(
        ChainConfig(**_leaf_values(entry, SCHEMA[CHAIN_LIST]))  # type: ignore[arg-type]
        for entry in bts.iterfind(_q(CHAIN_LIST))
    )
    return BtsConfig(chains=chains, **_leaf_values(bts, SCHEMA["bts"]))  # type: ignore[arg-type]


def config_to_xml(config: BtsConfig) -> etree._Element:
    """A ``<bts>`` element with every leaf of ``config`` explicitly set, in schema order."""
    bts = etree.Element(_q("bts"), nsmap={None: BTS_NS})
    names = {f.name for f in fields(BtsConfig)}
    for leaf in BTS_LEAVES:
        assert leaf.attr in names
        etree.SubElement(bts, _q(leaf.name)).text = leaf.canonical(getattr(config, leaf.attr))
        if leaf.name == "logging-enabled":  # the YANG module lists the chains right after it
            for chain in config.chains:
                entry = etree.SubElement(bts, _q(CHAIN_LIST))
                for cleaf in CHAIN_LEAVES:
                    etree.SubElement(entry, _q(cleaf.name)).text = cleaf.canonical(getattr(chain, cleaf.attr))
    return bts


def yang_text() -> str:
    """The spmp-bts YANG module as shipped in the package."""
    return resources.files("spmp.bts").joinpath("yang", f"{MODULE_NAME}.yang").read_text(encoding="utf-8")
