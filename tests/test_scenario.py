"""The closed-loop poor-sun scenario: rules keep the BTS on air at least as long as no rules."""

from __future__ import annotations

from pathlib import Path as FilePath

from typer.testing import CliRunner

from spmp.charger.netconf.scenario import BEGIN_MARK, END_MARK, poor_sun_table, run_poor_sun, write_results
from spmp.cli import app


def test_rules_keep_the_bts_on_air_longer() -> None:
    # A short horizon on a small bank, so that the site without rules reaches its disconnect.
    with_rules = run_poor_sun(1.0, 1, rules=True, capacity_ah=30.0)
    without = run_poor_sun(1.0, 1, rules=False, capacity_ah=30.0)
    assert without.lvd_events >= 1
    assert with_rules.emergency_h >= without.emergency_h
    assert with_rules.on_air_h >= without.on_air_h
    assert with_rules.emergency_h > without.emergency_h
    assert any("fires" in event for event in with_rules.events)
    assert not any("fires" in event for event in without.events)
    table = poor_sun_table(with_rules, without, days=1, seed=1)
    assert "| BTS with at least emergency service (on air) (h) |" in table


def test_results_go_between_the_markers_and_keep_the_rest(tmp_path: FilePath) -> None:
    doc = tmp_path / "smart-load.md"
    doc.write_text("# Smart load\n\n## Semantics\n\nkept\n", encoding="utf-8")
    write_results(doc, "first")
    write_results(doc, "second")
    text = doc.read_text(encoding="utf-8")
    assert text.count(BEGIN_MARK) == 1 and text.count(END_MARK) == 1
    assert "second" in text and "first" not in text and "## Semantics\n\nkept" in text


def test_cli_writes_the_results(cli_runner: CliRunner, tmp_path: FilePath) -> None:
    doc = tmp_path / "smart-load.md"
    result = cli_runner.invoke(app, ["scenario", "poor-sun", "--days", "0.25", "--write", str(doc)])
    assert result.exit_code == 0, result.output
    assert "with the default rules" in result.output
    assert BEGIN_MARK in doc.read_text(encoding="utf-8")
