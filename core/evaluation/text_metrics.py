"""Caption and VQA scores for ``neckkit eval``: MLLM answers on compressed images against human references.

Captions are scored the way the COCO caption evaluation (pycocoevalcap) scores them: PTB-tokenised,
lower-cased, punctuation dropped, then BLEU-1..4, METEOR, CIDEr-D and SPICE. BLEU and CIDEr are pure
Python; METEOR, SPICE and the PTB tokenizer run Java. Without Java the tokenizer falls back to a
pure-Python imitation and METEOR/SPICE are reported as skipped with the reason.

VQA answers are scored with the official VQA accuracy (answer normalisation and the mean of
``min(1, matches / 3)`` over the leave-one-out subsets of the human answers).

Split into one module per concept; this module re-exports their names (and the private ones
older code and tests read), so ``from neckkit.evaluation.text_metrics import score_captions`` keeps working:

- :mod:`neckkit.evaluation.caption_tokenizer`: PTB and simple tokenisation (``tokenize_captions``, ``simple_tokens``);
- :mod:`neckkit.evaluation.caption_scores`: ``score_captions`` (BLEU, CIDEr-D, the METEOR and SPICE processes);
- :mod:`neckkit.evaluation.vqa`: ``normalize_answer`` and ``vqa_accuracy``.
"""

from __future__ import annotations

from neckkit.evaluation import caption_scores, caption_tokenizer, vqa
from neckkit.evaluation.caption_scores import *  # noqa: F403
from neckkit.evaluation.caption_scores import (  # noqa: F401  (private names: read by older code and tests)
    _check_inputs,
    _meteor,
    _pycocoevalcap,
    _spice,
    _stop_meteor,
    _tokenize_corpus,
)
from neckkit.evaluation.caption_tokenizer import *  # noqa: F403
from neckkit.evaluation.caption_tokenizer import (  # noqa: F401
    _last_line,
    _ptb_tokenize,
    _ptb_unavailable,
    _simple_tokenize,
    _tokenize,
)
from neckkit.evaluation.vqa import *  # noqa: F403

__all__ = [*caption_tokenizer.__all__, *caption_scores.__all__, *vqa.__all__]
