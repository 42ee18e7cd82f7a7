"""Gaussian-conditional entropy decoding with its CDF table converted once, not on every call.

CompressAI's ``EntropyModel.decompress`` turns the whole ``_quantized_cdf`` table into Python lists
(64 scales x up to 3,133 entries, zero-padded) and hands them to the rANS decoder for every string:
for a small image that is most of the decoding time. :func:`cache_decoding_tables` gives a
``GaussianConditional`` a ``decompress`` that keeps those lists (each row cut to its own
``_cdf_length``, which is all the decoder reads) until the table tensors change, and passes only
the rows up to the largest index the string uses. The decoder, the symbols and ``dequantize`` are
CompressAI's own, so the output is identical (every codec's round-trip test checks it bit for bit).
"""

from __future__ import annotations

import types
from typing import Any

import torch
from compressai.entropy_models import GaussianConditional
from torch import Tensor, nn

__all__ = ["cache_decoding_tables"]

_CACHE_ATTR = "_neckkit_decoding_tables"


def cache_decoding_tables(model: nn.Module) -> None:
    """Give every ``GaussianConditional`` in ``model`` the cached-table ``decompress`` (idempotent)."""
    for module in model.modules():
        if isinstance(module, GaussianConditional) and "decompress" not in module.__dict__:
            module.decompress = types.MethodType(_decompress, module)


def _tables(module: GaussianConditional) -> tuple[list[list[int]], list[int], list[int]]:
    """(rows cut to their lengths, lengths, offsets), rebuilt whenever a table tensor is replaced or changed."""
    buffers = (module._quantized_cdf, module._cdf_length, module._offset)
    key = tuple((tensor.data_ptr(), tensor._version, tuple(tensor.shape)) for tensor in buffers)
    cached = module.__dict__.get(_CACHE_ATTR)
    if cached is not None and cached[0] == key:
        return cached[1]
    lengths = module._cdf_length.reshape(-1).int().tolist()
    rows = [row[:length] for row, length in zip(module._quantized_cdf.tolist(), lengths, strict=True)]
    tables = (rows, lengths, module._offset.reshape(-1).int().tolist())
    module.__dict__[_CACHE_ATTR] = (key, tables)
    return tables


def _decompress(self: GaussianConditional, strings: list[bytes], indexes: Tensor, dtype: torch.dtype = torch.float,
                means: Tensor | None = None) -> Tensor:
    """``EntropyModel.decompress`` with the cached tables (same checks, same decoder, same output)."""
    if not isinstance(strings, (tuple, list)):
        raise ValueError("Invalid `strings` parameter type.")
    if not len(strings) == indexes.size(0):
        raise ValueError("Invalid strings or indexes parameters")
    if len(indexes.size()) < 2:
        raise ValueError("Invalid `indexes` size. Expected a tensor with at least 2 dimensions.")
    self._check_cdf_size()
    self._check_cdf_length()
    self._check_offsets_size()
    if means is not None:
        if means.size()[:2] != indexes.size()[:2]:
            raise ValueError("Invalid means or indexes parameters")
        if means.size() != indexes.size():
            for i in range(2, len(indexes.size())):
                if means.size(i) != 1:
                    raise ValueError("Invalid means parameters")
    rows, lengths, offsets = _tables(self)
    outputs = self._quantized_cdf.new_empty(indexes.size())
    for i, string in enumerate(strings):
        item_indexes: list[Any] = indexes[i].reshape(-1).int().tolist()
        if item_indexes and not 0 <= min(item_indexes) <= max(item_indexes) < len(rows):
            raise ValueError("Invalid indexes: outside the CDF table")
        top = max(item_indexes) + 1 if item_indexes else 0
        values = self.entropy_coder.decode_with_indexes(string, item_indexes, rows[:top], lengths[:top], offsets[:top])
        outputs[i] = torch.tensor(values, device=outputs.device, dtype=outputs.dtype).reshape(outputs[i].size())
    return self.dequantize(outputs, means, dtype)
