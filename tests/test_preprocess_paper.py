"""Issue 14 C3: the authors' exact preprocessing as an option (``--preprocess paper``).

Training crops: torchvision's PIL ``Resize(256)`` (bilinear) + ``CenterCrop(256)``; evaluation crops
the same with bicubic; the encoder's resize of the crop is normalised without clamping.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision import transforms

from conftest import cli_workspace, invoke
from neckkit.config.paper import DataConfig
from neckkit.interfaces.preprocess import (
    OPENAI_MEAN,
    OPENAI_STD,
    normalize,
    pil_resize_center_crop,
    preprocessing,
    resize_center_crop,
    resize_center_crop_normalize,
)
from neckkit.samples import sample_images
from neckkit.training.data import open_image_set
from neckkit.training.feature_cache_keys import data_fingerprint


def _reference(path: Path, interpolation: transforms.InterpolationMode) -> torch.Tensor:
    """The authors' pipeline, written out with torchvision's own PIL transforms."""
    pipeline = transforms.Compose([transforms.Resize(256, interpolation=interpolation), transforms.CenterCrop(256),
                                   transforms.ToTensor()])
    with Image.open(path) as image:
        return pipeline(image.convert("RGB"))


@pytest.mark.parametrize(("split", "mode"), [("train", transforms.InterpolationMode.BILINEAR),
                                             ("eval", transforms.InterpolationMode.BICUBIC)])
def test_paper_crops_are_torchvisions_pil_transforms(split: str, mode: transforms.InterpolationMode) -> None:
    images = open_image_set(None, DataConfig(preprocess="paper"), split=split)
    ours = open_image_set(None, DataConfig(), split=split)
    for index, path in enumerate(sample_images()):
        crop, label = images[index]
        assert crop.shape == (3, 256, 256) and label == -1
        assert torch.equal(crop, _reference(path, mode))
        assert (crop - ours[index][0]).abs().max() > 1 / 255  # a different pipeline, visibly


def test_transparency_is_white_by_default_and_dropped_as_the_authors_do_under_paper(tmp_path) -> None:
    pixels = Image.new("RGBA", (300, 300), (10, 200, 30, 0))  # fully transparent, green underneath
    pixels.save(tmp_path / "clear.png")
    ours = open_image_set(tmp_path, DataConfig())[0][0]
    theirs = open_image_set(tmp_path, DataConfig(preprocess="paper"))[0][0]
    assert torch.allclose(ours, torch.ones(3, 256, 256), atol=1e-5)
    expected = torch.tensor([10, 200, 30], dtype=torch.float32).div(255).view(3, 1, 1).expand(3, 256, 256)
    assert torch.allclose(theirs, expected, atol=1e-6)


def test_pil_crop_refuses_other_interpolations_and_splits() -> None:
    with Image.open(sample_images()[0]) as image, pytest.raises(ValueError, match="bilinear or bicubic"):
        pil_resize_center_crop(image, 256, 256, "nearest")
    with pytest.raises(Exception, match="split must be train or eval"):
        open_image_set(None, split="test")


def test_paper_mode_normalises_the_encoders_resize_unclamped() -> None:
    torch.manual_seed(0)
    crop = (torch.rand(1, 3, 256, 256) > 0.5).float()  # hard edges: bicubic overshoots [0, 1]
    resized = TF.resize(crop, [224], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    assert resized.max() > 1 and resized.min() < 0
    clamped = resize_center_crop_normalize(crop, 224, OPENAI_MEAN, OPENAI_STD)
    with preprocessing("paper"):
        unclamped = resize_center_crop_normalize(crop, 224, OPENAI_MEAN, OPENAI_STD)
        with preprocessing("neckkit"):  # nested: the inner mode wins, then the outer comes back
            assert torch.equal(resize_center_crop_normalize(crop, 224, OPENAI_MEAN, OPENAI_STD), clamped)
        assert torch.equal(resize_center_crop(crop, 224, 224), resized)
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(unclamped, (resized - mean) / std)
    torch.testing.assert_close(clamped, (resized.clamp(0, 1) - mean) / std)
    assert torch.equal(normalize(resized, OPENAI_MEAN, OPENAI_STD), clamped)  # outside: clamped again
    with pytest.raises(ValueError, match="preprocess must be one of neckkit, paper"):
        with preprocessing("authors"):
            pass


def test_the_d1_cache_key_names_the_paper_pipeline_only() -> None:
    paths = sample_images()
    assert data_fingerprint(paths, DataConfig()) == data_fingerprint(paths, DataConfig(preprocess="neckkit"))
    assert data_fingerprint(paths, DataConfig(preprocess="paper")) != data_fingerprint(paths, DataConfig())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    with cli_workspace(tmp_path_factory, "paper-preprocess") as (runner, host, folder):
        trained = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--max-steps", "2",
                         "--preprocess", "paper", "--out", str(folder / "neck"), "--no-progress")
        assert trained.exit_code == 0, trained.output
        yield runner, host, folder


def test_train_records_the_paper_pipeline_in_its_config(workspace) -> None:
    _, _, folder = workspace
    meta = json.loads((folder / "neck" / "best" / "meta.json").read_text())
    assert meta["config"]["data"]["preprocess"] == "paper"


def test_eval_with_the_paper_pipeline_differs_and_says_so(workspace) -> None:
    runner, host, folder = workspace
    reports = {}
    for mode in ("neckkit", "paper"):
        result = invoke(runner, host, "eval", "--neck", str(folder / "neck"), "--preprocess", mode,
                        "--out", str(folder / f"eval-{mode}"), "--no-progress", "--json")
        assert result.exit_code == 0, result.output
        reports[mode] = json.loads(result.stdout)
    assert (reports["neckkit"]["preprocess"], reports["paper"]["preprocess"]) == ("neckkit", "paper")
    rows = {mode: {(r["point"], r["path"]): r for r in report["rows"]} for mode, report in reports.items()}
    assert rows["paper"][("neck", "neck")]["bpp"] != rows["neckkit"][("neck", "neck")]["bpp"]  # other crops


def test_an_unknown_pipeline_is_one_line_error(workspace) -> None:
    runner, host, folder = workspace
    result = invoke(runner, host, "eval", "--neck", str(folder / "neck"), "--preprocess", "authors",
                    "--out", str(folder / "bad"))
    assert result.exit_code == 2  # a usage error (docs/cli.md, Errors)
    assert "--preprocess must be one of neckkit, paper, got 'authors'" in result.output
    assert not (folder / "bad").exists()
