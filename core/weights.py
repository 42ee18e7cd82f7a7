"""Weight fingerprints: short, stable ids of a module's parameters for cache keys and checks."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch
from torch import nn


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
