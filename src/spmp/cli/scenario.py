"""``spmp scenario``: closed-loop simulations of a site with its BTS (docs/smart-load.md).

``poor-sun`` runs a 48 V site through days of poor sun with and without the default smart-load
rules and compares the hours on air.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

import typer

from spmp.cli._common import _fail

scenario_app = typer.Typer(help="Closed-loop simulations of a site with its BTS (docs/smart-load.md).")


@scenario_app.command("poor-sun")
def scenario_poor_sun(
    days: Annotated[float, typer.Option("--days", help="Simulated days of poor sun.", min=0.1, max=60)] = 3.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated weather.")] = 1,
    write: Annotated[
        FilePath | None,
        typer.Option(
            "--write", help="Put the results into this Markdown file between its markers (docs/smart-load.md)."
        ),
    ] = None,
) -> None:
    """A 48 V site through days of poor sun, with the default smart-load rules and without: hours on air."""
    from spmp.charger.netconf.scenario import poor_sun_table, run_poor_sun, write_results  # noqa: PLC0415

    with_rules = run_poor_sun(days, seed, rules=True)
    without = run_poor_sun(days, seed, rules=False)
    table = poor_sun_table(with_rules, without, days=days, seed=seed)
    typer.echo(table)
    if write is not None:
        try:
            write_results(write, table)
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot write the results to {str(write)!r}: {getattr(exc, 'strerror', None) or exc}")
        typer.echo(f"results written to {write}", err=True)
