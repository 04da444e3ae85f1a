"""``spmp objects``: the LwM2M object models SPMP knows.

The list of models, one object's resources (``--id``), or the Markdown reference of every model
(``--markdown``, which docs/objects.md is generated with).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import typer
from rich.table import Table

from spmp.cli._common import _fail, _out, _registry
from spmp.lwm2m import ObjectModel
from spmp.lwm2m.objects.docs import render_markdown


def objects(
    object_id: Annotated[
        int | None,
        typer.Option("--id", help="Show the resources of this object (for example 3316) instead of the list."),
    ] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the generated Markdown reference of every object model.")
    ] = False,
) -> None:
    """List the LwM2M object models SPMP knows: id, name, version, instances, resources.

    Examples: `spmp objects`, `spmp objects --id 3316`, `spmp objects --markdown > docs/objects.md`.
    """
    registry = _registry()
    if markdown:
        if object_id is not None:
            _fail("--markdown documents every object; leave out --id")
        text = render_markdown(registry)
        typer.echo(text, nl=not text.endswith("\n"))
        return
    if object_id is not None:
        model = registry.object_model(object_id)
        if model is None:
            known = ", ".join(str(i) for i in registry.object_ids())
            _fail(f"no object model with id {object_id}; known ids: {known}")
        _out().print(_resource_table(model, registry.versions(object_id)))
        return
    _out().print(_object_table(registry))


def _object_table(models: Iterable[ObjectModel]) -> Table:
    rows = list(models)
    table = Table(title=f"LwM2M object models ({len(rows)})", title_justify="left")
    table.add_column("ID", justify="right", style="cyan")
    table.add_column("Name")
    table.add_column("Version", justify="right")
    table.add_column("Instances")
    table.add_column("Resources", justify="right")
    for model in rows:
        table.add_row(
            str(model.id),
            model.name,
            model.version,
            "multiple" if model.multiple else "single",
            str(len(model.resources)),
        )
    return table


def _resource_table(model: ObjectModel, versions: list[str]) -> Table:
    instances = "multiple instances" if model.multiple else "single instance"
    title = f"{model.id} {model.name} v{model.version} ({instances}, {model.urn})"
    older = [v for v in versions if v != model.version]
    caption = f"other versions known: {', '.join(older)}" if older else None
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("ID", justify="right", style="cyan")
    table.add_column("Name")
    table.add_column("Ops")
    table.add_column("Instances")
    table.add_column("Mandatory")
    table.add_column("Type")
    table.add_column("Range")
    table.add_column("Units")
    for resource in sorted(model.resources.values(), key=lambda r: r.id):
        table.add_row(
            str(resource.id),
            resource.name,
            resource.operations.value or "-",
            "multiple" if resource.multiple else "single",
            "yes" if resource.mandatory else "no",
            resource.type.value,
            resource.range.text,
            resource.units,
        )
    return table
