"""The pieces of neckkit eval: image quality, embedding and zero-shot scores, annotation files, outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from neckkit.errors import NeckkitError
from neckkit.evaluation.annotations import Question, load_captions, load_questions, match_keys
from neckkit.evaluation.image_quality import ms_ssim, psnr
from neckkit.evaluation.report import json_safe, plot_rate_quality, plotted_metrics, table, write_csv, write_json
from neckkit.evaluation.sweep import embedding_error, zero_shot_hits
from neckkit.files import atomic_path


def test_psnr_of_a_constant_error_and_of_identical_images() -> None:
    image = torch.full((1, 3, 32, 32), 0.5)
    assert psnr(image, image + 0.1) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    assert psnr(image, image) == math.inf
    assert psnr(torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 2.0)) == pytest.approx(0.0)  # decoded clamped to 1


def test_ms_ssim_is_one_for_identical_images_and_absent_for_small_ones() -> None:
    image = torch.rand(1, 3, 176, 176, generator=torch.Generator().manual_seed(0))
    assert ms_ssim(image, image) == pytest.approx(1.0, abs=1e-5)
    noisy = (image + 0.2 * torch.randn(image.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert 0 < ms_ssim(image, noisy) < 0.99
    assert ms_ssim(image[..., :160, :160], image[..., :160, :160]) is None
    with pytest.raises(NeckkitError, match="one shape"):
        psnr(image, image[..., :100])


def test_embedding_error_and_zero_shot_hits() -> None:
    reference = torch.tensor([[1.0, 0.0, 0.0]])
    mse, cosine = embedding_error(torch.tensor([[0.0, 1.0, 0.0]]), reference)
    assert mse == pytest.approx(2 / 3) and cosine == pytest.approx(0.0)
    classifier = torch.eye(3)  # [D, C]: class c is axis c
    assert zero_shot_hits(torch.tensor([[0.1, 2.0, 0.3]]), classifier, 1) == (1.0, None)
    assert zero_shot_hits(torch.tensor([[0.1, 2.0, 0.3]]), classifier, 2) == (0.0, None)
    wide = torch.eye(7)
    embedding = torch.tensor([[7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    assert zero_shot_hits(embedding, wide, 4) == (0.0, 1.0)  # fifth best
    assert zero_shot_hits(embedding, wide, 5) == (0.0, 0.0)  # sixth best


def test_captions_in_both_formats(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"a.jpg": "a cat", "b.jpg": ["a dog", "a puppy"]}))
    assert load_captions(plain) == {"a.jpg": ["a cat"], "b.jpg": ["a dog", "a puppy"]}
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "annotations": [{"image_id": 2, "caption": "a dog"}, {"image_id": 1, "caption": "a cat"}, {"image_id": 2, "caption": "a puppy"}],
    }))
    assert load_captions(coco) == {"b.jpg": ["a dog", "a puppy"], "a.jpg": ["a cat"]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"a.jpg": []}', "non-empty string or list"),
        ('{"images": [{"id": 1}], "annotations": []}', "is not COCO captions JSON"),
        ('{"images": [], "annotations": [{"image_id": 3, "caption": "x"}]}', "unknown image_id 3"),
        ("{}", "holds no captions"),
    ],
)
def test_bad_caption_files_are_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "captions.json"
    path.write_text(content)
    with pytest.raises(NeckkitError, match=message):
        load_captions(path)


def test_questions_and_their_errors(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"questions": [{"image": "a.jpg", "question": "What?", "answers": ["cat", "kitten"]}]}))
    assert load_questions(path) == [Question("a.jpg", "What?", ("cat", "kitten"))]
    path.write_text(json.dumps([{"image": "a.jpg", "question": "What?"}]))
    with pytest.raises(NeckkitError, match="item 0 needs the keys image, question and answers"):
        load_questions(path)
    with pytest.raises(NeckkitError, match="does not exist"):
        load_questions(tmp_path / "missing.json")


def test_annotation_names_match_relative_paths_or_unique_file_names() -> None:
    keys = ["cat/a.jpg", "dog/a.jpg", "dog/b.jpg"]
    assert match_keys(["cat/a.jpg", "b.jpg"], keys, "captions") == {"cat/a.jpg": "cat/a.jpg", "b.jpg": "dog/b.jpg"}
    with pytest.raises(NeckkitError, match="'a.jpg'"):  # two images are called a.jpg
        match_keys(["a.jpg"], keys, "captions")


ROWS = [
    {"point": "uncompressed", "path": "uncompressed", "images": 2, "bpp": None, "embedding_cosine": 1.0, "top1": 0.5},
    {"point": "q1", "path": "reconstruction", "images": 2, "bpp": 0.2, "embedding_cosine": 0.7, "top1": 0.0, "psnr": 28.0},
    {"point": "q1", "path": "neck", "images": 2, "bpp": 0.2, "embedding_cosine": 0.9, "top1": 0.5},
    {"point": "q2", "path": "reconstruction", "images": 2, "bpp": 0.4, "embedding_cosine": 0.8, "top1": 0.5, "psnr": math.inf},
]


def test_outputs_json_csv_plot_and_table(tmp_path: Path) -> None:
    write_json(tmp_path / "r.json", {"rows": ROWS})
    assert json.loads((tmp_path / "r.json").read_text())["rows"][3]["psnr"] is None  # inf is not JSON
    write_csv(tmp_path / "r.csv", ROWS)
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith("point,path,codec,") and lines[2].startswith("q1,reconstruction,")
    assert plotted_metrics(ROWS) == ["embedding_cosine", "top1", "psnr"]
    assert plot_rate_quality(tmp_path / "r.png", ROWS, "file", title="test").metrics == ["embedding_cosine", "top1", "psnr"]
    with Image.open(tmp_path / "r.png") as plot:
        assert plot.format == "PNG" and plot.size[0] > plot.size[1]
    columns, cells = table(ROWS)
    assert columns == ["point", "path", "n", "file bpp", "PSNR", "cosine", "top-1"]
    assert cells[0] == ["uncompressed", "uncompressed", "2", "-", "-", "1.0000", "0.5000"]
    assert json_safe({"a": [math.nan, 1.0]}) == {"a": [None, 1.0]}


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "eval.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["eval.json"]
    with atomic_path(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["eval.json"]
