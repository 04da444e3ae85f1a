"""spmp-bts without the network: the YANG module (pyang), schema vs module, the power model, the datastore."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from _peers import tool
from spmp.bts import FACTORY_CONFIG, BtsConfig, BtsDevice, NetconfError, power_draw_watts
from spmp.bts.datastore import apply_edit, empty_datastore, subtree_filter
from spmp.bts.model import BTS_LEAVES, CHAIN_LEAVES, MODULE_REVISION, config_from_xml, config_to_xml, yang_text
from spmp.bts.power import dbm_to_watts, in_service_watts, standby_watts

YANG = Path(__file__).parents[1] / "src/spmp/bts/yang/spmp-bts.yang"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"


def _pyang() -> list[str]:
    return [tool("pyang")]  # fails (no skip) with "run make setup" when pyang is missing


# ------------------------------------------------------------------------------------- YANG module


def test_pyang_strict_and_lint_accept_the_module() -> None:
    # --lint adds the RFC 8407 guideline checks on top of --strict; both must be silent.
    cmd = [*_pyang(), "--strict", "--lint", str(YANG)]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_module_tree_has_every_smart_load_setting() -> None:
    tree = subprocess.run(
        [*_pyang(), "-f", "tree", str(YANG)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    for name in [leaf.name for leaf in BTS_LEAVES] + [leaf.name for leaf in CHAIN_LEAVES]:
        assert f"+--rw {name}" in tree
    for name in ("power-draw-watts", "on-air", "serving-users", "uptime"):
        assert f"+--ro {name}" in tree
    assert f"revision {MODULE_REVISION}" in yang_text()


def test_python_schema_matches_the_module() -> None:
    """Types, ranges, fraction digits, steps and defaults in SCHEMA are those of the YANG module."""
    from pyang import context, repository

    ctx = context.Context(repository.FileRepository(str(YANG.parent)))
    module = ctx.add_module(str(YANG), YANG.read_text())
    assert module is not None
    ctx.validate()
    bts = module.search_one("container", "bts")
    chain = bts.search_one("list", "transceiver-chain")
    for parent, leaves in ((bts, BTS_LEAVES), (chain, CHAIN_LEAVES)):
        for leaf in leaves:
            node = parent.search_one("leaf", leaf.name)
            assert node is not None, leaf.name
            base = node.search_one("type").i_type_spec
            kind = {"boolean": "boolean", "decimal64": "decimal64"}.get(base.name, "uint")
            assert kind == leaf.kind, leaf.name
            default = node.search_one("default")
            assert (default.arg if default else None) == leaf.default, leaf.name
            if leaf.kind == "decimal64":
                assert base.fraction_digits == leaf.fraction_digits, leaf.name
            if leaf.ranges:
                ranges = getattr(base, "ranges", None) or [(base.min, base.max)]
                # pyang gives (value, None) for a single-value range part such as "1.4 | 3.0"
                as_decimal = [(Decimal(str(lo)), Decimal(str(lo if hi is None else hi))) for lo, hi in ranges]
                assert tuple(as_decimal) == leaf.ranges, leaf.name
            step = next((s.arg for s in node.substmts if s.keyword == ("spmp-bts", "step")), None)
            assert (Decimal(step) if step else None) == leaf.step, leaf.name


# ---------------------------------------------------------------------------------------- power


def test_factory_site_draws_like_an_opencellular_site() -> None:
    assert dbm_to_watts(33) == pytest.approx(2.0, rel=0.01)
    assert 37 <= power_draw_watts(FACTORY_CONFIG) <= 40  # NOTES: ~37-40 W at 2 W RF per chain


def test_a_10_w_gsm_chain_costs_what_the_notes_say() -> None:
    # One 10 W (40 dBm) chain: the PA part is ~65 % of a ~69 W BTS.
    config = BtsConfig(chains=(FACTORY_CONFIG.chains[0],)).with_chains(rf_power_output_dbm=Decimal(40))
    pa = dbm_to_watts(40) / 0.25
    assert 0.55 < pa / in_service_watts(config) < 0.75


def test_each_saving_lowers_the_draw() -> None:
    full = power_draw_watts(FACTORY_CONFIG)
    one_chain = BtsConfig(chains=FACTORY_CONFIG.chains[:1])
    savings = [
        FACTORY_CONFIG.with_chains(enabled=False),
        one_chain,
        FACTORY_CONFIG.with_chains(rf_power_output_dbm=Decimal(30)),
        BtsConfig(chains=FACTORY_CONFIG.chains, duty_cycle_percent=50),
        BtsConfig(chains=FACTORY_CONFIG.chains, sleep=True),
        BtsConfig(chains=FACTORY_CONFIG.chains, emergency_calls_only=True),
        BtsConfig(chains=FACTORY_CONFIG.chains, backhaul_enabled=False),
        BtsConfig(chains=FACTORY_CONFIG.chains, lte_data_enabled=False),
        BtsConfig(chains=FACTORY_CONFIG.chains, channel_bandwidth_mhz=Decimal("1.4")),
        BtsConfig(chains=FACTORY_CONFIG.chains, user_limit=4),
        BtsConfig(chains=FACTORY_CONFIG.chains, logging_enabled=False),
    ]
    for config in savings:
        assert power_draw_watts(config) < full, config
    # Chains dominate: switching both off saves far more than all the small knobs together.
    small = BtsConfig(chains=FACTORY_CONFIG.chains, logging_enabled=False, lte_data_enabled=False, user_limit=0)
    assert full - power_draw_watts(FACTORY_CONFIG.with_chains(enabled=False)) > 4 * (full - power_draw_watts(small))


def test_duty_cycle_averages_in_service_and_standby() -> None:
    half = BtsConfig(chains=FACTORY_CONFIG.chains, duty_cycle_percent=50)
    expected = (in_service_watts(half) + standby_watts(half)) / 2
    assert power_draw_watts(half) == pytest.approx(expected)
    off = BtsConfig(chains=FACTORY_CONFIG.chains, duty_cycle_percent=0)
    assert power_draw_watts(off) == power_draw_watts(BtsConfig(chains=FACTORY_CONFIG.chains, sleep=True))


def test_device_state_and_power_hook(tmp_path: Path) -> None:
    now = [100.0]
    device = BtsDevice(tmp_path, clock=lambda: now[0])
    seen: list[float] = []
    unsubscribe = device.on_power_change(seen.append)
    device.set_config(FACTORY_CONFIG.with_chains(enabled=False))
    assert seen == [device.power_draw_watts] and seen[0] < 20
    assert device.state().on_air is False and device.state().serving_users == 0
    device.set_config(BtsConfig(chains=FACTORY_CONFIG.chains, duty_cycle_percent=25, duty_cycle_period_s=100))
    now[0] += 10  # 10 s into the period: on
    assert device.state().on_air is True and device.state().uptime == 10
    now[0] += 30  # 40 s: off
    assert device.state().on_air is False
    unsubscribe()
    device.set_config(FACTORY_CONFIG)
    assert len(seen) == 2


# ------------------------------------------------------------------------------------ datastore


def _config(body: str) -> etree._Element:
    return etree.fromstring(f'<config xmlns="{NC}" xmlns:nc="{NC}"><bts xmlns="urn:spmp:bts">{body}</bts></config>')


def _factory() -> etree._Element:
    data = empty_datastore()
    data.append(config_to_xml(FACTORY_CONFIG))
    return data


def _bts(data: etree._Element) -> BtsConfig:
    return config_from_xml(data.find("{urn:spmp:bts}bts"))


def test_xml_round_trip() -> None:
    assert config_from_xml(config_to_xml(FACTORY_CONFIG)) == FACTORY_CONFIG
    assert config_from_xml(None) == BtsConfig()


def test_merge_replace_create_delete_remove() -> None:
    data = apply_edit(_factory(), _config("<sleep>true</sleep><transceiver-chain><id>3</id></transceiver-chain>"))
    assert _bts(data).sleep is True and [c.id for c in _bts(data).chains] == [0, 1, 3]
    data = apply_edit(data, _config('<transceiver-chain nc:operation="delete"><id>3</id></transceiver-chain>'))
    assert [c.id for c in _bts(data).chains] == [0, 1]
    with pytest.raises(NetconfError) as err:
        apply_edit(data, _config('<transceiver-chain nc:operation="delete"><id>3</id></transceiver-chain>'))
    assert err.value.tag == "data-missing"
    apply_edit(data, _config('<transceiver-chain nc:operation="remove"><id>3</id></transceiver-chain>'))
    with pytest.raises(NetconfError) as err:
        apply_edit(data, _config('<sleep nc:operation="create">false</sleep>'))
    assert err.value.tag == "data-exists" and err.value.path == "/bts:bts/bts:sleep"
    # replace on a list entry drops what the edit does not say: rf-power-output goes back to its default
    data = apply_edit(
        data, _config("<transceiver-chain><id>0</id><rf-power-output>40</rf-power-output></transceiver-chain>")
    )
    data = apply_edit(
        data,
        _config('<transceiver-chain nc:operation="replace"><id>0</id><enabled>false</enabled></transceiver-chain>'),
    )
    assert _bts(data).chains[0].rf_power_output_dbm == Decimal(33) and not _bts(data).chains[0].enabled
    # default-operation replace: the edit is the whole configuration
    data = apply_edit(data, _config("<user-limit>5</user-limit>"), "replace")
    assert _bts(data) == BtsConfig(user_limit=5)


def test_invalid_edits_name_the_node_and_change_nothing() -> None:
    cases = {
        "<duty-cycle>101</duty-cycle>": ("invalid-value", "/bts:bts/bts:duty-cycle"),
        "<channel-bandwidth>7</channel-bandwidth>": ("invalid-value", "/bts:bts/bts:channel-bandwidth"),
        "<sleep>yes</sleep>": ("invalid-value", "/bts:bts/bts:sleep"),
        "<user-limit>1e3</user-limit>": ("invalid-value", "/bts:bts/bts:user-limit"),
        "<transceiver-chain><id>0</id><rf-power-output>33.25</rf-power-output></transceiver-chain>": (
            "invalid-value",
            "/bts:bts/bts:transceiver-chain[bts:id='0']/bts:rf-power-output",
        ),
        "<transceiver-chain><id>9</id></transceiver-chain>": ("invalid-value", "/bts:bts/bts:transceiver-chain/bts:id"),
        "<transceiver-chain><enabled>true</enabled></transceiver-chain>": (
            "missing-element",
            "/bts:bts/bts:transceiver-chain",
        ),
        "<turbo>true</turbo>": ("unknown-element", "/bts:bts"),
        "<state><on-air>true</on-air></state>": ("invalid-value", "/bts:bts/bts:state"),
        '<sleep nc:operation="frobnicate">true</sleep>': ("bad-attribute", None),
    }
    running = _factory()
    before = etree.tostring(running)
    for body, (tag, path) in cases.items():
        with pytest.raises(NetconfError) as err:
            apply_edit(running, _config("<logging-enabled>false</logging-enabled>" + body))
        assert (err.value.tag, err.value.path) == (tag, path), body
    assert etree.tostring(running) == before


def test_subtree_filter() -> None:
    data = list(_factory())
    f = etree.fromstring(
        '<filter xmlns:b="urn:spmp:bts"><b:bts><b:transceiver-chain><b:id>1</b:id><b:rf-power-output/>'
        "</b:transceiver-chain><b:sleep/></b:bts></filter>"
    )
    (bts,) = subtree_filter(data, f)
    texts = [(etree.QName(e).localname, e.text) for e in bts.iter() if len(e) == 0]
    assert texts == [("id", "1"), ("rf-power-output", "33.0"), ("sleep", "false")]
    nothing = etree.fromstring('<filter xmlns:b="urn:spmp:bts"><b:bts><b:sleep>true</b:sleep></b:bts></filter>')
    assert subtree_filter(data, nothing) == []
    other = etree.fromstring('<filter><x xmlns="urn:example"/></filter>')
    assert subtree_filter(data, other) == []
