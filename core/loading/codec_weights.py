"""Loading foreign codec checkpoints (CompressAI, TransTIC, the paper's releases) safely.

Files are read with ``torch.load(weights_only=True)``: one that would need arbitrary unpickling is
refused, never executed. State dicts may be wrapped (``{"state_dict": ...}``) and carry
``module.`` prefixes from DataParallel. Entropy-coder tables (``_quantized_cdf``, ``_offset``,
``_cdf_length``): when a file carries them for every entropy model, they are used as stored (never
rebuilt: another CompressAI version may build mathematically equal but bitwise different tables, so
streams written with the file's tables decode only with them); when any are absent they are rebuilt
with ``update()`` and one notice line says so. :func:`entropy_tables` tells which ("stored" or
"rebuilt"); it is recorded in a checkpoint's ``meta.json`` (``codec_tables``).
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neckkit.errors import NeckkitError
from neckkit.loading.weights import state_dict_mismatches

# Entropy-coder buffers that depend on the weights and are rebuilt by update(): their presence
# and shape in a file never matter.
CODER_TABLES = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")  # what a CDF table is, per entropy model
TABLES_ATTR = "_neckkit_entropy_tables"  # on the library model: (source, stamp of its bottleneck parameters)
_DIFFER_ATTR = "_neckkit_tables_differ"  # on the library model: (stamp, whether stored tables differ from a rebuild)
STORED, REBUILT = "stored", "rebuilt"
WRAPPER_KEYS = ("state_dict", "model", "net")
STRIPPED_SUBSTRINGS = ("module.",)
CODEC_WRAPPER_PREFIX = "model."  # neckkit codec adapters keep the CompressAI model as .model


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors for missing or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise NeckkitError(f"weight file {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = [line.strip() for line in str(error).splitlines() if "Unsupported global" in line]
        if unsafe:
            raise NeckkitError(
                f"refusing to load {path}: it needs arbitrary unpickling, which could run code ({unsafe[0][:160]})"
            ) from None
        raise NeckkitError(f"{path} is not a readable PyTorch weight file (not a weights-only pickle)") from None
    except Exception as error:  # zip errors, truncated files, not a torch file at all
        raise NeckkitError(f"{path} is not a readable PyTorch weight file ({type(error).__name__}: {error})") from None


def extract_state_dict(checkpoint: Any, source: str = "checkpoint") -> dict[str, Tensor]:
    """The tensors of a checkpoint: unwraps ``{"state_dict": ...}`` and strips ``module.``."""
    state = checkpoint
    for key in WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not state:
        raise NeckkitError(f"{source} holds no state dict (expected a mapping of parameter names to tensors)")
    tensors: dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise NeckkitError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        clean = str(key)
        for substring in STRIPPED_SUBSTRINGS:
            clean = clean.replace(substring, "")
        tensors[clean] = value
    if all(key.startswith(CODEC_WRAPPER_PREFIX) for key in tensors):  # a neckkit codec's own state dict
        tensors = {key[len(CODEC_WRAPPER_PREFIX) :]: value for key, value in tensors.items()}
    return tensors


def _is_table(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in CODER_TABLES


def remap_legacy_entropy_keys(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename old CompressAI EntropyBottleneck names (``_matrix0``) to the current ones (``matrices.0``)."""
    from compressai.entropy_models import EntropyBottleneck
    from compressai.models.utils import remap_old_keys

    for name, module in model.named_modules():
        if isinstance(module, EntropyBottleneck):
            state = dict(remap_old_keys(name, state))
    return state


