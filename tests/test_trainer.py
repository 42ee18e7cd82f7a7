"""The trainer: quick start, exact resume, cache equivalence, scenarios, CE, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import invoke
from neckkit.config.train import QUICK_START, TrainConfig
from neckkit.neck.checkpoint import load_checkpoint
from neckkit.training.batches import BatchPlan, split_rows
from neckkit.training.data import open_image_set
from neckkit.training.metrics_log import read_metrics
from neckkit.training.trainer import Trainer, TrainParts

pytestmark = pytest.mark.usefixtures("offline_cache")


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def quick_config(**overrides: object) -> TrainConfig:
    return TrainConfig().with_overrides({**QUICK_START, **overrides})


def parts(host, codec: str = "tic", encoder: str = "clip-l") -> TrainParts:
    from neckkit.bitstream.container import codec_fingerprint
    from neckkit.cli.components import build_component
    from neckkit.loading.weights import fingerprint
    from neckkit.neck.checkpoint import ComponentRef

    codec_name, codec_model = build_component(host, "codec", codec, {"tiny": True})
    encoder_name, encoder_model = build_component(host, "encoder", encoder, {"tiny": True})
    return TrainParts(
        codec_model,
        encoder_model,
        ComponentRef(name=codec_name, options={"tiny": True}, fingerprint=codec_fingerprint(codec_model)),
        ComponentRef(name=encoder_name, options={"tiny": True}, fingerprint=fingerprint(encoder_model)),
    )


def run(host, config: TrainConfig, run_dir: Path, data=None, resume: bool = False, **kw) -> dict:
    trainer = Trainer(config, parts(host, **kw), open_image_set(data, config.data), run_dir, echo=lambda _t: None, progress=False)
    return trainer.run(resume=resume).summary


def train_losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]


def test_batch_plan_is_a_function_of_the_step() -> None:
    plan, again = BatchPlan([3, 5, 7], 4, seed=1), BatchPlan([3, 5, 7], 4, seed=1)
    batches = [plan.batch(step) for step in range(6)]
    assert [again.batch(step) for step in reversed(range(6))] == list(reversed(batches))
    stream = [row for batch in batches for row in batch]
    for k in range(8):  # every pass of 3 rows is a permutation
        assert sorted(stream[3 * k : 3 * k + 3]) == [3, 5, 7]
    train, val = split_rows(10, 0.25, seed=0)
    assert len(val) == 2 and sorted(train + val) == list(range(10))
    assert split_rows(1, 0.5, 0) == ([0], [])


def test_quick_start_writes_metrics_checkpoints_and_halves_the_loss(runner, host, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # README's command, with its default run folder
    out = tmp_path / "runs" / "tic-clip-l-d1"
    result = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "Notice: the images are unlabelled" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == quick_config().total_steps == 40
    assert summary["last_distillation"] < summary["first_distillation"] / 2
    assert summary["cache_built"] is True
    records = read_metrics(out / "metrics.jsonl")
    assert {r["kind"] for r in records} == {"train", "val"}
    assert records[-1]["kind"] == "val" and records[-1]["step"] == 40
    checkpoint = load_checkpoint(out)  # the run folder resolves to best/
    assert checkpoint.path.name == "best" and checkpoint.meta.codec.name == "tic"
    assert checkpoint.meta.encoder.name == "clip-l" and checkpoint.meta.scenario == "d1"
    assert (out / "config.yaml").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000020", "step-00000030", "step-00000040"]
    assert "Best held-out distillation" in result.output


def test_resume_after_a_stop_ends_with_the_same_weights(host, tmp_path: Path) -> None:
    config = quick_config(max_steps=12, checkpoint_every=4, log_every=1)
    run(host, config, tmp_path / "whole")
    run(host, config.with_overrides({"max_steps": 7}), tmp_path / "cut")  # stopped at step 7 (a checkpoint)
    (tmp_path / "cut" / "metrics.jsonl").open("a").write('{"step": 8, "kind": "train", "loss": 99.0}\n')
    run(host, config, tmp_path / "cut", resume=True)
    whole = load_file(tmp_path / "whole" / "checkpoints" / "step-00000012" / "neck.safetensors")
    cut = load_file(tmp_path / "cut" / "checkpoints" / "step-00000012" / "neck.safetensors")
    assert whole.keys() == cut.keys()
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert train_losses(tmp_path / "cut") == train_losses(tmp_path / "whole")  # the stray step-8 line is gone


def test_d3_resume_after_kill_ends_byte_identical_in_every_codec_and_optimiser_tensor(host, tmp_path: Path) -> None:
    config = quick_config(scenario="d3", max_steps=6, checkpoint_every=2, log_every=1,
                          **{"loss.phases": [{"until_epoch": 1, "ce_weight": 0, "distillation_weight": 100}],
                             "scenarios.phase2_epochs": 2})
    run(host, config, tmp_path / "whole")
    run(host, config.with_overrides({"max_steps": 3}), tmp_path / "cut")  # killed after step 3's work, checkpoint at 2
    import shutil
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "step-00000003")  # kill -9 before the step-3 checkpoint
    run(host, config, tmp_path / "cut", resume=True)
    final = Path("checkpoints") / "step-00000006"
    for name in ("neck.safetensors", "codec.safetensors"):
        whole, cut = load_file(tmp_path / "whole" / final / name), load_file(tmp_path / "cut" / final / name)
        assert whole.keys() == cut.keys()
        different = [k for k in whole if whole[k].dtype != cut[k].dtype or whole[k].shape != cut[k].shape or not torch.equal(whole[k], cut[k])]
        assert different == [], (name, different)
    codec_keys = load_file(tmp_path / "whole" / final / "codec.safetensors").keys()
    assert {"model.entropy_bottleneck._quantized_cdf", "model.entropy_bottleneck._offset",
            "model.entropy_bottleneck._cdf_length"} <= codec_keys
    whole_state = torch.load(tmp_path / "whole" / final / "trainer.pt", weights_only=True)
    cut_state = torch.load(tmp_path / "cut" / final / "trainer.pt", weights_only=True)

    def flat(value, prefix=""):
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}{key}.").items()}
        if isinstance(value, list | tuple):
            return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{prefix}{i}.").items()}
        return {prefix: value}

    whole_flat, cut_flat = flat(whole_state), flat(cut_state)
    assert whole_flat.keys() == cut_flat.keys()
    for key, value in whole_flat.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, cut_flat[key]), key
        else:
            assert value == cut_flat[key], key
    assert sum(isinstance(v, torch.Tensor) for v in whole_flat.values()) > 0
    assert load_checkpoint(tmp_path / "cut" / final).meta.codec_tables == "rebuilt"


def test_cached_and_uncached_training_give_the_same_losses(host, tmp_path: Path) -> None:
    config = quick_config(max_steps=6, log_every=1)
    cached = run(host, config, tmp_path / "cached")
    uncached = run(host, config.with_overrides({"cache": False}), tmp_path / "uncached")
    assert cached["cache_built"] and "cache_dir" not in uncached
    assert train_losses(tmp_path / "cached") == pytest.approx(train_losses(tmp_path / "uncached"), rel=1e-5)
    again = run(host, config, tmp_path / "again")
    assert again["cache_built"] is False and again["cache_dir"] == cached["cache_dir"]


@pytest.mark.parametrize("scenario", ["d2", "d3"])
def test_joint_scenarios_train_the_codec_and_save_it(host, tmp_path: Path, scenario: str) -> None:
    config = quick_config(scenario=scenario, **{"loss.phases": [{"until_epoch": 1, "ce_weight": 0, "distillation_weight": 100}],
                                                "scenarios.phase2_epochs": 2, "log_every": 1})
    trained = parts(host)
    before = {k: v.clone() for k, v in trained.codec.state_dict().items()}
    Trainer(config, trained, open_image_set(None, config.data), tmp_path / scenario, echo=lambda _t: None, progress=False).run()
    records = [r for r in read_metrics(tmp_path / scenario / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert "aux_loss" not in records[1] and "aux_loss" in records[2]  # joint phase from epoch 1 (step 2)
    assert ("image_mse" in records[-1]) == (scenario == "d2")
    after = trained.codec.state_dict()

    def changed(prefix: str) -> bool:
        return any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))

    assert changed("model.g_a") and changed("model.h_s")
    assert changed("model.g_s") == (scenario == "d2")  # d3 freezes the synthesis transform
    checkpoint = load_checkpoint(tmp_path / scenario)
    assert checkpoint.codec_state is not None and checkpoint.meta.rate_lambda == config.rate_lambda
    last = load_checkpoint(tmp_path / scenario / "checkpoints" / "step-00000006")
    assert torch.equal(last.codec_state["model.g_a0.weight"], after["model.g_a0.weight"])


def test_labelled_folders_add_the_cross_entropy_term(host, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name, color in (("red_apple", (200, 20, 20)), ("blue_sky", (20, 20, 200))):
        (data / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40 + i, 30), color).save(data / name / f"{i}.png")
    (data / "blue_sky" / "broken.png").write_bytes(b"not a png")
    config = quick_config(max_steps=2, log_every=1, val_fraction=0.0)
    summary = run(host, config, tmp_path / "run", data=data)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all("cross_entropy" in r for r in records)
    assert records[0]["loss"] == pytest.approx(100 * records[0]["cross_entropy"], rel=1e-6)  # phase 1: 100 x CE
    assert summary["best"] == {}  # no held-out images
    assert (tmp_path / "run" / "checkpoints" / "step-00000002").is_dir()


def test_token_distillation_is_logged_and_weighted(host, tmp_path: Path) -> None:
    config = quick_config(max_steps=2, log_every=1, **{"token_distillation.layer": 3, "token_distillation.weight": 2.0})
    run(host, config, tmp_path / "run")
    record = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    assert record["loss"] == pytest.approx(100 * record["distillation"] + 2.0 * record["token_mse"], rel=1e-5)


def test_train_refuses_to_overwrite_a_run_or_resume_with_other_settings(runner, host, tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    args = ["train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--out", out, "--no-progress", "--max-steps", "2"]
    assert invoke(runner, host, *args).exit_code == 0
    again = invoke(runner, host, *args)
    assert again.exit_code == 1 and "already holds a training run; pass --resume" in again.output
    other = invoke(runner, host, *args, "--resume", "--set", "optim.lr=0.5")
    assert other.exit_code == 1 and "--resume: optim.lr is 0.5 but the run" in other.output
    finished = invoke(runner, host, *args, "--resume")  # nothing left to train: said at once, nothing loaded
    assert finished.exit_code == 0
    assert finished.output.startswith(f"{out} is finished: its latest checkpoint is step 2 of 2; nothing to resume")
    missing = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--out", str(tmp_path / "none"), "--resume")
    assert missing.exit_code == 1 and "holds no config.yaml" in missing.output
    bad = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--set", "scenario=d4")
    assert bad.exit_code == 1 and "scenario" in bad.output


def test_default_run_folders_are_numbered(tmp_path: Path) -> None:
    from neckkit.cli.train import default_run_dir

    base = tmp_path / "runs" / "tic-clip-l-d1"
    assert default_run_dir(base, resume=False) == base
    (base / "checkpoints").mkdir(parents=True)
    assert default_run_dir(base, resume=False) == tmp_path / "runs" / "tic-clip-l-d1-2"
    assert default_run_dir(base, resume=True) == base
    (tmp_path / "runs" / "tic-clip-l-d1-2" / "best").mkdir(parents=True)
    assert default_run_dir(base, resume=True) == tmp_path / "runs" / "tic-clip-l-d1-2"


def test_neck_parameter_count_for_tic_and_clip_l() -> None:
    from neckkit.config import PAPER_FIGURES
    from neckkit.neck.transform import TransformNeck

    elic = sum(p.numel() for p in TransformNeck(320, 1024, 16).parameters())
    tic = sum(p.numel() for p in TransformNeck(192, 1024, 16).parameters())
    assert elic == PAPER_FIGURES.neck_params
    assert tic == elic - (320 - 192) * 1024 == 13_060_096


def test_init_starts_d3_from_a_d1_neck_and_refuses_another_pair(runner, host, tmp_path: Path) -> None:
    d1 = tmp_path / "d1"
    base = ["train", "--encoder", "clip-l", "--tiny", "--no-progress", "--max-steps", "2"]
    assert invoke(runner, host, *base, "--codec", "tic", "--out", str(d1)).exit_code == 0
    wrong = invoke(runner, host, *base, "--codec", "elic", "--out", str(tmp_path / "x"), "--init", str(d1))
    assert wrong.exit_code == 1
    assert f"checkpoint {d1} holds a neck for codec 'tic' and encoder 'clip-l', not for codec 'elic' and encoder 'clip-l'" in wrong.output
    assert not (tmp_path / "x").exists()
    d3 = tmp_path / "d3"
    result = invoke(runner, host, *base, "--codec", "tic", "--scenario", "d3", "--init", str(d1), "--out", str(d3),
                    "--set", "scenarios.joint_only=true", "--set", "log_every=1")
    assert result.exit_code == 0, result.output
    records = [r for r in read_metrics(d3 / "metrics.jsonl") if r["kind"] == "train"]
    assert "aux_loss" in records[0] and records[0]["lr"] == TrainConfig().scenarios.phase2_lr  # joint from step 0

    config = quick_config(scenario="d3", **{"scenarios.joint_only": True})
    start = load_checkpoint(d1)
    trainer = Trainer(config, parts(host), open_image_set(None, config.data), tmp_path / "t", echo=lambda _t: None,
                      progress=False, init_neck=start.neck_state)
    assert all(torch.equal(trainer.neck.state_dict()[k], v) for k, v in start.neck_state.items())
    assert config.epochs == config.scenarios.phase2_epochs and config.is_joint(0)


def test_run_folder_names_stay_importable_from_the_trainer_module() -> None:
    from neckkit.neck import checkpoint
    from neckkit.training import checkpointing, trainer

    for name in checkpointing.__all__:
        assert getattr(trainer, name) is getattr(checkpointing, name), name
    assert (trainer.BEST_DIR, trainer.CHECKPOINTS_DIR) == (checkpoint.BEST_DIR, checkpoint.CHECKPOINTS_DIR)
