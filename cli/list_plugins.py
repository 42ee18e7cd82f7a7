"""``neckkit list-plugins``: installed plugins, their components and failures."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from neckkit.host.manager import PluginHost
from neckkit.host.options import option_help
from neckkit.host.registry import DEFAULT_SCENARIOS, KIND_PLURALS, ComponentKind, ComponentRegistry, codec_paths

# A codec registered without ``scenarios``: d3 is decided when it is built (its synthesis_modules()).
UNDECLARED_D3 = "d3?"


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
    """One row per component: what it is, its factory options and, for codecs, the paths (``reconstruction``,
    ``neck``) and training scenarios it supports (an image codec: the Reconstruction path, no scenario)."""
    rows = []
    for component in registry:
        info = component.info
        row: dict[str, Any] = {
            "name": component.name,
            "plugin": component.plugin,
            "description": info.description,
            "aliases": list(info.aliases),
            "tiny": info.tiny,
            "tiny_weights": info.tiny_weights,
            "qualities": list(info.qualities),
            "pretrained": list(info.pretrained),
            "options": option_help(info),
        }
        if component.kind == "codec":
            row["paths"] = list(codec_paths(info))
            if info.image_codec:
                row["scenarios"] = []
            else:
                row["scenarios"] = list(info.scenarios) if info.scenarios is not None else [*DEFAULT_SCENARIOS, UNDECLARED_D3]
        rows.append(row)
    return rows


def _tiny_cell(row: dict[str, Any]) -> str:
    if not row["tiny"]:
        return ""
    if row.get("paths") == ["reconstruction"]:
        return "no-op"  # an image codec has no weights
    return "yes+weights" if row["tiny_weights"] else "yes"


def _qualities_cell(qualities: list[int]) -> str:
    """``1-8`` for a run of consecutive levels, else ``1, 3, 5``."""
    if len(qualities) > 2 and qualities == list(range(qualities[0], qualities[-1] + 1)):
        return f"{qualities[0]}-{qualities[-1]}"
    return ", ".join(str(q) for q in qualities)


def _quality_range(options: dict[str, str]) -> str:
    """An image codec's quality range, from its option help (``"0-100, higher is more bits ..."``): ``0-100``."""
    return options.get("quality", "").partition(",")[0]


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
        table.add_column("name", no_wrap=True)
        table.add_column("tiny", no_wrap=True)
        if kind == "codec":  # only codecs have scenarios and quality levels (an image codec: its quality range)
            table.add_column("scenarios", no_wrap=True)
            table.add_column("qualities", no_wrap=True)
        table.add_column("description")
        for row in rows:
            cells = [row["name"], _tiny_cell(row)]
            if kind == "codec":
                qualities = _quality_range(row["options"]) if row["paths"] == ["reconstruction"] else _qualities_cell(
                    row["qualities"])
                cells += [",".join(row["scenarios"]) or "-", qualities]
            table.add_row(*cells, row["description"])
        console.print(table)
        for row in rows:  # who registered each, its aliases, options, paths (codecs) and known weights: one line each
            line = f"  {row['name']} (plugin {row['plugin']}"
            line += f"; aliases {', '.join(row['aliases'])})" if row["aliases"] else ")"
            line += f" options: {', '.join(row['options']) or 'none'}"
            if "paths" in row:
                line += f"; paths: {', '.join(row['paths'])}"
            if row["pretrained"]:
                line += f"; pretrained tags / hub ids: {', '.join(row['pretrained'])}"
            console.print(line, highlight=False, markup=False)
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