def _entropy_models(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from compressai.entropy_models import EntropyModel

    return [(name, module) for name, module in model.named_modules() if isinstance(module, EntropyModel)]


def _parameter_stamp(model: nn.Module) -> tuple[Any, ...]:
    """Changes whenever an entropy model's parameters are replaced or changed in place (optimiser steps, loads)."""
    return tuple((id(p), p._version) for _, module in _entropy_models(model) for p in module.parameters())


def stored_tables(model: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
    """The CDF tables ``state`` holds for every entropy model of ``model`` (non-empty), else None."""
    entropy = _entropy_models(model)
    if not entropy:
        return None
    found: dict[str, Tensor] = {}
    for name, module in entropy:
        needed = TABLE_BUFFERS + (("scale_table",) if "scale_table" in module._buffers else ())
        for buffer in needed:
            value = state.get(f"{name}.{buffer}" if name else buffer)
            if not isinstance(value, Tensor) or value.numel() == 0:
                return None
            found[f"{name}.{buffer}" if name else buffer] = value
    return found


def install_tables(model: nn.Module, tables: Mapping[str, Tensor]) -> None:
    """Put ``tables`` into the entropy models' buffers as they are (any size) and mark them stored."""
    for key, value in tables.items():
        owner, _, buffer = key.rpartition(".")
        module = model.get_submodule(owner)
        current = module._buffers[buffer]
        module._buffers[buffer] = value.detach().to(dtype=current.dtype, device=current.device).clone()
    mark_entropy_tables(model, STORED)


def mark_entropy_tables(model: nn.Module, source: str) -> None:
    """Record where ``model``'s tables come from (:data:`STORED` or :data:`REBUILT`), for the current weights."""
    object.__setattr__(model, TABLES_ATTR, (source, _parameter_stamp(model)))


def _marked(model: nn.Module) -> nn.Module:
    """The module carrying the tables' mark: ``model``, or a neckkit adapter's library model (``.model``)."""
    inner = getattr(model, "model", None)
    return inner if getattr(model, TABLES_ATTR, None) is None and isinstance(inner, nn.Module) else model


def entropy_tables(model: nn.Module) -> str | None:
    """"stored" (the file's tables), "rebuilt" (built by ``update()`` here) or None (not recorded).

    Accepts a neckkit codec adapter that keeps the library model as ``.model``.
    """
    mark = getattr(_marked(model), TABLES_ATTR, None)
    return mark[0] if mark else None


def stored_tables_current(model: nn.Module) -> bool:
    """Whether ``model`` codes with a file's stored tables and its entropy parameters have not changed since."""
    mark = getattr(model, TABLES_ATTR, None)
    return bool(mark) and mark[0] == STORED and mark[1] == _parameter_stamp(model)


def stored_tables_differ(model: nn.Module) -> bool:
    """Whether ``model`` codes with stored tables that differ from those ``update()`` builds from its weights.

    False for rebuilt tables and for stored ones that equal a rebuild (e.g. tables neckkit saved
    in its own checkpoints); True for e.g. the authors' CompressAI 1.2.0 tables. Computed on copies
    of the entropy models, once per set of weights.
    """
    import copy

    from compressai.entropy_models import EntropyBottleneck, GaussianConditional

    inner = _marked(model)
    if not stored_tables_current(inner):
        return False
    cached = getattr(inner, _DIFFER_ATTR, None)
    if cached is not None and cached[0] == _parameter_stamp(inner):
        return cached[1]
    differ = False
    for _, module in _entropy_models(inner):
        fresh = copy.deepcopy(module)
        if isinstance(fresh, GaussianConditional):
            fresh.update_scale_table(fresh.scale_table, force=True)
        elif isinstance(fresh, EntropyBottleneck):
            fresh.update(force=True)
        else:
            continue
        if any(not torch.equal(getattr(fresh, name), getattr(module, name)) for name in TABLE_BUFFERS):
            differ = True
            break
    object.__setattr__(inner, _DIFFER_ATTR, (_parameter_stamp(inner), differ))
    return differ


def load_codec_state(
    model: nn.Module, state: dict[str, Tensor], source: str, recomputed: tuple[str, ...] = ()
) -> None:
    """Load ``state`` into a CompressAI-style codec strictly; use its entropy tables, or rebuild them.

    ``recomputed``: key suffixes the model derives itself (attention masks, relative-position
    indices) and which are dropped from the file. Any other missing, unexpected or wrongly
    shaped tensor is one error line naming the keys. When the file holds the CDF tables of every
    entropy model they are installed as stored (not rebuilt); otherwise they are rebuilt from the
    weights and one notice line (stderr) says so.
    """
    state = remap_legacy_entropy_keys(model, state)
    state = {key: value for key, value in state.items() if not key.endswith(recomputed)}
    expected = model.state_dict()
    problems = state_dict_mismatches(expected, state, skip=lambda key: _is_table(key) or key.endswith(recomputed))
    if problems:
        raise NeckkitError(f"{source} does not fit {type(model).__name__}: {'; '.join(problems)}")
    tables = stored_tables(model, state)
    for key, value in expected.items():  # the model's own tables load as they are; the file's are installed below
        if key not in state or _is_table(key):
            state[key] = value
    model.load_state_dict(state, strict=False)  # some models rebuild tables here: the stored ones go back below
    if tables is not None:
        install_tables(model, tables)
        return
    if _entropy_models(model):
        print(f"Notice: {source} carries no (complete) entropy-coder tables; rebuilt them from the weights", file=sys.stderr)
    update_entropy_tables(model)


def update_entropy_tables(model: nn.Module) -> None:
    """Rebuild every CDF table from the current weights (CompressAI's ``update(force=True)``).

    A model without CompressAI's ``update`` (e.g. a plugin's ``Codec`` holding entropy models) rebuilds with
    its ``update_entropy_tables()``, else each of its CompressAI entropy models is rebuilt
    (:func:`neckkit.loading.rebuild_tables.rebuild_entropy_models`).
    """
    update = getattr(model, "update", None)
    rebuild = getattr(model, "update_entropy_tables", None)
    if callable(update):
        update(force=True)
        mark_entropy_tables(model, REBUILT)
    elif callable(rebuild):
        rebuild()
    else:
        from neckkit.loading.rebuild_tables import rebuild_entropy_models

        rebuild_entropy_models(model)
