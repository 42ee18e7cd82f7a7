"""The project's error types: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neckkit.host.registry import Component


class NeckkitError(Exception):
    """An error the user can act on: bad input, missing weights, a broken plugin.

    The CLI prints ``Error: <message>`` on one line (no traceback unless ``--debug``)
    and exits with :attr:`exit_code`. :attr:`component` is the component whose factory raised it, set by
    the core's build: the CLI then names that factory's options by the flags that set them.
    """

    exit_code: int = 1
    component: Component | None = None


class UsageError(NeckkitError):
    """A command line that cannot run as written: a flag missing, or flags that exclude each other (exit 2)."""

    exit_code = 2


class PluginError(NeckkitError):
    """A plugin is broken or conflicts with another plugin."""


class ConfigError(NeckkitError):
    """A configuration file or override is invalid."""


class UnknownComponentError(NeckkitError):
    """A codec, encoder or MLLM name that no loaded plugin registered."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message without its final period (its type's name if empty)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")


def describe_error(error: BaseException) -> str:
    """``Type: message`` on one line (whitespace folded), or the type's name when the message is empty."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
