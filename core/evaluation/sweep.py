"""Rate vs. task quality: every image through every rate point and path (``neckkit eval``).

The three paths of the paper's figures:

- ``uncompressed``: the image itself through the full encoder (the upper bound; no rate);
- ``reconstruction``: the bitstream decoded to an image by the codec's synthesis transform, then the
  full encoder (the paper's *Reconstruction* baseline when the codec is the base codec, i.e. d1);
- ``neck``: the bitstream's latent through the transform-neck, entering the encoder at ``entry_layer``.

At every rate point each image is really compressed: the ``.nk`` file's bytes are built, parsed back
and entropy-decoded, so ``bpp`` is the size of the file a device would send (``payload_bpp``: the
entropy-coded streams only) and ``estimated_bpp`` the codec's likelihoods, as the paper reports.
Embedding errors compare each path's final embedding with the uncompressed image's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from neckkit.errors import NeckkitError, first_line
from neckkit.evaluation.annotations import Question
from neckkit.evaluation.caption_scores import MeteorScorer
from neckkit.interfaces import MLLM, Codec, VisualEncoder
from neckkit.neck.transform import TransformNeck

PATHS = ("uncompressed", "reconstruction", "neck")
RATE_FIELDS = ("bpp", "payload_bpp", "estimated_bpp")
MEAN_FIELDS = (*RATE_FIELDS, "psnr", "ms_ssim", "embedding_mse", "embedding_cosine", "top1", "top5")
CAPTION_FIELDS = ("bleu4", "cider", "meteor", "spice")
DEFAULT_CAPTION_PROMPT = "Describe the image in one short sentence."
UNCOMPRESSED = "uncompressed"


@dataclass
class RatePoint:
    """One codec operating point; with a neck, its neck path is evaluated too."""

    label: str
    codec_name: str
    codec: Codec
    codec_options: dict[str, Any] = field(default_factory=dict)  # recorded in the .nk header
    neck: TransformNeck | None = None
    entry_layer: int | None = None
    info: dict[str, Any] = field(default_factory=dict)  # scenario, rate_lambda, quality, checkpoint
    level: float | None = None  # a variable-rate codec's rate level (recorded in the .nk header)
    fingerprint: str = field(init=False)  # of the codec's weights, written into every .nk header

    def __post_init__(self) -> None:
        from neckkit.bitstream.container import stream_fingerprint
        from neckkit.interfaces.image_codec import is_image_codec

        self.fingerprint = self.codec.fingerprint if is_image_codec(self.codec) else stream_fingerprint(self.codec)

    @property
    def coding_key(self) -> tuple[Any, ...]:
        """Points with equal keys code an image to the same file (one codec, header options and level)."""
        return (self.codec_name, self.fingerprint, repr(sorted(self.codec_options.items())), self.level)

    @property
    def paths(self) -> tuple[str, ...]:
        return ("reconstruction", "neck") if self.neck is not None else ("reconstruction",)


@dataclass
class Tasks:
    """What is scored beyond embeddings: zero-shot labels, captions, questions."""

    class_names: list[str] | None = None
    labels: dict[str, int] = field(default_factory=dict)  # image key -> class index
    captions: dict[str, list[str]] = field(default_factory=dict)  # image key -> reference captions
    questions: dict[str, list[Question]] = field(default_factory=dict)  # image key -> questions
    mllm: MLLM | None = None
    caption_prompt: str = DEFAULT_CAPTION_PROMPT
    generation: dict[str, Any] = field(default_factory=lambda: {"max_new_tokens": 30})


def embedding_error(embedding: Tensor, reference: Tensor) -> tuple[float, float]:
    """(MSE over the embedding's dimensions, cosine similarity) of [1, D] against [1, D]."""
    embedding, reference = embedding.float().flatten(1), reference.float().flatten(1)  # [1, D] (native: [1, N*D])
    mse = F.mse_loss(embedding, reference).item()
    cosine = F.cosine_similarity(embedding, reference, dim=-1).item()
    return mse, cosine


def zero_shot_hits(embedding: Tensor, classifier: Tensor, label: int) -> tuple[float, float | None]:
    """(top-1 hit, top-5 hit) of the image embedding [1, D] against a classifier [D, C].

    Top-5 is ``None`` with five classes or fewer, where it is always a hit.
    """
    logits = F.normalize(embedding.float(), dim=-1) @ classifier.to(embedding.device)  # [1, C]
    ranked = logits[0].argsort(descending=True)
    top5 = float(label in ranked[:5].tolist()) if classifier.shape[1] > 5 else None
    return float(ranked[0].item() == label), top5


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


class Evaluator:
    """Feeds images through the points and paths, keeping one record per (image, point, path)."""

    def __init__(
        self,
        points: list[RatePoint],
        encoder: VisualEncoder,
        tasks: Tasks | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        labels = [point.label for point in points]
        if len(set(labels)) != len(labels) or UNCOMPRESSED in labels:
            raise NeckkitError(f"rate point labels must be unique and not {UNCOMPRESSED!r}, got {labels}")
        self.points, self.encoder, self.tasks = points, encoder, tasks or Tasks()
        self.device = torch.device(device)
        self.records: list[dict[str, Any]] = []
        self.failures: list[dict[str, str]] = []
        self.notices: list[str] = []
        self.classifier: Tensor | None = None
        if self.tasks.class_names:
            if encoder.has_text_tower:
                from neckkit.training.zero_shot import openai_templates

                self.classifier = encoder.text_classifier(self.tasks.class_names, openai_templates())
            else:
                self.notices.append(f"{type(encoder).__name__} has no text tower: no zero-shot accuracy")
        for point in points:
            self._check_widths(point)

    def _check_widths(self, point: RatePoint) -> None:
        from neckkit.interfaces.image_codec import is_image_codec

        if is_image_codec(point.codec):
            if point.neck is not None:
                raise NeckkitError(f"rate point {point.label!r}: {point.codec_name} has no latent for a neck to read")
            return
        neck = point.neck
        if neck is not None and (neck.width != self.encoder.width or neck.latent_channels != point.codec.latent_channels):
            raise NeckkitError(
                f"rate point {point.label!r}: the neck maps {neck.latent_channels} latent channels to width "
                f"{neck.width}, but the codec has {point.codec.latent_channels} and the encoder width {self.encoder.width}"
            )

    # -- a batch of images ----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, key: str, image: Tensor) -> None:
        """All points and paths for one image [1, 3, H, W] in [0, 1]; failures are recorded, not raised."""
        self.evaluate_batch([key], image)

    @torch.no_grad()
    def evaluate_batch(self, keys: list[str], images: Tensor) -> None:
        """All points and paths for images [B, 3, H, W] of one size, as one batch per stage.

        Each codec shared by several points (necks trained on one base codec) analyses, compresses,
        decodes and reconstructs the batch once. When anything fails for the batch, its images are
        evaluated one at a time instead, so a failure is counted for the image that caused it.
        """
        if images.ndim != 4 or images.shape[0] != len(keys):
            raise NeckkitError(f"evaluate_batch takes {len(keys)} images [B, 3, H, W], got shape {list(images.shape)}")
        if len(keys) > 1:
            try:
                records = self._batch_records(keys, images.to(self.device))
            except Exception:  # noqa: BLE001  (retried image by image below, which records the failure)
                for index, key in enumerate(keys):
                    self.evaluate_batch([key], images[index : index + 1])
                return
            self.records.extend(records)
            return
        key, image = keys[0], images.to(self.device)
        try:
            reference, record = self._uncompressed(keys, image)
        except Exception as error:  # the image fails on every path: count it once
            self._fail(key, UNCOMPRESSED, error)
            return
        self.records.extend(record)
        for group in self._codec_groups():
            try:
                self.records.extend(self._group_records(group, keys, image, reference))
            except Exception as error:
                for point in group:
                    self._fail(key, point.label, error)

    def _batch_records(self, keys: list[str], images: Tensor) -> list[dict[str, Any]]:
        reference, records = self._uncompressed(keys, images)
        for group in self._codec_groups():
            records.extend(self._group_records(group, keys, images, reference))
        return records

    def _fail(self, key: str, point: str, error: BaseException) -> None:
        self.failures.append({"image": key, "point": point, "error": f"{type(error).__name__}: {first_line(error)}"})

    def _codec_groups(self) -> list[list[RatePoint]]:
        """Points that code with one codec object and one header (coded once per batch), in order."""
        groups: dict[tuple[Any, ...], list[RatePoint]] = {}
        for point in self.points:
            groups.setdefault((id(point.codec), *point.coding_key), []).append(point)
        return list(groups.values())

    def _uncompressed(self, keys: list[str], images: Tensor) -> tuple[Tensor, list[dict[str, Any]]]:
        reference = self.encoder.encode(self.encoder.preprocess(images))  # [B, D]
        records = [{"image": key, "point": UNCOMPRESSED, "path": UNCOMPRESSED,
                    **self._embedding_scores(key, reference[i : i + 1], reference[i : i + 1])}
                   for i, key in enumerate(keys)]
        mllm = self.tasks.mllm
        if mllm is not None:
            pixels = mllm.visual_encoder.preprocess(images)
            self._mllm_scores(records, lambda rows, prompts: mllm.generate_from_pixels(pixels[rows], prompts, **self.tasks.generation))
        return reference, records

    def _group_records(self, group: list[RatePoint], keys: list[str], images: Tensor, reference: Tensor) -> list[dict[str, Any]]:
        """The batch through one codec: real files, the Reconstruction path, then each point's neck."""
        from neckkit.bitstream.coding import transmit
        from neckkit.bitstream.container import NkFile, bpp
        from neckkit.bitstream.padding import crop_padding, pad_to_multiple
        from neckkit.interfaces.codec import LatentPayload, at_level, compress_with_analysis
        from neckkit.interfaces.image_codec import is_image_codec
        from neckkit.interfaces.mllm import grid_options
        from neckkit.neck.regions import latent_view, token_grid_of
        from neckkit.training.neck_path import bits_per_item

        first, codec = group[0], group[0].codec
        if is_image_codec(codec):
            return self._image_codec_records(group, keys, images, reference)
        padded, padding = pad_to_multiple(images, codec.pad_multiple)
        with at_level(codec, first.level) as level:
            analysis = codec.analyze(padded)  # once: its likelihoods give estimated_bpp, its latents are coded
            payload = compress_with_analysis(codec, padded, analysis)
        estimated = bits_per_item(analysis.likelihoods)  # [B]
        files = []
        for i, key in enumerate(keys):
            item = LatentPayload(strings=[[stream[i]] for stream in payload.strings], shape=payload.shape)
            nk = NkFile.from_payload(item, codec=first.codec_name, fingerprint=first.fingerprint,
                                     original_size=tuple(images.shape[-2:]), padding=padding,
                                     options=first.codec_options, level=level)
            files.append(transmit(nk, source=f"{key} at {first.label}")[1])  # parsed from the bytes a device sends
        decoded = [nk.to_payload() for nk in files]
        with at_level(codec, files[0].level):
            y_hat = codec.decompress_latent(LatentPayload(  # [B, C, h, w], from the files' own streams
                strings=[[item.strings[s][0] for item in decoded] for s in range(len(decoded[0].strings))],
                shape=decoded[0].shape)).to(self.device)
        x_hat = crop_padding(codec.synthesize(y_hat), padding).clamp(0, 1)  # [B, 3, H, W]
        shared = []
        for i, (key, nk) in enumerate(zip(keys, files, strict=True)):
            rates = bpp(nk)
            shared.append({"image": key, "bpp": rates.file_bpp, "payload_bpp": rates.payload_bpp,
                           "estimated_bpp": float(estimated[i]) / rates.pixels})
        reconstruction = self._reconstruction_records(shared, images, x_hat, reference)
        mllm = self.tasks.mllm
        view = latent_view(y_hat, images.shape[-2:], padding, self.encoder)  # what the encoder sees (neck.regions)
        grid = token_grid_of(self.encoder, images.shape[-2:])
        records = []
        for point in group:
            records.extend({"image": record["image"], "point": point.label, **record} for record in reconstruction)
            if point.neck is None:
                continue
            tokens = point.neck(view, level=level, grid=grid)  # [B, T, width] entering block entry_layer
            embeddings = self.encoder.finish_from(tokens, point.entry_layer, grid)  # [B, D] ([B, N, D]: native)
            neck = [{"image": key, "point": point.label, **shared[i], "path": "neck",
                     **self._embedding_scores(key, embeddings[i : i + 1], reference[i : i + 1])} for i, key in enumerate(keys)]
            if mllm is not None:
                self._mllm_scores(neck, lambda rows, prompts, tokens=tokens, start=point.entry_layer: mllm.generate(
                    tokens[rows], prompts, start=start, **self.tasks.generation, **grid_options(self.encoder, grid)))
            records.extend(neck)
        return records

    def _image_codec_records(self, group: list[RatePoint], keys: list[str], images: Tensor,
                             reference: Tensor) -> list[dict[str, Any]]:
        """The Reconstruction path of an image codec (JPEG, AVIF, VTM...): each image coded to its own file's bytes
        in a ``.nk``, parsed back and decoded by the library; no latent, no estimated rate."""
        from neckkit.bitstream.coding import compress_image, reconstruct_image, transmit
        from neckkit.bitstream.container import bpp

        first, codec = group[0], group[0].codec
        decoded, shared = [], []
        for i, key in enumerate(keys):
            source = f"{key} at {first.label}"
            _, nk = transmit(compress_image(codec, images[i : i + 1].cpu(), name=first.codec_name), source=source)
            decoded.append(reconstruct_image(codec, nk, name=first.codec_name, source=source).to(images.device))
            rates = bpp(nk)
            shared.append({"image": key, "bpp": rates.file_bpp, "payload_bpp": rates.payload_bpp, "estimated_bpp": None})
        x_hat = torch.cat(decoded).clamp(0, 1)  # [B, 3, H, W]
        reconstruction = self._reconstruction_records(shared, images, x_hat, reference)
        return [{"image": record["image"], "point": point.label, **record} for point in group for record in reconstruction]

    def _reconstruction_records(self, shared: list[dict[str, Any]], images: Tensor, x_hat: Tensor,
                                reference: Tensor) -> list[dict[str, Any]]:
        """One Reconstruction record per image: its rates (``shared``), the decoded image's PSNR and MS-SSIM,
        the encoder's embedding scores of ``x_hat`` [B, 3, H, W] and, with an MLLM, its answers about it."""
        from neckkit.evaluation.image_quality import ms_ssim, psnr

        embeddings = self.encoder.encode(self.encoder.preprocess(x_hat))  # [B, D]
        reconstruction = [{**rates, "path": "reconstruction", "psnr": psnr(images[i : i + 1], x_hat[i : i + 1]),
                           "ms_ssim": ms_ssim(images[i : i + 1], x_hat[i : i + 1]),
                           **self._embedding_scores(rates["image"], embeddings[i : i + 1], reference[i : i + 1])}
                          for i, rates in enumerate(shared)]
        mllm = self.tasks.mllm
        if mllm is not None:
            pixels = mllm.visual_encoder.preprocess(x_hat)
            self._mllm_scores(reconstruction, lambda rows, prompts: mllm.generate_from_pixels(
                pixels[rows], prompts, **self.tasks.generation))
        return reconstruction

    def _embedding_scores(self, key: str, embedding: Tensor, reference: Tensor) -> dict[str, Any]:
        mse, cosine = embedding_error(embedding, reference)
        scores: dict[str, Any] = {"embedding_mse": mse, "embedding_cosine": cosine}
        label = self.tasks.labels.get(key)
        if self.classifier is not None and label is not None:
            scores["top1"], scores["top5"] = zero_shot_hits(embedding, self.classifier, label)
        return scores

    def _mllm_scores(self, records: list[dict[str, Any]], ask: Callable[[list[int], list[str]], list[str]]) -> None:
        """Add the MLLM's caption and answers to each image's record on one path, in one ``ask`` call.

        ``ask(rows, prompts)`` answers ``prompts[j]`` about batch image ``rows[j]``.
        """
        from neckkit.evaluation.text_metrics import vqa_accuracy

        rows: list[int] = []
        prompts: list[str] = []
        for row, record in enumerate(records):
            if record["image"] in self.tasks.captions:
                rows.append(row)
                prompts.append(self.tasks.caption_prompt)
            for question in self.tasks.questions.get(record["image"], []):
                rows.append(row)
                prompts.append(question.question)
        if not prompts:
            return
        answers = iter(ask(rows, prompts))
        for record in records:
            if record["image"] in self.tasks.captions:
                record["caption"] = next(answers)
            questions = self.tasks.questions.get(record["image"], [])
            if questions:
                record["answers"] = [next(answers) for _ in questions]
                record["vqa"] = [vqa_accuracy(answer, list(q.answers)) for answer, q in zip(record["answers"], questions, strict=True)]

    # -- the table ------------------------------------------------------------------------------
    def rows(self, caption_options: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One row per (point, path), uncompressed first, then points by increasing bpp.

        Returns the rows and caption-scoring facts (tokenizer, skipped metrics).
        """
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for record in self.records:
            groups.setdefault((record["point"], record["path"]), []).append(record)
        info = {point.label: point for point in self.points}
        scoring: dict[str, Any] = {}
        rows = []
        with MeteorScorer() as meteor:  # one METEOR process for every row of the evaluation
            options = {**(caption_options or {}), "meteor_scorer": meteor}
            for (label, path), records in groups.items():
                rows.append(self._row(label, path, records, info, scoring, options))
        order = {path: index for index, path in enumerate(PATHS)}
        rows.sort(key=lambda row: (row["path"] != UNCOMPRESSED, row["bpp"] or 0.0, order[row["path"]]))
        return rows, scoring

    def _row(self, label: str, path: str, records: list[dict[str, Any]], info: dict[str, RatePoint],
             scoring: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"point": label, "path": path, "images": len(records)}
        point = info.get(label)
        row["codec"] = point.codec_name if point else None
        row["codec_fingerprint"] = point.fingerprint if point else None  # one codec, one Reconstruction point
        row["level"] = point.level if point else None
        row.update({name: point.info.get(name) if point else None
                    for name in ("scenario", "rate_lambda", "quality", "checkpoint", "neck_variant")})
        for name in MEAN_FIELDS:
            row[name] = _mean([record.get(name) for record in records])
        row.update(self._caption_scores(records, scoring, options))
        accuracies = [value for record in records for value in record.get("vqa", [])]
        row["vqa_accuracy"] = sum(accuracies) / len(accuracies) if accuracies else None
        return row

    def _caption_scores(self, records: list[dict[str, Any]], scoring: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        candidates = {record["image"]: record["caption"] for record in records if record.get("caption") is not None}
        if not candidates:
            return dict.fromkeys(CAPTION_FIELDS)
        from neckkit.evaluation.text_metrics import score_captions

        scores = score_captions(candidates, {key: self.tasks.captions[key] for key in candidates}, **options)
        scoring.update(tokenizer=scores.tokenizer, skipped=scores.skipped)
        return {name: getattr(scores, name) for name in CAPTION_FIELDS}
