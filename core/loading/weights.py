"""Weight fingerprints: short, stable ids of a module's parameters for cache keys and checks."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn


def fingerprint(module: nn.Module, length: int = 16, exclude: tuple[str, ...] = ()) -> str:
    """Hex digest of every tensor in ``module.state_dict()`` (names, shapes, dtypes and values).

    Two modules with equal weights get equal fingerprints whatever device they live on, so a
    cache keyed by it is reused exactly when the weights are the same. ``exclude``: key
    suffixes left out (e.g. entropy-coder tables that ``update()`` derives from the weights).
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if exclude and name.endswith(exclude):
            continue
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:length]


@contextlib.contextmanager
def seeded_init(seed: int = 0) -> Iterator[None]:
    """Deterministic random init inside the block, without touching the global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def few_names(names: Iterable[str], limit: int = 3) -> str:
    """``"a, b, c (+4 more)"``: a sorted sample of names for a one-line error."""
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def state_dict_mismatches(
    expected: Mapping[str, Tensor],
    state: Mapping[str, Tensor],
    skip: Callable[[str], bool] = lambda key: False,
    reference: str = "expected",
) -> list[str]:
    """Why ``state`` does not fit a model whose state dict is ``expected``, one phrase per kind.

    ``["missing a, b", "unexpected c", "wrong shape d [3] (expected [8])"]``; empty when it fits.
    Keys for which ``skip`` is true may be absent or of any shape.
    """
    missing = [key for key in expected if key not in state and not skip(key)]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f"{key} {list(value.shape)} ({reference} {list(expected[key].shape)})"
        for key, value in state.items()
        if key in expected and not skip(key) and value.shape != expected[key].shape
    ]
    return [
        f"{label} {few_names(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
        if keys
    ]
