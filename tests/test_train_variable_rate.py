"""Training one neck over a variable-rate codec's levels: CLI, checkpoints, refusals, exact resume, the d1 cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import invoke
from neckkit.config.train import QUICK_START, TrainConfig
from neckkit.neck.checkpoint import load_checkpoint
from neckkit.training.batches import LevelPlan
from neckkit.training.data import open_image_set
from neckkit.training.metrics_log import read_metrics
from neckkit.training.trainer import Trainer, TrainParts

pytestmark = pytest.mark.usefixtures("offline_cache")
CODEC = "mbt2018-mean-vbr"  # tiny: 8 levels, continuous
ALL = [float(level) for level in range(8)]


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def quick_config(**overrides: object) -> TrainConfig:
    return TrainConfig().with_overrides({**QUICK_START, **overrides})


def parts(host, codec: str = CODEC) -> TrainParts:
    from neckkit.bitstream.container import codec_fingerprint
    from neckkit.cli.components import build_component
    from neckkit.loading.weights import fingerprint
    from neckkit.neck.checkpoint import ComponentRef

    codec_name, codec_model = build_component(host, "codec", codec, {"tiny": True})
    encoder_name, encoder_model = build_component(host, "encoder", "clip-l", {"tiny": True})
    return TrainParts(
        codec_model,
        encoder_model,
        ComponentRef(name=codec_name, options={"tiny": True}, fingerprint=codec_fingerprint(codec_model)),
        ComponentRef(name=encoder_name, options={"tiny": True}, fingerprint=fingerprint(encoder_model)),
    )


def run(host, config: TrainConfig, run_dir: Path, resume: bool = False) -> dict:
    trainer = Trainer(config, parts(host), open_image_set(None, config.data), run_dir, echo=lambda _t: None, progress=False)
    return trainer.run(resume=resume).summary


def train_rows(run_dir: Path) -> list[dict]:
    return [row for row in read_metrics(run_dir / "metrics.jsonl") if row["kind"] == "train"]


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    return lines[0]


def test_the_level_of_each_step_is_a_function_of_seed_and_step_and_covers_the_levels() -> None:
    plan = LevelPlan(4, rows_per_level=10, seed=3)
    indices = [plan.index(step) for step in range(200)]
    assert [LevelPlan(4, 10, 3).index(step) for step in reversed(range(200))] == list(reversed(indices))
    assert set(indices) == {0, 1, 2, 3}
    assert [plan.offset(step) for step in range(5)] == [10 * k for k in indices[:5]]
    assert indices != [LevelPlan(4, 10, 4).index(step) for step in range(200)]


def test_train_adaln_neck_through_the_cli_records_levels_and_conditioning_and_resumes_exactly(
    runner, host, tmp_path: Path
) -> None:
    def train(out: Path, steps: int, *more: str):
        return invoke(runner, host, "train", "--codec", CODEC, "--encoder", "clip-l", "--tiny", "--no-progress",
                      "--neck-conditioning", "adaln", "--max-steps", str(steps), "--set", "checkpoint_every=2",
                      "--set", "log_every=1", "--out", str(out), *more)

    out = tmp_path / "run"
    result = train(out, 4)
    assert result.exit_code == 0, result.output
    assert train(tmp_path / "cut", 2).exit_code == 0
    resumed = train(tmp_path / "cut", 4, "--resume")  # neck.levels: unset on the command line, all 8 in the run
    assert resumed.exit_code == 0 and "Resuming" in resumed.output, resumed.output
    final = Path("checkpoints") / "step-00000004" / "neck.safetensors"
    whole, cut = load_file(out / final), load_file(tmp_path / "cut" / final)
    assert whole.keys() == cut.keys() and all(torch.equal(whole[key], cut[key]) for key in whole)
    other = train(tmp_path / "cut", 6, "--resume", "--levels", "0,7")
    assert other.exit_code != 0 and "--resume: neck.levels is [0.0, 7.0] but the run" in _one_error_line(other.output)
    assert "rate levels 0, 1, 2, 3, 4, 5, 6, 7 (conditioning adaln)" in result.output
    checkpoint = load_checkpoint(out / "checkpoints" / "step-00000004")
    neck_config = checkpoint.meta.neck.config
    assert (neck_config.conditioning, neck_config.levels) == ("adaln", tuple(ALL))
    assert checkpoint.meta.config["neck"]["levels"] == ALL
    modulation = checkpoint.neck_state["transformer.modulation.0.linear.weight"]
    assert modulation.abs().sum() > 0  # trained away from its zero init
    summary = json.loads((out / "summary.json").read_text())
    assert summary["levels"] == ALL and summary["conditioning"] == "adaln"
    assert {f"distillation_at_{level}" for level in range(8)} <= set(checkpoint.meta.metrics)


def test_an_unconditioned_neck_over_all_levels_resumes_through_the_cli(runner, host, tmp_path: Path) -> None:
    def train(steps: int, *more: str):
        return invoke(runner, host, "train", "--codec", CODEC, "--encoder", "clip-l", "--tiny", "--no-progress",
                      "--max-steps", str(steps), "--set", "checkpoint_every=1", "--out", str(tmp_path / "run"), *more)

    assert train(1).exit_code == 0
    resumed = train(2, "--resume", "--neck-conditioning", "none")  # the default, said explicitly
    assert resumed.exit_code == 0 and "Resuming" in resumed.output, resumed.output
    config = load_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000002").meta.neck.config
    assert (config.conditioning, config.levels) == ("none", tuple(ALL))
    other = train(3, "--resume", "--neck-conditioning", "film")
    assert "--resume: neck.conditioning is 'film' but the run" in _one_error_line(other.output)


def test_a_fixed_rate_codec_with_conditioning_or_levels_is_refused_in_one_line(runner, host, tmp_path: Path) -> None:
    for flags, said in ((["--neck-conditioning", "adaln"], "--neck-conditioning adaln"), (["--levels", "1"], "--levels 1")):
        result = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--no-progress",
                        *flags, "--out", str(tmp_path / "run"))
        assert result.exit_code != 0
        line = _one_error_line(result.output)
        assert line.startswith("Error: codec 'tic' (plugin ") and "is fixed-rate" in line and said in line, line
        assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--levels", "0,9"], "Error: --levels: mbt2018-mean-vbr"),  # "...-tiny has rate levels 0..7; level 9 is outside them"
        (["--levels", "1,x"], "Error: --levels takes comma-separated rate levels, e.g. 0,1,2,3; got '1,x'"),
        (["--neck-conditioning", "cross"], "Error: config: neck.conditioning"),
        (["--scenario", "d2"], "Error: codec 'mbt2018-mean-vbr' (plugin 'neckkit.plugins.codecs') supports scenarios d1, "
                               "not d2 (neckkit train does not train this codec; a variable-rate codec trains with "
                               "neckkit train-codec, its neck with --scenario d1)"),
    ],
)
def test_bad_rate_settings_are_refused_in_one_line(runner, host, tmp_path: Path, flags: list[str], said: str) -> None:
    result = invoke(runner, host, "train", "--codec", CODEC, "--encoder", "clip-l", "--tiny", "--no-progress",
                    *flags, "--out", str(tmp_path / "run"))
    assert result.exit_code != 0
    assert _one_error_line(result.output).startswith(said), result.output


def test_resume_with_random_levels_ends_bit_exact(host, tmp_path: Path) -> None:
    config = quick_config(max_steps=8, checkpoint_every=3, log_every=1, **{"neck.conditioning": "film"})
    whole = run(host, config, tmp_path / "whole")
    assert whole["levels"] == ALL
    run(host, config.with_overrides({"max_steps": 5}), tmp_path / "cut")  # stopped at 5, checkpoint at 3 and 5
    run(host, config, tmp_path / "cut", resume=True)
    final = Path("checkpoints") / "step-00000008" / "neck.safetensors"
    a, b = load_file(tmp_path / "whole" / final), load_file(tmp_path / "cut" / final)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert [r["loss"] for r in train_rows(tmp_path / "whole")] == [r["loss"] for r in train_rows(tmp_path / "cut")]
    levels = [LevelPlan(8, 1, config.seed).index(step) for step in range(8)]
    assert len(set(levels)) > 1  # the run did move between levels


def test_cached_and_uncached_training_at_random_levels_give_the_same_losses(host, tmp_path: Path) -> None:
    config = quick_config(max_steps=5, log_every=1, **{"neck.conditioning": "adaln", "neck.levels": [7, 0, 2.5]})
    cached = run(host, config, tmp_path / "cached")
    run(host, config.with_overrides({"cache": False}), tmp_path / "uncached")
    index = json.loads((Path(cached["cache_dir"]) / "index.json").read_text())
    assert index["key"]["levels"] == [0.0, 2.5, 7.0]  # sorted; a level between two trained ones (continuous codec)
    assert set(index["fields"]) == {"y_hat_l0", "y_hat_l1", "y_hat_l2", "bits_l0", "bits_l1", "bits_l2", "teacher", "pixels"}
    cached_losses = [r["loss"] for r in train_rows(tmp_path / "cached")]
    assert cached_losses == pytest.approx([r["loss"] for r in train_rows(tmp_path / "uncached")], rel=1e-5)
    bpp = [r["bpp"] for r in train_rows(tmp_path / "cached")]
    assert len(set(bpp)) > 1  # the rate moves with the level


def test_one_level_trains_a_per_level_unconditioned_neck(host, tmp_path: Path) -> None:
    config = quick_config(max_steps=2, checkpoint_every=2, **{"neck.levels": [3]})
    summary = run(host, config, tmp_path / "run")
    assert summary["levels"] == [3.0] and summary["conditioning"] == "none"
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000002")
    assert (checkpoint.meta.neck.config.conditioning, checkpoint.meta.neck.config.levels) == ("none", (3.0,))
    assert set(checkpoint.meta.metrics) >= {"distillation_at_3", "bpp_at_3"}


def test_a_conditioned_run_starts_from_an_unconditioned_neck(host, tmp_path: Path) -> None:
    config = quick_config(max_steps=2, checkpoint_every=2)
    run(host, config, tmp_path / "plain")
    start = load_checkpoint(tmp_path / "plain" / "checkpoints" / "step-00000002").neck_state
    conditioned = config.with_overrides({"neck.conditioning": "adaln"})
    trainer = Trainer(conditioned, parts(host), open_image_set(None, conditioned.data), tmp_path / "adaln",
                      echo=lambda _t: None, progress=False, init_neck=start)
    assert all(torch.equal(trainer.neck.state_dict()[key], value) for key, value in start.items())
    assert trainer.neck.transformer.modulation[0].linear.weight.abs().sum() == 0
