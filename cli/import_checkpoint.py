"""``neckkit import-checkpoint``: the paper's released ``.pth.tar`` files as neckkit checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from neckkit.cli.report import stage
from neckkit.errors import NeckkitError


def import_checkpoint(
    files: list[Path] = typer.Argument(..., help="The paper's released files (d1_1.pth.tar, ...).", show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write one checkpoint folder per file into."),
    scenario: str | None = typer.Option(None, "--scenario", help="d1, d2 or d3 (default: from the file name, else d1)."),
    rate_lambda: float | None = typer.Option(None, "--lambda", help="Rate-point lambda (default: from the file name)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Convert released files (ELIC codec + neck) into checkpoint folders OUT/<file stem>."""
    with stage("loading torch", not as_json):
        from neckkit.neck.checkpoint import read_meta
        from neckkit.neck.paper_release import import_release, release_stem

    if output.exists() and not output.is_dir():
        raise NeckkitError(f"-o {output} must be a folder")
    targets: dict[Path, Path] = {}
    for file in files:
        target = output / release_stem(file)
        if target in targets.values():
            raise NeckkitError(f"two files would both be imported into {target}; import them separately")
        targets[file] = target
    results: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for file, target in targets.items():
        try:
            with stage(f"importing {file} into {target}", not as_json):
                meta = read_meta(import_release(file, target, scenario=scenario, rate_lambda=rate_lambda))
        except NeckkitError as error:
            message = " ".join(str(error).split())
            failed.append({"file": str(file), "error": message})
            typer.echo(f"Error: {message}", err=True)
            continue
        results.append(
            {
                "file": str(file),
                "checkpoint": str(target),
                "scenario": meta.scenario,
                "lambda": meta.rate_lambda,
                "codec": meta.codec.name,
                "codec_fingerprint": meta.codec.fingerprint,
                "encoder": meta.encoder.name,
                "encoder_options": meta.encoder.options,
                "entry_layer": meta.entry_layer,
            }
        )
    if as_json:
        typer.echo(json.dumps({"checkpoints": results, "failed": failed}, indent=2))
    else:
        for row in results:
            rate = f"lambda {row['lambda']}" if row["lambda"] is not None else "lambda unknown"
            options = ", ".join(f"{key}={value}" for key, value in row["encoder_options"].items())
            typer.echo(
                f"{row['file']} -> {row['checkpoint']}: {row['scenario']}, {rate}; codec {row['codec']} "
                f"(fingerprint {row['codec_fingerprint']}), encoder {row['encoder']} ({options}) at block {row['entry_layer']}"
            )
    if failed:
        raise typer.Exit(1)
