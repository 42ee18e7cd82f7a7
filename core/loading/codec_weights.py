"""Loading foreign codec checkpoints (CompressAI, TransTIC, the paper's releases) safely.

Files are read with ``torch.load(weights_only=True)``: one that would need arbitrary unpickling is
refused, never executed. State dicts may be wrapped (``{"state_dict": ...}``) and carry
``module.`` prefixes from DataParallel; entropy-coder tables (CDFs) may be missing or sized for
other weights: they are rebuilt with ``update()`` after loading, so coding always works.
"""

from __future__ import annotations

import pickle
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


def load_codec_state(
    model: nn.Module, state: dict[str, Tensor], source: str, recomputed: tuple[str, ...] = ()
) -> None:
    """Load ``state`` into a CompressAI-style codec strictly, then rebuild its entropy tables.

    ``recomputed``: key suffixes the model derives itself (attention masks, relative-position
    indices) and which are dropped from the file. Any other missing, unexpected or wrongly
    shaped tensor is one error line naming the keys.
    """
    state = remap_legacy_entropy_keys(model, state)
    state = {key: value for key, value in state.items() if not key.endswith(recomputed)}
    expected = model.state_dict()
    problems = state_dict_mismatches(expected, state, skip=lambda key: _is_table(key) or key.endswith(recomputed))
    if problems:
        raise NeckkitError(f"{source} does not fit {type(model).__name__}: {'; '.join(problems)}")
    for key, value in expected.items():  # tables the file lacks: keep the model's own (rebuilt below)
        if key not in state:
            state[key] = value
    model.load_state_dict(state, strict=False)
    update_entropy_tables(model)


def update_entropy_tables(model: nn.Module) -> None:
    """Rebuild every CDF table from the current weights (CompressAI's ``update(force=True)``)."""
    update = getattr(model, "update", None)
    if callable(update):
        update(force=True)
