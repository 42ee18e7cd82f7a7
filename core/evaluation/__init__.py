"""Evaluation: rate vs. task quality sweeps, their metrics and reports, and compute counts.

- :mod:`neckkit.evaluation.sweep`: :class:`Evaluator`, :class:`RatePoint` (every image through every point and path);
- :mod:`neckkit.evaluation.annotations`: reference captions and questions;
- :mod:`neckkit.evaluation.image_quality`: PSNR / MS-SSIM;
- :mod:`neckkit.evaluation.caption_tokenizer`, :mod:`neckkit.evaluation.caption_scores`: caption tokenisation
  and scores (BLEU, CIDEr-D, METEOR, SPICE); :mod:`neckkit.evaluation.vqa`: VQA accuracy;
  :mod:`neckkit.evaluation.text_metrics`: the three in one import (the module before it was split);
- :mod:`neckkit.evaluation.rate_axis`: the ``--rate`` axes (payload, file, estimated bpp);
- :mod:`neckkit.evaluation.bd_rate`: curves grouped by codec identity, BD-rate and BD-quality between them;
- :mod:`neckkit.evaluation.report`: JSON, CSV, table and plots (:mod:`neckkit.evaluation.plot_layout`: where
  labels go, flat axes for metrics that do not differ);
- :mod:`neckkit.evaluation.complexity`: exact MAC and parameter counts (``neckkit bench``).

``from neckkit.evaluation import Evaluator, RatePoint, ...`` (the module before core/ was grouped)
keeps working; the names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_SWEEP_NAMES = (
    "CAPTION_FIELDS", "DEFAULT_CAPTION_PROMPT", "MEAN_FIELDS", "PATHS", "RATE_FIELDS", "UNCOMPRESSED",
    "Evaluator", "RatePoint", "Tasks", "embedding_error", "zero_shot_hits",
)


def __getattr__(name: str) -> Any:
    if name in _SWEEP_NAMES:
        return getattr(importlib.import_module("neckkit.evaluation.sweep"), name)
    raise AttributeError(f"module 'neckkit.evaluation' has no attribute {name!r}")


__all__ = list(_SWEEP_NAMES)
