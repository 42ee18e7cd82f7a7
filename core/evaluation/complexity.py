"""Exact multiply-accumulate (MAC) and parameter counts of a forward pass, for ``neckkit bench``.

:class:`MacCounter` is a ``TorchFunctionMode``: while it is active it sees every call into torch's
Python API (``F.linear``, ``F.conv2d``, ``Tensor.__matmul__``, ``F.scaled_dot_product_attention``,
...) with the real argument and result shapes, whichever module or library made the call and
whichever kernel then runs it. It counts

- matrix products: ``F.linear`` (``nn.Linear``), ``matmul`` / ``@`` / ``mm`` / ``bmm`` / ``addmm`` /
  ``baddbmm``, two-operand ``einsum``: ``output elements x inner dimension``;
- convolutions: ``F.conv{1,2,3}d``: ``output elements x in_channels / groups x kernel``;
  ``F.conv_transpose{1,2,3}d``: ``input elements x out_channels / groups x kernel`` (every input
  pixel scatters one full kernel, as fvcore and torch's ``FlopCounterMode`` count it);
- attention: ``F.scaled_dot_product_attention``: ``QK^T`` (``L x S x E`` per batch and head) plus
  ``AV`` (``L x S x Ev``), whatever backend (math, flash, fused CPU) then runs it;
  ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, open_clip's blocks): the input
  and output projections plus ``QK^T`` and ``AV``, from the shapes, because its insides are not
  seen one by one.

Nothing else is counted: normalisation, activations, softmax, additions, resampling are not MACs.
That is the usual "matrix products and attention" convention; the paper's 52.795 kMAC/pixel for
its neck is 0.2 % above what this gives (52.688), the difference being such element-wise work.

Calls are counted once: while torch runs a call the mode is switched off, so the ``F.linear``
inside a counted composite is not counted again. A composite torch function that has its own
override point and contains matrix products but is not listed here would be missed; every
function the built-in codecs and encoders use is listed.

Why not ``torch.utils.flop_counter.FlopCounterMode``: it counts at the ATen level, and with torch
2.14 on CPU it counts nothing for ``aten._scaled_dot_product_flash_attention_for_cpu`` (the fused
kernel ``F.scaled_dot_product_attention`` takes for equal head sizes, so CLIP's QK^T and AV vanish)
nor for ``aten._native_multi_head_attention`` (``nn.MultiheadAttention``'s inference fast path, so a
whole open_clip attention, projections included, counts 0). With the math backend
(``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``) and gradients enabled it sees every product,
and then it agrees exactly with this counter (``tests/test_bench.py``).

:class:`MacCounter` also records the parameters (``nn.Parameter`` arguments) the counted calls
used, which gives the parameters of a piece of computation that is a method rather than a module
(an encoder's ``embed`` plus its first blocks).
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

__all__ = ["Complexity", "MacCounter", "count_parameters", "kmac_per_pixel", "measure"]


def _matmul(out: Tensor, a: Tensor, b: Tensor) -> int:
    return out.numel() * a.shape[-1]


def _linear(out: Tensor, args: tuple, kwargs: dict) -> int:
    weight = kwargs.get("weight", args[1] if len(args) > 1 else None)
    return out.numel() * weight.shape[-1]  # weight [out, in]; out [..., out]


def _conv(out: Tensor, args: tuple, kwargs: dict) -> int:
    weight = kwargs.get("weight", args[1] if len(args) > 1 else None)
    return out.numel() * math.prod(weight.shape[1:])  # weight [out, in / groups, *kernel]


def _conv_transpose(out: Tensor, args: tuple, kwargs: dict) -> int:
    source = kwargs.get("input", args[0] if args else None)
    weight = kwargs.get("weight", args[1] if len(args) > 1 else None)
    return source.numel() * math.prod(weight.shape[1:])  # weight [in, out / groups, *kernel]


def _sdpa(out: Tensor, args: tuple, kwargs: dict) -> int:
    names = ("query", "key", "value")
    query, key, value = (kwargs[n] if n in kwargs else args[i] for i, n in enumerate(names))
    length, source = query.shape[-2], key.shape[-2]
    batch_heads = out.numel() // (length * value.shape[-1])  # query's batch and heads, broadcast
    return batch_heads * length * source * (query.shape[-1] + value.shape[-1])


_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)


def _multi_head_attention(out: Any, args: tuple, kwargs: dict) -> int:
    """Projections and attention of ``F.multi_head_attention_forward`` (sequence-first or unbatched)."""
    bound = _MHA_SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    query, key, value = a["query"], a["key"], a["value"]
    embed = query.shape[-1]
    batch = query.shape[1] if query.ndim == 3 else 1
    length = query.shape[0]
    if a["static_k"] is not None:  # precomputed [batch * heads, S, head_dim]: no key/value projection
        source = a["static_k"].shape[1]
        projections = length * embed * embed
    else:
        source = key.shape[0]
        projections = length * embed * embed + source * (key.shape[-1] + value.shape[-1]) * embed
    source += int(a["bias_k"] is not None) + int(a["add_zero_attn"])
    attention = 2 * length * source * embed  # QK^T and AV over all heads (head_dim * heads = embed)
    out_projection = length * embed * embed
    return batch * (projections + attention + out_projection)


def _einsum(out: Tensor, args: tuple, kwargs: dict) -> int:
    equation, *operands = args
    if len(operands) == 1 and isinstance(operands[0], list | tuple):
        operands = list(operands[0])
    if len(operands) != 2 or "..." in equation:
        return 0  # not a plain two-operand contraction; nothing here uses one
    sizes: dict[str, int] = {}
    for letters, operand in zip(equation.split("->")[0].split(","), operands, strict=True):
        sizes.update(zip(letters.strip(), operand.shape, strict=True))
    return math.prod(sizes.values())


def _matmul_rule(swap: bool = False) -> Callable[[Tensor, tuple, dict], int]:
    def rule(out: Tensor, args: tuple, kwargs: dict) -> int:
        a, b = (args[1], args[0]) if swap else (args[0], args[1])
        return _matmul(out, a, b)

    return rule


def _addmm_rule(out: Tensor, args: tuple, kwargs: dict) -> int:
    return _matmul(out, args[1], args[2])  # (input, mat1, mat2): out = input + mat1 @ mat2


_RULES: dict[Callable[..., Any], tuple[str, Callable[[Any, tuple, dict], int]]] = {}
for _func in (torch.matmul, Tensor.matmul, Tensor.__matmul__, torch.mm, Tensor.mm, torch.bmm, Tensor.bmm):
    _RULES[_func] = ("matmul", _matmul_rule())
_RULES[Tensor.__rmatmul__] = ("matmul", _matmul_rule(swap=True))
for _func in (torch.addmm, Tensor.addmm, torch.baddbmm, Tensor.baddbmm):
    _RULES[_func] = ("matmul", _addmm_rule)
_RULES[torch.einsum] = ("matmul", _einsum)
_RULES[F.linear] = ("linear", _linear)
for _func in (F.conv1d, F.conv2d, F.conv3d):
    _RULES[_func] = ("conv", _conv)
for _func in (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d):
    _RULES[_func] = ("conv_transpose", _conv_transpose)
_RULES[F.scaled_dot_product_attention] = ("attention", _sdpa)
_RULES[F.multi_head_attention_forward] = ("multi_head_attention", _multi_head_attention)


class MacCounter(TorchFunctionMode):
    """Counts the MACs of the torch calls made while active (``with MacCounter() as counter:``).

    ``macs`` is the total, ``by_kind`` splits it (``linear``, ``conv``, ``conv_transpose``,
    ``matmul``, ``attention``, ``multi_head_attention``), ``parameters`` maps ``id`` to every
    ``nn.Parameter`` a call received.
    """

    def __init__(self) -> None:
        super().__init__()
        self.by_kind: Counter[str] = Counter()
        self.parameters: dict[int, nn.Parameter] = {}

    @property
    def macs(self) -> int:
        return sum(self.by_kind.values())

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters.values())

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rule = _RULES.get(func)
        if rule is not None:
            kind, count = rule
            result = out[0] if isinstance(out, tuple) else out
            self.by_kind[kind] += int(count(result, args, kwargs))
        for leaf in tree_flatten((args, kwargs))[0]:
            if isinstance(leaf, nn.Parameter):
                self.parameters[id(leaf)] = leaf
        return out


@dataclass
class Complexity:
    """MACs and parameters of one measured call."""

    macs: int
    parameters_used: int  # parameters the counted calls received
    by_kind: dict[str, int] = field(default_factory=dict)


def measure(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, Complexity]:
    """Run ``function(*args, **kwargs)`` once under a :class:`MacCounter`: (its result, the counts)."""
    with MacCounter() as counter:
        result = function(*args, **kwargs)
    return result, Complexity(counter.macs, counter.parameter_count, dict(counter.by_kind))


def count_parameters(modules: nn.Module | Iterable[nn.Module]) -> int:
    """Parameters of ``modules``, each shared tensor counted once."""
    modules = [modules] if isinstance(modules, nn.Module) else list(modules)
    unique = {id(p): p for module in modules for p in module.parameters()}
    return sum(p.numel() for p in unique.values())


def kmac_per_pixel(macs: int, height: int, width: int) -> float:
    """Thousands of MACs per input pixel."""
    return macs / (height * width) / 1000.0
