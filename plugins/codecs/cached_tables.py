"""Gaussian-conditional entropy decoding with its CDF table converted once, not on every call.

CompressAI's ``EntropyModel.decompress`` turns the whole ``_quantized_cdf`` table into Python lists
(64 scales x up to 3,133 entries, zero-padded) and hands them to the rANS decoder for every string:
for a small image that is most of the decoding time. :func:`cache_decoding_tables` gives a
``GaussianConditional`` a ``decompress`` that keeps the table as validated arrays
(:class:`~neckkit.bitstream.rans.CdfTables`) until the table tensors change, and decodes with
:func:`~neckkit.bitstream.rans.decode_symbols`, the bounds-checked twin of CompressAI's rANS decoder
(same symbols for every valid stream; a damaged one is a one-line error, never a read outside it).
The checks and ``dequantize`` are CompressAI's own, so the output is identical (every codec's
round-trip test checks it bit for bit).
"""

from __future__ import annotations

import types

import torch
from compressai.entropy_models import GaussianConditional
from torch import Tensor, nn

from neckkit.bitstream.rans import CdfTables, bound_entropy_decoding, decode_symbols

__all__ = ["cache_decoding_tables"]

_CACHE_ATTR = "_neckkit_decoding_tables"


def cache_decoding_tables(model: nn.Module) -> None:
    """Give every ``GaussianConditional`` in ``model`` the cached-table ``decompress``, and every other
    rANS decode the bounded decoder (:func:`~neckkit.bitstream.rans.bound_entropy_decoding`); idempotent."""
    bound_entropy_decoding(model)
    for module in model.modules():
        if isinstance(module, GaussianConditional) and "decompress" not in module.__dict__:
            module.decompress = types.MethodType(_decompress, module)


def _tables(module: GaussianConditional) -> CdfTables:
    """The validated decoding tables, rebuilt whenever a table tensor is replaced or changed."""
    buffers = (module._quantized_cdf, module._cdf_length, module._offset)
    key = tuple((tensor.data_ptr(), tensor._version, tuple(tensor.shape)) for tensor in buffers)
    cached = module.__dict__.get(_CACHE_ATTR)
    if cached is not None and cached[0] == key:
        return cached[1]
    tables = CdfTables.from_arrays(*(tensor.detach().cpu().numpy() for tensor in buffers))
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
    tables = _tables(self)
    outputs = self._quantized_cdf.new_empty(indexes.size())
    for i, string in enumerate(strings):
        item_indexes = indexes[i].reshape(-1).to(torch.int32).cpu().numpy()
        values = decode_symbols(string, item_indexes, tables)  # [N] int32; checks every index and read
        outputs[i] = torch.from_numpy(values).to(outputs.device, outputs.dtype).reshape(outputs[i].size())
    return self.dequantize(outputs, means, dtype)
