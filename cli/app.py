"""The typer application: root options, error handling, built-in and plugin commands."""

from __future__ import annotations

import os
from dataclasses import dataclass

import click
import typer
from typer.core import TyperGroup

from neckkit import __version__
from neckkit.cli import ask, bench, compress, decompress, evaluate, import_checkpoint, list_plugins, serve, train
from neckkit.cli.components import in_flag_words
from neckkit.cli.report import announce_placeholders, forget_placeholders
from neckkit.cli.train_codec import train_codec
from neckkit.errors import NeckkitError, describe_error
from neckkit.host.manager import PluginHost

try:  # typer 0.2x vendors click: the usage errors it raises are not click's own
    from typer._click.exceptions import ClickException as _TyperClickException
except ImportError:  # an older typer raises click's
    _TyperClickException = click.ClickException

DEBUG_KEY = "neckkit.debug"
CLICK_ERRORS = (click.ClickException, _TyperClickException)


@dataclass
class CliState:
    """What every command reads from ``ctx.obj``."""

    host: PluginHost
    debug: bool = False


def one_line_error(error: BaseException) -> str:
    """``Error: ...`` on one line; unexpected exceptions also name their type.

    A component's error names its factory options by their flags (``tiny=True`` -> ``--tiny``); a usage
    error (missing or unknown option, bad value) points at the command's ``--help``.
    """
    if isinstance(error, NeckkitError):
        text = str(error) if error.component is None else in_flag_words(str(error), error.component.kind)
        return f"Error: {' '.join(text.split())}"
    if isinstance(error, CLICK_ERRORS):
        context = getattr(error, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None and error.exit_code == 2 else ""
        return f"Error: {' '.join(error.format_message().split())}{hint}"
    return f"Error: {describe_error(error)} (run with --debug for the traceback)"


class NeckkitGroup(TyperGroup):
    """Turns any error raised by a command into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            result = super().invoke(ctx)
            announce_placeholders()
            return result
        except (click.exceptions.Exit, typer.Exit, typer.Abort, click.ClickException, click.Abort):
            raise
        except Exception as error:
            if ctx.meta.get(DEBUG_KEY):
                raise
            click.echo(one_line_error(error), err=True)
            ctx.exit(getattr(error, "exit_code", 1))


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"neckkit {__version__}")
        raise typer.Exit()


def build_app(host: PluginHost) -> typer.Typer:
    """The CLI for the plugins loaded in ``host``."""
    app = typer.Typer(
        cls=NeckkitGroup,
        name="neckkit",
        help="Let multimodal LLMs read compressed images through transform-necks.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        ctx: typer.Context,
        version: bool = typer.Option(
            False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
        debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    ) -> None:
        ctx.meta[DEBUG_KEY] = debug
        forget_placeholders()
        ctx.obj = CliState(host=host, debug=debug)
        if ctx.resilient_parsing:
            return
        # Run every component hook now (cheap: factories are lazy, the registries are kept), so a
        # hook that raises is known, and warned about, before the command looks anything up.
        host.all_components()
        # list-plugins lists the failures itself; under torchrun only the first process warns.
        if ctx.invoked_subcommand != "list-plugins" and os.environ.get("RANK", "0") == "0":
            for line in host.warnings():
                typer.echo(line, err=True)

    app.command("list-plugins")(list_plugins.list_plugins)
    app.command("compress")(compress.compress)
    app.command("decompress")(decompress.decompress)
    app.command("import-checkpoint")(import_checkpoint.import_checkpoint)
    app.command("train")(train.train)
    app.command("train-codec")(train_codec)
    app.command("ask")(ask.ask)
    app.command("eval")(evaluate.evaluate)
    app.command("bench")(bench.bench)
    app.command("serve")(serve.serve)
    host.add_commands(app)
    return app
