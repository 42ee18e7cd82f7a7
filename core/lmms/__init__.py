"""neckkit inside lmms-eval (the ``neckkit[lmms]`` extra): the ``neckkit`` model and a small offline benchmark.

- :mod:`neckkit.lmms.model`: :class:`~neckkit.lmms.model.NeckkitLMM`, registered with lmms-eval through the
  entry point group ``lmms_eval.models`` (:func:`manifest`), so ``python -m lmms_eval --model neckkit`` works
  once neckkit is installed;
- :mod:`neckkit.lmms.route`: how one benchmark image reaches the MLLM on each path (no lmms-eval import);
- :mod:`neckkit.lmms.tasks`: lmms-eval task YAMLs over the bundled photos (``--include_path``);
- :mod:`neckkit.lmms.benchmarks`: ``neckkit eval --tasks``, the tasks over every rate point and path.

Nothing here imports lmms-eval until it is used, so neckkit works without the extra.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LMMS_EXTRA", "manifest", "require_lmms_eval"]

LMMS_EXTRA = 'pip install "neckkit[lmms]"'


def require_lmms_eval() -> None:
    """One line saying which extra to install, when lmms-eval is missing."""
    from neckkit.errors import NeckkitError

    try:
        import lmms_eval  # noqa: F401
    except ImportError as error:
        raise NeckkitError(f"lmms-eval is not installed ({error}); install the benchmark extra: {LMMS_EXTRA}") from None


def manifest() -> Any:
    """The ``lmms_eval.models`` entry point: a ``ModelManifest`` naming :class:`~neckkit.lmms.model.NeckkitLMM`."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="neckkit", simple_class_path="neckkit.lmms.model.NeckkitLMM")
