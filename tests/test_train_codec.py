"""``neckkit train-codec`` (issue 22): fine-tuning a variable-rate codec on R + lambda_s * 255^2 * MSE at random levels.

Tiny ``mbt2018-mean-vbr`` (8 levels, QVRF's lambdas by default), 64x64 crops of the bundled photos, a few steps each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

from conftest import invoke
from neckkit.training.metrics_log import read_metrics

CODEC = "mbt2018-mean-vbr"
LEVELS = 8
QVRF = [0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18]


def train_codec(runner, host, out: Path, *extra: str):
    return invoke(runner, host, "train-codec", "--codec", CODEC, "--tiny", "--no-progress", "--out", str(out), *extra)


def child_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def codec_state(path: Path) -> dict[str, Tensor]:
    return torch.load(path, weights_only=True)


def assert_same_state(a: dict[str, Tensor], b: dict[str, Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if a[key].shape != b[key].shape or not torch.equal(a[key], b[key])]
    assert not different, different


def train_records(run: Path) -> list[dict]:
    return [record for record in read_metrics(run / "metrics.jsonl") if record["kind"] == "train"]


def fixed_batch() -> Tensor:
    import torchvision.transforms.v2.functional as TF

    from neckkit.bitstream.images import load_image
    from neckkit.samples import sample_images

    return torch.cat([TF.center_crop(load_image(path), [64, 64]) for path in sample_images()])  # [4, 3, 64, 64]


def tiny_config(**changes):
    from neckkit.config.codec_train import CODEC_QUICK_START, CodecTrainConfig

    return CodecTrainConfig.validate_data({**CODEC_QUICK_START, **changes})


def tiny_codec(host, **options):
    from neckkit.cli.components import build_component

    return build_component(host, "codec", CODEC, {"tiny": True, **options})[1]


# -- the loss --------------------------------------------------------------------------------------------


def test_the_rd_loss_averaged_over_all_levels_goes_down_on_the_bundled_photos(host, tmp_path: Path) -> None:
    from neckkit.samples import sample_images
    from neckkit.training.codec_loss import mean_level_loss
    from neckkit.training.codec_training import CodecTrainer

    config = tiny_config(steps=30)
    codec = tiny_codec(host)
    batch = fixed_batch()
    before = mean_level_loss(codec, batch, config.lambdas, config.distortion_scale)
    result = CodecTrainer(config, codec, CODEC, {"tiny": True}, sample_images(), tmp_path / "run", progress=False).run()
    after = mean_level_loss(codec, batch, config.lambdas, config.distortion_scale)
    assert result.steps == 30
    assert after < 0.5 * before, (before, after)


# -- the run folder ----------------------------------------------------------------------------------------


def test_a_run_writes_metrics_checkpoints_levels_and_a_codec_weights_file(runner, host, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = train_codec(runner, host, out, "--steps", "4")
    assert result.exit_code == 0, result.output
    assert f"codec weights in {out / 'codec.pth'}" in result.stdout
    records = train_records(out)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for record in records:
        assert {"step", "level", "lambda", "loss", "bpp", "mse", "psnr", "aux_loss"} <= record.keys()
        assert record["lambda"] == QVRF[record["level"]]
        assert record["loss"] == pytest.approx(record["bpp"] + record["lambda"] * 255**2 * record["mse"], rel=1e-5)
    levels = json.loads((out / "levels.json").read_text())["levels"]
    assert [(row["level"], row["lambda"]) for row in levels] == list(enumerate(QVRF))
    assert all(row["bpp"] > 0 and row["psnr"] > 0 for row in levels)
    assert levels[0]["bpp"] < levels[-1]["bpp"]  # level 0: fewest bits
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000004"]
    assert sorted(p.name for p in (out / "checkpoints" / "step-00000004").iterdir()) == ["codec.pth", "meta.json", "trainer.pt"]
    info = json.loads((out / "codec.json").read_text())
    assert (info["codec"], info["step"], info["levels"], info["lambdas"], info["options"]) == (CODEC, 4, LEVELS, QVRF, {"tiny": True})
    assert_same_state(codec_state(out / "codec.pth"), codec_state(out / "checkpoints" / "step-00000004" / "codec.pth"))


def test_resume_after_an_interruption_continues_bit_exactly(runner, host, tmp_path: Path) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train_codec(runner, host, whole, "--steps", "6").exit_code == 0
    assert train_codec(runner, host, split, "--steps", "3").exit_code == 0
    resumed = train_codec(runner, host, split, "--steps", "6", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"Resuming {split} from step 3" in resumed.stdout
    assert_same_state(codec_state(whole / "codec.pth"), codec_state(split / "codec.pth"))
    assert read_metrics(whole / "metrics.jsonl") == read_metrics(split / "metrics.jsonl")
    finished = train_codec(runner, host, split, "--resume")
    assert finished.exit_code == 0 and "is finished: its latest checkpoint is step 6 of 6" in finished.stdout


KILL_AT_CHECKPOINT_4 = """
import os, signal, sys
from pathlib import Path

