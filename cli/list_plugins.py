"""``neckkit list-plugins``: installed plugins, their components and failures."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from neckkit.host.manager import PluginHost
from neckkit.host.registry import KIND_PLURALS, ComponentKind, ComponentRegistry


def plugin_listing(host: PluginHost) -> dict[str, Any]:
    """The ``--json`` document: plugins, components by kind, failed plugins."""
    registries = host.all_components()  # calls the hooks, so failures are known afterwards
    return {
        "plugins": [
            {"name": record.name, "version": record.version, "hooks": list(record.hooks)}
            for record in host.plugins()
        ],
        "components": {KIND_PLURALS[kind]: _component_rows(registry) for kind, registry in registries.items()},
        "failed": [{"plugin": failure.plugin, "error": failure.error} for failure in host.failed],
    }


def _component_rows(registry: ComponentRegistry) -> list[dict[str, Any]]:
    return [
        {
            "name": component.name,
            "plugin": component.plugin,
            "description": component.info.description,
            "aliases": list(component.info.aliases),
            "tiny": component.info.tiny,
        }
        for component in registry
    ]


def _render(listing: dict[str, Any], console: Console) -> None:
    plugins = Table(title="Plugins", title_justify="left")
    for column in ("name", "version", "hooks"):
        plugins.add_column(column)
    for row in listing["plugins"]:
        plugins.add_row(row["name"], row["version"], ", ".join(row["hooks"]))
    console.print(plugins if listing["plugins"] else "No plugins loaded.")
    kinds: tuple[ComponentKind, ...] = ("codec", "encoder", "mllm")
    for kind in kinds:
        rows = listing["components"][KIND_PLURALS[kind]]
        if not rows:
            console.print(f"No {KIND_PLURALS[kind]} registered.")
            continue
        table = Table(title=KIND_PLURALS[kind].capitalize(), title_justify="left")
        for column in ("name", "aliases", "tiny", "plugin", "description"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row["name"], ", ".join(row["aliases"]), "yes" if row["tiny"] else "", row["plugin"], row["description"]
            )
        console.print(table)
    for failure in listing["failed"]:
        console.print(f"[red]Failed plugin[/red] {failure['plugin']}: {failure['error']}", highlight=False)


def list_plugins(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the listing as JSON."),
) -> None:
    """List installed plugins, the codecs, encoders and MLLMs they register, and failures."""
    listing = plugin_listing(ctx.obj.host)
    if as_json:
        typer.echo(json.dumps(listing, indent=2))
    else:
        _render(listing, Console(soft_wrap=True))
