"""Training at native resolution: crop buckets, single-bucket batch plans, a d1 cache per bucket, tiny runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import load_file
from torch import Tensor, nn

from conftest import invoke
from neckkit.bitstream.images import load_image
from neckkit.config.paper import BUCKET_RATIOS, DataConfig
from neckkit.config.train import QUICK_START, TrainConfig
from neckkit.errors import NeckkitError
from neckkit.interfaces import VisualEncoder
from neckkit.neck.checkpoint import load_checkpoint
from neckkit.training.batches import BatchPlan, BucketPlan, PlanSampler
from neckkit.training.buckets import (
    bucket_multiple,
    bucket_shapes,
    nearest_bucket,
    rows_by_bucket,
    upright_size,
    with_buckets,
)
from neckkit.training.data import open_image_set
from neckkit.training.distributed import World
from neckkit.training.feature_cache import cache_folder_name, data_fingerprint
from neckkit.training.metrics_log import read_metrics
from neckkit.training.trainer import Trainer, TrainParts

pytestmark = pytest.mark.usefixtures("offline_cache")


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


class NativeToy(VisualEncoder):
    """A tiny native-resolution encoder: 16-pixel patches, sides read at multiples of 32, one output per token."""

    native_resolution, has_class_token = True, False
    width, embed_dim, grid, image_size, num_layers, entry_layer = 16, 8, 4, 64, 3, 1

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(3, self.width, 16, 16)
        self.layers = nn.ModuleList(nn.Linear(self.width, self.width) for _ in range(self.num_layers))
        self.proj = nn.Linear(self.width, self.embed_dim)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        return max(32, round(height / 32) * 32), max(32, round(width / 32) * 32)

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        read_h, read_w = self.input_size(height, width)
        return read_h // 16, read_w // 16

    def view_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        return 0.0, 0.0, float(height), float(width)

    def preprocess(self, x01: Tensor) -> Tensor:
        size = list(self.input_size(*x01.shape[-2:]))
        if size != list(x01.shape[-2:]):
            x01 = TF.resize(x01, size, antialias=True)
        return x01 * 2 - 1

    def embed(self, pixels: Tensor) -> Tensor:
        return self.patch(pixels).flatten(2).transpose(1, 2)  # [B, gh*gw, width]

    def blocks(self, tokens: Tensor, start: int, end: int, grid: tuple[int, int] | None = None) -> Tensor:
        for layer in self.layers[start:end]:
            tokens = tokens + torch.tanh(layer(tokens))
        return tokens

    def head(self, tokens: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        return self.proj(tokens)  # [B, gh*gw, embed_dim]: one output per token, as Qwen's merger

    def encode_from(self, tokens: Tensor, start: int, grid: tuple[int, int] | None = None) -> Tensor:
        return self.head(self.blocks(tokens, start, self.num_layers, grid), grid)


def quick_config(**overrides: object) -> TrainConfig:
    return TrainConfig().with_overrides({**QUICK_START, **overrides})


def train_parts(host, encoder: VisualEncoder | str, codec: str = "tic") -> TrainParts:
    from neckkit.bitstream.container import codec_fingerprint
    from neckkit.cli.components import build_component
    from neckkit.loading.weights import fingerprint
    from neckkit.neck.checkpoint import ComponentRef

    codec_name, codec_model = build_component(host, "codec", codec, {"tiny": True})
    if isinstance(encoder, str):
        encoder_name, encoder = build_component(host, "encoder", encoder, {"tiny": True})
    else:
        encoder_name = "native-toy"
    return TrainParts(
        codec_model, encoder,
        ComponentRef(name=codec_name, options={"tiny": True}, fingerprint=codec_fingerprint(codec_model)),
        ComponentRef(name=encoder_name, options={"tiny": True}, fingerprint=fingerprint(encoder)),
    )


def trainer(host, config: TrainConfig, run_dir: Path, encoder: VisualEncoder | str | None = None,
            codec: str = "tic", data: Path | None = None) -> Trainer:
    parts = train_parts(host, NativeToy() if encoder is None else encoder, codec)
    return Trainer(config, parts, open_image_set(data, config.data), run_dir, echo=lambda _t: None, progress=False)


def train_losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]


# -- bucket shapes and assignment ---------------------------------------------------------------------


def test_the_default_buckets_are_about_crop_squared_at_each_aspect_ratio() -> None:
    shapes = bucket_shapes(NativeToy(), DataConfig())
    assert shapes == [(256, 256), (224, 288), (288, 224), (224, 320), (320, 224)]  # (H, W): 1:1, 4:3, 3:4, 3:2, 2:3
    assert all(abs(h * w / 256**2 - 1) < 0.1 for h, w in shapes)


@pytest.mark.parametrize(
    ("width", "height", "bucket"),
    [(512, 512, (256, 256)), (640, 427, (224, 320)), (451, 300, (224, 320)), (300, 451, (320, 224)),
     (400, 300, (224, 288)), (300, 400, (288, 224)), (1000, 90, (224, 320)), (90, 1000, (320, 224)),
     (520, 480, (256, 256))],
)
def test_each_image_gets_the_bucket_nearest_its_aspect_ratio(width: int, height: int, bucket: tuple[int, int]) -> None:
    shapes = bucket_shapes(NativeToy(), DataConfig())
    assert shapes[nearest_bucket(height, width, shapes)] == bucket


@settings(max_examples=60, deadline=None)
@given(
    crop=st.integers(32, 640),
    ratios=st.lists(st.floats(0.2, 5.0), min_size=1, max_size=6),
    multiple=st.sampled_from([14, 28, 32, 64]),
)
def test_bucket_sides_are_multiples_of_the_encoders_multiple(crop: int, ratios: list[float], multiple: int) -> None:
    class Stated(NativeToy):  # an encoder that states patch x merge through its processor, as Qwen's do
        processor = type("Spec", (), {"factor": multiple})()

        def input_size(self, height: int, width: int) -> tuple[int, int]:
            return height, width

    config = DataConfig(crop=crop, bucket_ratios=tuple(ratios), bucket_multiple=99)
    encoder = Stated()
    assert bucket_multiple(encoder, config) == multiple
    shapes = bucket_shapes(encoder, config)
    assert 1 <= len(shapes) == len(set(shapes)) <= len(ratios)
    for height, width in shapes:
        assert height % multiple == 0 and width % multiple == 0 and min(height, width) >= multiple

    def near(side: int, ideal: float) -> bool:  # the nearest multiple, or one multiple where that would be 0
        return abs(side - ideal) <= multiple / 2 or (side == multiple and ideal < multiple)

    for height, width in shapes:  # each bucket is some ratio's ideal sides (area crop**2), rounded
        assert any(near(height, math.sqrt(crop**2 / r)) and near(width, math.sqrt(crop**2 * r)) for r in ratios)


def test_without_a_stated_multiple_the_configs_is_used_and_square_encoders_have_no_buckets(host) -> None:
    class PatchAndMerge(NativeToy):
        patch_size, merge_size = 14, 2

    assert bucket_multiple(NativeToy(), DataConfig(bucket_multiple=48)) == 48
    assert bucket_multiple(PatchAndMerge(), DataConfig(bucket_multiple=48)) == 28
    square = train_parts(host, "clip-l").encoder
    with pytest.raises(NeckkitError, match="reads square images"):
        bucket_shapes(square, DataConfig())


def test_image_sizes_are_read_upright_from_the_header_without_decoding(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 60 wide, 20 high; shown rotated: 20 wide, 60 high
    Image.new("RGB", (60, 20), (200, 30, 30)).save(path, exif=exif)
    (tmp_path / "plain.png").write_bytes(b"")
    Image.new("RGB", (50, 30)).save(tmp_path / "plain.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert tuple(load_image(path).shape[-2:]) == (60, 20)

    from PIL import ImageFile

    def no_decoding(self: object) -> None:
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert upright_size(path) == (60, 20)
    assert upright_size(tmp_path / "plain.png") == (30, 50)
    with pytest.raises(NeckkitError, match="broken.png is not a readable image"):
        upright_size(tmp_path / "broken.png")
    monkeypatch.setenv("NECKKIT_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(NeckkitError, match="more than the 1000 neckkit reads"):
        upright_size(tmp_path / "plain.png")  # 1500 pixels: refused from the header, as load_image would


def test_bucket_crops_have_their_buckets_shape_ordered_by_bucket_without_unreadable_files(tmp_path: Path) -> None:
    Image.new("RGB", (90, 120), (10, 200, 10)).save(tmp_path / "portrait.png")  # 3:4
    (tmp_path / "unreadable.png").write_bytes(b"not a png")
    data = open_image_set(None)
    data.paths = [*data.paths, tmp_path / "portrait.png", tmp_path / "unreadable.png"]
    shapes = bucket_shapes(NativeToy(), data.config)
    bucketed = with_buckets(data, shapes)
    names = [path.name for path in bucketed.paths]
    assert names == ["astronaut.jpg", "portrait.png", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    assert bucketed.crop_shapes == [(256, 256), (288, 224)] + [(224, 320)] * 3  # buckets 1:1, 3:4, 3:2
    assert len(data.skipped) == 1 and "unreadable.png is not a readable image" in data.skipped[0]
    for index, shape in enumerate(bucketed.crop_shapes):
        image, label = bucketed[index]
        assert tuple(image.shape) == (3, *shape) and label == -1
        assert 0 <= float(image.min()) and float(image.max()) <= 1
    assert list(rows_by_bucket([4, 0, 1, 2], bucketed.crop_shapes).items()) == [
        ((256, 256), [0]), ((288, 224), [1]), ((224, 320), [4, 2])]


# -- batch plans ---------------------------------------------------------------------------------------


def test_every_planned_batch_is_one_bucket_and_a_function_of_seed_and_step() -> None:
    groups = [[0, 1, 2, 3, 4], [5, 6], [7]]
    bucket_of = {row: b for b, group in enumerate(groups) for row in group}
    plan = BucketPlan(groups, batch_size=2, seed=3)
    batches = [plan.batch(step) for step in range(40)]
    for step, batch in enumerate(batches):
        assert len(batch) == 2 and {bucket_of[row] for row in batch} == {plan.bucket(step)}
    fresh = BucketPlan(groups, batch_size=2, seed=3)  # resuming: any step without the ones before it
    assert [fresh.batch(step) for step in reversed(range(40))] == list(reversed(batches))
    assert [BucketPlan(groups, 2, 4).batch(step) for step in range(40)] != batches
    epoch = len(plan.turns)
    assert epoch == 3 + 1 + 1  # ceil(5/2) + ceil(2/2) + ceil(1/2) batches
    for start in range(0, 40 - epoch + 1, epoch):  # every row at least once an epoch
        assert {row for batch in batches[start:start + epoch] for row in batch} == set(range(8))
    ranks = [list(PlanSampler(plan, 0, 40, World(rank=rank, size=2))) for rank in range(2)]
    assert [a + b for a, b in zip(*ranks, strict=True)] == batches  # torchrun ranks split one global batch
    one = BucketPlan([[3, 5, 7, 9]], 2, seed=1)  # one bucket whose batches fill its passes: the square plan
    assert [one.batch(step) for step in range(9)] == [BatchPlan([3, 5, 7, 9], 2, seed=1).batch(step) for step in range(9)]


# -- the trainer ----------------------------------------------------------------------------------------


def test_the_square_cache_key_is_the_one_square_runs_always_used(host, tmp_path: Path) -> None:
    config = quick_config(max_steps=1, checkpoint_every=1)
    square = trainer(host, config, tmp_path / "run", encoder="clip-l")
    parts = square.parts
    expected = {
        "data": data_fingerprint(square.data.paths, config.data),
        "codec": "tic",
        "codec_fingerprint": parts.codec_ref.fingerprint,
        "encoder": "clip-l",
        "encoder_fingerprint": parts.encoder_ref.fingerprint,
        "token_layer": None,
        "dtype": "float32",
        "fields": "y_hat,bits,teacher,pixels,teacher_tokens v1",
    }
    assert square.cache_key(expected["data"]) == expected
    summary = square.run().summary
    assert Path(summary["cache_dir"]).name == cache_folder_name(expected) and "buckets" not in summary
    assert square.row_shapes is None


def test_the_d1_cache_has_one_folder_per_bucket_keyed_by_its_shape(host, tmp_path: Path) -> None:
    config = quick_config(max_steps=2, checkpoint_every=2)
    summary = trainer(host, config, tmp_path / "run").run().summary
    assert summary["buckets"] == {"256x256": 1, "320x224": 3}  # width x height: the astronaut, three 3:2 photos
    folders = [Path(folder) for folder in summary["cache_dirs"]]
    assert len(folders) == 2 and summary["cache_built"] is True and "cache_dir" not in summary
    for folder, shape, count in zip(folders, [(256, 256), (224, 320)], [1, 3], strict=True):
        index = json.loads((folder / "index.json").read_text())
        assert index["key"]["bucket"] == list(shape) and index["count"] == count
        assert index["key"]["fields"] == "y_hat,bits,teacher,pixels,image_size,teacher_tokens v1"
        assert folder.name == cache_folder_name(index["key"])
        assert index["fields"]["image_size"]["shape"] == [2]
        assert index["fields"]["teacher"]["shape"] == [shape[0] // 16 * shape[1] // 16, NativeToy.embed_dim]
    again = trainer(host, config, tmp_path / "again").run().summary
    assert again["cache_built"] is False and again["cache_dirs"] == summary["cache_dirs"]


def test_cached_and_uncached_bucket_training_give_the_same_losses(host, tmp_path: Path) -> None:
    config = quick_config(max_steps=4, log_every=1, checkpoint_every=4)
    trainer(host, config, tmp_path / "cached").run()
    uncached = trainer(host, config.with_overrides({"cache": False}), tmp_path / "uncached").run().summary
    assert "cache_dirs" not in uncached and uncached["buckets"] == {"256x256": 1, "320x224": 3}
    assert train_losses(tmp_path / "cached") == pytest.approx(train_losses(tmp_path / "uncached"), rel=1e-4)


def test_held_out_batches_are_one_bucket_each(host, tmp_path: Path, monkeypatch) -> None:
    from neckkit.training import validation

    shapes: list[tuple[int, ...]] = []
    real = validation.DataLoader

    def recording(*args, **kwargs):  # the held-out loaders: record each batch's crop shape
        for batch in real(*args, **kwargs):
            shapes.append(tuple(batch["images"].shape[-2:]))
            yield batch

    monkeypatch.setattr(validation, "DataLoader", recording)
    config = quick_config(max_steps=1, checkpoint_every=1, val_fraction=0.5, cache=False)
    summary = trainer(host, config, tmp_path / "run").run().summary
    assert sorted(shapes) == [(224, 320), (256, 256)]  # two held-out images of two buckets: two batches
    assert summary["best"]["distillation"] > 0


def test_neckkit_train_tiny_with_qwen3_vl_over_the_bundled_photos_writes_a_checkpoint(runner, host, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(runner, host, "train", "--codec", "elic", "--encoder", "qwen3-vl-vit", "--tiny", "--max-steps", "4",
                    "--set", "checkpoint_every=2", "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "crop buckets 256x256 (1), 320x224 (3)" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["buckets"] == {"256x256": 1, "320x224": 3}
    assert len(summary["cache_dirs"]) == 2 and math.isfinite(summary["last_distillation"])
    checkpoint = load_checkpoint(out)
    assert checkpoint.path.name == "best" and checkpoint.meta.encoder.name == "qwen3-vl-vit"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]


def test_resume_of_a_bucket_run_ends_with_the_same_weights(host, tmp_path: Path) -> None:
    config = quick_config(max_steps=6, checkpoint_every=3, log_every=1)
    trainer(host, config, tmp_path / "whole").run()
    trainer(host, config.with_overrides({"max_steps": 3}), tmp_path / "cut").run()
    trainer(host, config, tmp_path / "cut").run(resume=True)
    final = Path("checkpoints") / "step-00000006" / "neck.safetensors"
    whole, cut = load_file(tmp_path / "whole" / final), load_file(tmp_path / "cut" / final)
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)
    assert train_losses(tmp_path / "cut") == train_losses(tmp_path / "whole")


def test_a_variable_rate_codec_trains_over_buckets_and_levels(host, tmp_path: Path) -> None:
    config = quick_config(max_steps=3, log_every=1, checkpoint_every=3, **{"neck.levels": [0.0, 7.0]})
    summary = trainer(host, config, tmp_path / "run", codec="mbt2018-mean-vbr").run().summary
    assert summary["levels"] == [0.0, 7.0] and len(summary["cache_dirs"]) == 2
    index = json.loads((Path(summary["cache_dirs"][1]) / "index.json").read_text())
    assert index["key"]["bucket"] == [224, 320] and index["key"]["levels"] == [0.0, 7.0]
    assert {"y_hat_l0", "y_hat_l1", "image_size"} <= set(index["fields"])
    assert {"distillation_at_0", "distillation_at_7"} <= set(summary["best"])


def test_unreadable_files_are_left_out_of_the_buckets_and_counted(host, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name, size in (("wide1.png", (96, 64)), ("wide2.png", (150, 100)), ("square.png", (80, 80))):
        Image.new("RGB", size, (120, 60, 200)).save(data / name)
    (data / "broken.png").write_bytes(b"not a png")
    lines: list[str] = []
    config = quick_config(max_steps=1, checkpoint_every=1, val_fraction=0.0)
    parts = train_parts(host, NativeToy())
    summary = Trainer(config, parts, open_image_set(data, config.data), tmp_path / "run", echo=lines.append,
                      progress=False).run().summary
    assert summary["skipped_images"] == 1 and summary["buckets"] == {"256x256": 1, "320x224": 2}
    assert any(line.startswith("Skipped 1 unreadable files, e.g. ") and "broken.png" in line for line in lines)


def test_paper_crops_are_refused_for_a_native_encoder_in_one_line(host, tmp_path: Path) -> None:
    with pytest.raises(NeckkitError, match="native resolution.*--preprocess paper"):
        trainer(host, quick_config(**{"data.preprocess": "paper"}), tmp_path / "run")


def test_the_default_buckets_leave_a_saved_config_as_it_was(tmp_path: Path) -> None:
    config = TrainConfig()
    assert set(config.model_dump(mode="json")["data"]) == {"resize", "crop", "preprocess"}
    every = config.model_dump(mode="json", context={"all_fields": True})["data"]
    assert tuple(every["bucket_ratios"]) == BUCKET_RATIOS and every["bucket_multiple"] == 32
    changed = config.with_overrides({"data.bucket_ratios": [1.0, 2.0]})
    assert changed.model_dump(mode="json")["data"]["bucket_ratios"] == [1.0, 2.0]
    assert TrainConfig.load(changed.save(tmp_path / "config.yaml")).data.bucket_ratios == (1.0, 2.0)
    with pytest.raises(Exception, match="bucket_ratios"):
        DataConfig(bucket_ratios=(1.0, 0.0))