real_replace = os.replace

def replace(source, target, *args, **kwargs):
    if Path(source).name.startswith(".step-00000004."):
        os.kill(os.getpid(), signal.SIGKILL)  # step 4's checkpoint is written, not yet renamed into place
    return real_replace(source, target, *args, **kwargs)

os.replace = replace
from neckkit.cli import main
main(sys.argv[1:])
"""


def test_a_run_killed_mid_run_resumes_to_the_weights_of_an_uninterrupted_one(runner, host, tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert train_codec(runner, host, whole, "--steps", "6").exit_code == 0
    args = ["train-codec", "--codec", CODEC, "--tiny", "--no-progress", "--steps", "6", "--out", str(killed),
            "--set", "checkpoint_every=2"]
    run = subprocess.run([sys.executable, "-c", KILL_AT_CHECKPOINT_4, *args], cwd=tmp_path, env=child_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert [p.name for p in (killed / "checkpoints").iterdir() if not p.name.startswith(".")] == ["step-00000002"]
    assert json.loads((killed / "codec.json").read_text())["step"] == 2
    resumed = train_codec(runner, host, killed, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"Resuming {killed} from step 2" in resumed.stdout
    assert_same_state(codec_state(whole / "codec.pth"), codec_state(killed / "codec.pth"))
    assert [r["step"] for r in train_records(killed)] == [1, 2, 3, 4, 5, 6]  # the killed run's steps 3-4 replaced
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["step-00000002", "step-00000004", "step-00000006"]


def test_two_gloo_processes_train_like_one_and_only_rank_0_writes(runner, host, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert train_codec(runner, host, one, "--steps", "4").exit_code == 0
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "neckkit"]
    run = subprocess.run([*launcher, "train-codec", "--codec", CODEC, "--tiny", "--no-progress", "--steps", "4", "--out", str(two)],
                         cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("codec weights in") == 1  # only rank 0 reports
    single, double = train_records(one), train_records(two)
    assert [r["step"] for r in double] == [1, 2, 3, 4]
    for a, b in zip(single, double, strict=True):
        assert b["level"] == a["level"]
        # each rank draws its own rate noise for its half of the batch: close, not equal
        assert b["loss"] == pytest.approx(a["loss"], rel=0.05)
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-00000004"]


def test_elic_vbr_fine_tunes_from_a_fixed_rate_elic_checkpoint(runner, host, tmp_path: Path) -> None:
    from neckkit.cli.components import build_component

    fixed = build_component(host, "codec", "elic", {"tiny": True})[1]
    state = {key: value.clone() for key, value in fixed.state_dict().items()}
    state["model.g_a.0.bias"] += 0.5  # weights no random init gives: the run must start from these
    weights = tmp_path / "elic-fixed.pth"
    torch.save(state, weights)
    out = tmp_path / "run"
    result = invoke(runner, host, "train-codec", "--codec", "elic-vbr", "--tiny", "--weights", str(weights), "--steps", "2",
                    "--no-progress", "--out", str(out))
    assert result.exit_code == 0, result.output
    trained = codec_state(out / "codec.pth")
    assert trained["model.log_gains"].shape == (LEVELS,)
    assert torch.allclose(trained["model.g_a.0.bias"], state["model.g_a.0.bias"], atol=0.01)  # 2 Adam steps of 1e-3
    assert not torch.equal(trained["model.g_a.0.bias"], state["model.g_a.0.bias"])
    assert json.loads((out / "codec.json").read_text())["codec"] == "elic-vbr"
    nk = tmp_path / "photo.nk"
    from neckkit.samples import sample_images

    compressed = invoke(runner, host, "compress", str(sample_images()[0]), "--codec", "elic-vbr", "--tiny",
                        "--codec-weights", str(out / "codec.pth"), "--level", "2", "-o", str(nk))
    assert compressed.exit_code == 0, compressed.output


# -- refusals -------------------------------------------------------------------------------------------


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_a_lambda_count_other_than_the_codecs_levels_is_refused_in_one_line(runner, host, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = train_codec(runner, host, out, "--lambdas", "0.0018,0.0067,0.025")
    assert result.exit_code == 1
    assert error_lines(result.stderr) == [
        f"Error: 3 lambdas given but codec '{CODEC}' has {LEVELS} rate levels: pass one lambda per level, "
        "level 0 (fewest bits) first (--lambdas)"
    ]
    assert not out.exists()


def test_a_fixed_rate_codec_is_refused_in_one_line(runner, host, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(runner, host, "train-codec", "--codec", "mbt2018-mean", "--tiny", "--out", str(out))
    assert result.exit_code == 1
    assert error_lines(result.stderr) == [
        "Error: codec 'mbt2018-mean' is fixed-rate (one rate per set of weights): train-codec fine-tunes a "
        "variable-rate codec, one with rate levels (see the variable-rate codecs in neckkit list-plugins)"
    ]
    assert not out.exists()


def test_lambdas_out_of_order_and_a_resume_with_other_settings_are_refused_in_one_line(runner, host, tmp_path: Path) -> None:
    out = tmp_path / "run"
    decreasing = train_codec(runner, host, out, "--lambdas", ",".join(map(str, reversed(QVRF))))
    assert decreasing.exit_code == 1
    assert error_lines(decreasing.stderr) == ["Error: config: lambdas: Value error, lambdas must increase with the level (level 0: fewest bits)"]
    assert train_codec(runner, host, out, "--steps", "2").exit_code == 0
    again = train_codec(runner, host, out, "--steps", "2")
    assert again.exit_code == 1
    assert error_lines(again.stderr) == [f"Error: {out} already holds a training run; pass --resume to continue it or choose another --out"]
    other = train_codec(runner, host, out, "--steps", "4", "--lr", "0.01", "--resume")
    assert other.exit_code == 1
    assert error_lines(other.stderr) == [
        f"Error: --resume: lr is 0.01 but the run in {out} used 0.001; resume with the same settings or train into another --out"
    ]


# -- the weights file ---------------------------------------------------------------------------------------


def test_the_saved_weights_load_back_and_give_the_same_bytes(runner, host, tmp_path: Path) -> None:
    from neckkit.bitstream.codec_identity import codec_fingerprint
    from neckkit.interfaces.codec import at_level
    from neckkit.samples import sample_images
    from neckkit.training.codec_training import CodecTrainer

    out = tmp_path / "run"
    trained = tiny_codec(host)
    CodecTrainer(tiny_config(steps=3), trained, CODEC, {"tiny": True}, sample_images(), out, progress=False).run()
    loaded = tiny_codec(host, weights=str(out / "codec.pth"))
    assert codec_fingerprint(loaded) == codec_fingerprint(trained)
    x = fixed_batch()[:1]
    trained.eval(), loaded.eval()
    for level in (0, 3, 7):
        with at_level(trained, level):
            expected = trained.compress(x)
        with at_level(loaded, level):
            assert loaded.compress(x).strings == expected.strings
    nk = tmp_path / "photo.nk"
    compressed = invoke(runner, host, "compress", str(sample_images()[0]), "--codec", CODEC, "--tiny",
                        "--codec-weights", str(out / "codec.pth"), "--level", "3", "-o", str(nk))
    assert compressed.exit_code == 0, compressed.output
    decoded = invoke(runner, host, "decompress", str(nk), "--codec-weights", str(out / "codec.pth"), "-o", str(tmp_path / "photo.png"))
    assert decoded.exit_code == 0, decoded.output
    assert (tmp_path / "photo.png").is_file()
