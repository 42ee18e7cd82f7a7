"""neckkit: let multimodal LLMs read compressed image latents through transform-necks.

Public names for plugin authors::

    from neckkit import hookimpl, Codec, VisualEncoder, MLLM, NeckkitError

The component interfaces import torch, so they load on first use; ``import neckkit`` and
``hookimpl`` stay cheap for the CLI and for plugin discovery.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING, Any

from neckkit import _compat, lean_compressai
from neckkit.errors import ConfigError, NeckkitError, PluginError, UnknownComponentError
from neckkit.host.hookspecs import hookimpl

_compat.install()  # old flat-module names (neckkit.registry, ...) keep importing
lean_compressai.install()  # before anything imports compressai: its point-cloud half loads only when used

try:
    __version__ = metadata.version("neckkit")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# name -> module, loaded on first attribute access (PEP 562).
_LAZY = {
    "Codec": "neckkit.interfaces",
    "VisualEncoder": "neckkit.interfaces",
    "MLLM": "neckkit.interfaces",
    "Analysis": "neckkit.interfaces",
    "LatentPayload": "neckkit.interfaces",
    "estimated_bits": "neckkit.interfaces",
    "NeckkitConfig": "neckkit.config",
    "PluginHost": "neckkit.host.manager",
    "get_host": "neckkit.host.manager",
}

if TYPE_CHECKING:
    from neckkit.config import NeckkitConfig
    from neckkit.host.manager import PluginHost, get_host
    from neckkit.interfaces import MLLM, Analysis, Codec, LatentPayload, VisualEncoder, estimated_bits


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'neckkit' has no attribute {name!r}")


__all__ = [
    "MLLM",
    "Analysis",
    "Codec",
    "ConfigError",
    "LatentPayload",
    "NeckkitConfig",
    "NeckkitError",
    "PluginError",
    "PluginHost",
    "UnknownComponentError",
    "VisualEncoder",
    "__version__",
    "estimated_bits",
    "get_host",
    "hookimpl",
]
