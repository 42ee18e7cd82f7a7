"""Reading one sub-module's tensors from a Hugging Face safetensors checkpoint, opening only its shards.

A sharded checkpoint (``model.safetensors.index.json`` plus ``model-0000k-of-0000n.safetensors``) names
the shard of every tensor, so the vision tower of a 7B MLLM is read from the one or two shards that
hold it, and for a hub id only those are downloaded. An unsharded one is ``model.safetensors``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from neckkit.errors import NeckkitError, first_line
from neckkit.loading.hub import WeightsSource

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["INDEX_FILE", "SINGLE_FILE", "read_submodule_tensors"]

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


def read_submodule_tensors(source: WeightsSource, prefix: str) -> dict[str, Tensor]:
    """The tensors whose names start with ``prefix`` (e.g. ``"vision_model."``), named without it.

    Only the shards holding them are opened (and, for a hub id, downloaded: ``source.need``);
    ``prefix=""`` reads every tensor. A missing or unreadable file, or no tensor under ``prefix``,
    is one :class:`NeckkitError` line worded by ``source.wording``.
    """
    from safetensors import safe_open

    name = source.wording.name
    if source.folder is None:  # a hub id without a fetched snapshot: get the index, if there is one
        source.folder = source.fetch([INDEX_FILE])
    index_path = source.folder / INDEX_FILE
    if index_path.is_file():
        try:
            weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise NeckkitError(f"cannot read {INDEX_FILE} of {name} {source.where}: {error!r}") from None
        by_file: dict[str, list[str]] = {}
        for key, filename in weight_map.items():
            if key.startswith(prefix):
                by_file.setdefault(filename, []).append(key)
        source.need(sorted(by_file))
    else:
        source.need([SINGLE_FILE])
        by_file = {SINGLE_FILE: []}  # keys read from the file itself
    state: dict[str, Tensor] = {}
    for filename, keys in sorted(by_file.items()):
        try:
            with safe_open(str(source.folder / filename), framework="pt") as handle:
                for key in keys or [key for key in handle.keys() if key.startswith(prefix)]:
                    state[key[len(prefix) :]] = handle.get_tensor(key)
        except Exception as error:  # safetensors raises its own error types for corrupt files
            raise NeckkitError(f"cannot read {filename} of {name} {source.where}: {first_line(error)}") from None
    if not state:
        raise NeckkitError(f"{name} {source.where} hold no tensors named {prefix}*")
    return state
