"""Caption scores: BLEU-1..4, CIDEr-D, METEOR and SPICE of MLLM captions against human references.

Scored the way the COCO caption evaluation (pycocoevalcap) scores them, on captions tokenised by
:mod:`neckkit.evaluation.caption_tokenizer`. BLEU and CIDEr are pure Python; METEOR and SPICE run
Java processes, which are always stopped; without Java they are reported as skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neckkit.errors import NeckkitError, first_line
from neckkit.evaluation.caption_tokenizer import JAVA_MISSING, _last_line, _simple_tokenize, _tokenize

__all__ = ["INSTALL_HINT", "CaptionScores", "MeteorScorer", "score_captions", "spice_unavailable"]

INSTALL_HINT = "caption scoring needs pycocoevalcap: pip install 'neckkit[eval]'"


@dataclass
class CaptionScores:
    """Corpus-level caption scores; ``None`` where a metric was skipped (``skipped`` says why)."""

    bleu1: float
    bleu2: float
    bleu3: float
    bleu4: float
    cider: float
    meteor: float | None
    spice: float | None
    tokenizer: str  # "ptb" or "simple": the tokenizer actually used
    skipped: dict[str, str] = field(default_factory=dict)  # metric (or "ptb") -> one-line reason
    per_image_cider: dict[str, float] = field(default_factory=dict)
    per_image_meteor: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def score_captions(
    candidates: dict[str, str],
    references: dict[str, list[str]],
    tokenizer: str = "auto",
    meteor: bool = True,
    spice: bool = True,
    meteor_scorer: MeteorScorer | None = None,
) -> CaptionScores:
    """BLEU-1..4, CIDEr-D, METEOR and SPICE of one candidate per image against its references.

    Scores are corpus-level, as in the COCO caption evaluation: BLEU accumulates clipped n-gram
    counts and lengths over all images (brevity penalty with the closest reference length), METEOR
    aggregates its statistics over the corpus, CIDEr-D and SPICE are means over images. CIDEr's
    IDF comes from the references being evaluated, so an n-gram found in every image's references
    weighs nothing: with a single image CIDEr is always 0, and it is only meaningful over a test set.
    METEOR and SPICE need Java (SPICE also the Stanford CoreNLP jars, which pycocoevalcap downloads
    on first use and this function never does); when they cannot run they are ``None`` and
    ``skipped`` says why. ``meteor_scorer``: one METEOR process shared by many calls (else one
    is started and stopped for this call).
    """
    _check_inputs(candidates, references)
    modules = _pycocoevalcap()
    gts, res, used, ptb_reason = _tokenize_corpus(candidates, references, tokenizer)
    if not any(caption for captions in gts.values() for caption in captions):
        raise NeckkitError("every reference caption is empty after tokenization")

    bleu, _ = modules["Bleu"](4).compute_score(gts, res, verbose=0)
    cider, per_image = modules["Cider"]().compute_score(gts, res)
    scores = CaptionScores(
        *(float(value) for value in bleu),
        cider=float(cider),
        meteor=None,
        spice=None,
        tokenizer=used,
        per_image_cider={key: float(value) for key, value in zip(res, per_image, strict=True)},
    )
    if ptb_reason is not None:
        scores.skipped["ptb"] = f"{ptb_reason}; used the simple tokenizer"
    if meteor:
        if meteor_scorer is not None:
            scores.meteor, scores.per_image_meteor, reason = meteor_scorer.score(gts, res)
        else:
            scores.meteor, scores.per_image_meteor, reason = _meteor(gts, res)
    else:
        reason = "not requested"
    if reason is not None:
        scores.skipped["meteor"] = reason
    scores.spice, reason = _spice(gts, res) if spice else (None, "not requested")
    if reason is not None:
        scores.skipped["spice"] = reason
    return scores


def _check_inputs(candidates: dict[str, str], references: dict[str, list[str]]) -> None:
    if not candidates:
        raise NeckkitError("caption scoring needs at least one image with a candidate caption")
    for key in candidates:
        if key not in references:
            raise NeckkitError(f"image {key!r} has a candidate caption but no reference captions")
        if not isinstance(candidates[key], str):
            raise NeckkitError(f"the candidate caption of image {key!r} is not a string")
        if isinstance(references[key], str) or not references[key]:
            raise NeckkitError(f"image {key!r} needs a list of at least one reference caption")
    for key in references:
        if key not in candidates:
            raise NeckkitError(f"image {key!r} has reference captions but no candidate caption")


def _tokenize_corpus(
    candidates: dict[str, str], references: dict[str, list[str]], tokenizer: str
) -> tuple[dict[str, list[str]], dict[str, list[str]], str, str | None]:
    """References (gts) and candidates (res) tokenised in two runs, as the COCO evaluation does, by one tokenizer."""
    ids = list(candidates)
    texts = [text for key in ids for text in references[key]]
    tokens, used, reason = _tokenize(texts, tokenizer)
    try:
        candidate_tokens, _, _ = _tokenize([candidates[key] for key in ids], used)
    except NeckkitError as error:
        if tokenizer != "auto":
            raise
        tokens, used, reason = _simple_tokenize(texts), "simple", str(error)
        candidate_tokens = _simple_tokenize([candidates[key] for key in ids])
    gts, position = {}, 0
    for key in ids:
        gts[key] = tokens[position : position + len(references[key])]
        position += len(references[key])
    return gts, {key: [caption] for key, caption in zip(ids, candidate_tokens, strict=True)}, used, reason


def _pycocoevalcap() -> dict[str, Any]:
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError as error:
        raise NeckkitError(INSTALL_HINT) from error
    return {"Bleu": Bleu, "Cider": Cider}


class MeteorScorer:
    """One METEOR Java process for many corpora (``neckkit eval``: one per evaluation, not per row).

    Started on the first :meth:`score`, stopped by :meth:`close` (or leaving the ``with`` block).
    After a failure (no Java, a JVM that will not start or that breaks) every later call returns
    the same reason without starting another process.
    """

    def __init__(self) -> None:
        self._scorer: Any = None
        self._reason: str | None = None
        self.started = 0  # JVMs started

    def score(self, gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float | None, dict[str, float], str | None]:
        """Corpus METEOR, per-image METEOR and the reason it was skipped."""
        if self._reason is not None:
            return None, {}, self._reason
        if self._scorer is None:
            if shutil.which("java") is None:
                self._reason = JAVA_MISSING
                return None, {}, self._reason
            from pycocoevalcap.meteor.meteor import Meteor

            try:
                self._scorer = Meteor()
            except OSError as error:
                self._reason = f"could not start METEOR: {first_line(error)}"
                return None, {}, self._reason
            self.started += 1
        try:
            score, per_image = self._scorer.compute_score(gts, res)
        except Exception as error:  # a broken METEOR must not sink the other scores
            detail = _stop_meteor(self._scorer)
            self._scorer = None
            self._reason = f"METEOR failed: {detail or first_line(error)}"
            return None, {}, self._reason
        return float(score), {key: float(value) for key, value in zip(gts, per_image, strict=True)}, None

    def close(self) -> None:
        """Stop the Java process, if one runs."""
        if self._scorer is not None:
            _stop_meteor(self._scorer)
            self._scorer = None

    def __enter__(self) -> MeteorScorer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float | None, dict[str, float], str | None]:
    """Corpus METEOR in a process of its own, always stopped (see :class:`MeteorScorer`)."""
    with MeteorScorer() as scorer:
        return scorer.score(gts, res)


def _stop_meteor(scorer: Any) -> str:
    """Kill the METEOR JVM and close its pipes; its last stderr line, if any.

    ``Meteor.__del__`` takes ``scorer.lock`` first, and ``compute_score`` leaves it held when it
    raises, so the lock is released here or garbage collection would block forever.
    """
    process, error_output = scorer.meteor_p, ""
    try:
        process.kill()
        process.wait()
        if process.stderr is not None:
            error_output = process.stderr.read().decode("utf-8", "replace")
    finally:
        for stream in (process.stdin, process.stdout, process.stderr):
            try:
                if stream is not None:
                    stream.close()  # stdin may hold unflushed input for a dead JVM: BrokenPipeError
            except OSError:
                pass
        if scorer.lock.locked():
            scorer.lock.release()
    return _last_line(error_output) if error_output.strip() else ""


def _spice(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float | None, str | None]:
    """Mean SPICE F-score, or ``None`` and why it cannot run here (nothing is downloaded)."""
    missing = spice_unavailable()
    if missing is not None:
        return None, missing
    from pycocoevalcap.spice.spice import Spice

    try:
        score, _ = Spice().compute_score(gts, res)
    except Exception as error:  # e.g. the SPICE jar failing on this Java version
        return None, f"SPICE failed: {first_line(error)}"
    return float(score), None


def spice_unavailable() -> str | None:
    """Why SPICE cannot run without downloading anything, or ``None`` when it can."""
    if shutil.which("java") is None:
        return JAVA_MISSING
    from pycocoevalcap.spice import get_stanford_models as models

    lib = Path(models.SPICEDIR).resolve() / models.SPICELIB
    missing = [name for name in (f"{models.JAR}.jar", f"{models.JAR}-models.jar") if not (lib / name).is_file()]
    if missing:
        return f"needs the Stanford CoreNLP jars {' and '.join(missing)} in {lib} (pycocoevalcap downloads them)"
    return None
