"""Rebuilding a codec's entropy-coder tables from its current weights: what ``Codec.update_entropy_tables`` does by default.

CompressAI's entropy models keep CDF tables (``_quantized_cdf``, ``_offset``, ``_cdf_length``) computed from
their parameters; once training changes the parameters the tables are stale until rebuilt. The default
rebuild covers every CompressAI entropy model inside a module; tables held by anything else cannot be
rebuilt here (:func:`unrebuildable_tables` names them), and d2/d3, which train the codec, refuse such a codec
rather than save stale tables.
"""

from __future__ import annotations

from torch import nn

from neckkit.errors import NeckkitError
from neckkit.loading.codec_weights import REBUILT, TABLE_BUFFERS, _marked, mark_entropy_tables

__all__ = ["rebuild_entropy_models", "unrebuildable_tables"]


def _rebuildable(module: nn.Module) -> bool:
    from compressai.entropy_models import EntropyBottleneck, EntropyBottleneckVbr, GaussianConditional

    return isinstance(module, EntropyBottleneck | EntropyBottleneckVbr | GaussianConditional)


def _holds_tables(module: nn.Module) -> bool:
    return any(name in module._buffers for name in TABLE_BUFFERS)


def unrebuildable_tables(module: nn.Module) -> list[str]:
    """``name (Type)`` of each submodule holding CDF tables that :func:`rebuild_entropy_models` cannot rebuild."""
    return [
        f"{name or '<root>'} ({type(sub).__name__})"
        for name, sub in module.named_modules()
        if _holds_tables(sub) and not _rebuildable(sub)
    ]


def rebuild_entropy_models(module: nn.Module) -> None:
    """Rebuild the CDF tables of every CompressAI entropy model in ``module`` from its current parameters.

    ``EntropyBottleneck``: ``update(force=True)``; ``GaussianConditional``: its tables again from its own
    scale table (CompressAI's default table when it has none yet). Tables held by other modules are one
    :class:`NeckkitError` line, raised before anything is rebuilt.
    """
    from compressai.entropy_models import GaussianConditional
    from compressai.models.base import get_scale_table

    unknown = unrebuildable_tables(module)
    if unknown:
        raise NeckkitError(
            f"{type(module).__name__} holds entropy-coder tables that the default Codec.update_entropy_tables() "
            f"cannot rebuild: {', '.join(unknown)}; override update_entropy_tables() to rebuild them"
        )
    rebuilt = False
    for sub in module.modules():
        if isinstance(sub, GaussianConditional):
            scale_table = sub.scale_table if sub.scale_table.numel() else get_scale_table()
            sub.update_scale_table(scale_table, force=True)
        elif _rebuildable(sub):
            sub.update(force=True)
        rebuilt = rebuilt or _rebuildable(sub)
    if rebuilt:
        mark_entropy_tables(_marked(module), REBUILT)
