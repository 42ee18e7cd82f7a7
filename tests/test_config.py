"""Config models: strict fields, YAML/TOML files, overrides, and the paper's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from neckkit import ConfigError
from neckkit.config import (
    PAPER_FIGURES,
    LossScheduleConfig,
    NeckConfig,
    NeckkitConfig,
    OptimConfig,
    TicConfig,
    parse_override,
)


class TrainLike(NeckkitConfig):
    """A config composed of paper sections, as the training config will be."""

    neck: NeckConfig = NeckConfig()
    optim: OptimConfig = OptimConfig()
    schedule: LossScheduleConfig = LossScheduleConfig()
    name: str = "run"


def test_defaults_are_the_papers_settings() -> None:
    config = TrainLike()
    assert (config.neck.num_blocks, config.neck.num_heads, config.neck.entry_layer) == (1, 16, 2)
    assert (config.optim.lr, config.optim.lr_decay, config.optim.lr_milestones, config.optim.batch_size) == (
        1e-4,
        0.1,
        (20,),
        32,
    )
    assert config.schedule.epochs == 60
    assert PAPER_FIGURES.neck_params == 13_191_168


@pytest.mark.parametrize(
    ("epoch", "weights"), [(0, (100.0, 0.0)), (19, (100.0, 0.0)), (20, (1.0, 100.0)), (39, (1.0, 100.0)), (59, (0.0, 100.0)), (75, (0.0, 100.0))]
)
def test_loss_schedule_follows_paper_eq_4(epoch: int, weights: tuple[float, float]) -> None:
    phase = LossScheduleConfig().phase_at(epoch)
    assert (phase.ce_weight, phase.distillation_weight) == weights


def test_yaml_file_and_overrides_take_precedence_in_order(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("name: from-file\noptim:\n  lr: 0.001\n  batch_size: 8\n")
    config = TrainLike.load(path, ["optim.batch_size=4", "neck.num_blocks=2"])
    assert (config.name, config.optim.lr, config.optim.batch_size, config.neck.num_blocks) == ("from-file", 1e-3, 4, 2)
    assert config.neck.num_heads == 16  # untouched defaults stay the paper's


def test_toml_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('name = "toml"\n[optim]\nlr_milestones = [10, 30]\n')
    config = TrainLike.load(path)
    assert (config.name, config.optim.lr_milestones) == ("toml", (10, 30))


def test_unknown_key_in_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as caught:
        TrainLike.load(path)
    assert str(caught.value) == f"config file {path}: optim.learning_rate: Extra inputs are not permitted"


def test_invalid_value_in_override_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^override: optim.lr: Input should be greater than 0$"):
        TrainLike().with_overrides(["optim.lr=-1"])


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "inf", "nan"])
def test_non_finite_floats_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^override: optim.lr: Input should be a finite number$"):
        TrainLike().with_overrides([f"optim.lr={value}"])


def test_num_workers_is_bounded() -> None:
    from neckkit.config.train import TrainConfig

    with pytest.raises(ConfigError, match=r"^override: num_workers: Input should be less than or equal to 64$"):
        TrainConfig().with_overrides(["num_workers=100000"])
    assert TrainConfig().with_overrides(["num_workers=64"]).num_workers == 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [("optim.lr=1e-3", (["optim", "lr"], 1e-3)), ("name=abc", (["name"], "abc")), ("x=[1, 2]", (["x"], [1, 2])), ("flag=", (["flag"], ""))],
)
def test_overrides_parse_values_as_yaml(text: str, expected: tuple) -> None:
    assert parse_override(text) == expected


def test_override_without_equals_is_rejected() -> None:
    with pytest.raises(ConfigError, match="must look like key=value"):
        parse_override("optim.lr")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.yaml", "optim: [1,\n", "is not valid YAML"),
        ("bad.toml", "optim = \n", "is not valid TOML"),
        ("list.yaml", "- 1\n", "must hold a mapping at the top level"),
        ("run.ini", "x=1\n", "use a .yaml, .yml, .toml or .json file"),
    ],
)
def test_bad_config_files_give_one_clear_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        TrainLike.load(path)
    assert "\n" not in str(caught.value)


def test_missing_config_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope.yaml: No such file or directory"):
        TrainLike.load(tmp_path / "nope.yaml")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_saved_config_loads_back_equal(tmp_path: Path, suffix: str) -> None:
    config = TrainLike().with_overrides({"optim.lr": 3e-4, "name": "saved"})
    path = config.save(tmp_path / "nested" / f"config{suffix}")
    assert TrainLike.load(path) == config
    assert [item.name for item in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_schedule_phases_must_increase() -> None:
    with pytest.raises(ConfigError, match="strictly increasing"):
        LossScheduleConfig.validate_data(
            {"phases": [{"until_epoch": 5, "ce_weight": 1, "distillation_weight": 0}, {"until_epoch": 5, "ce_weight": 0, "distillation_weight": 1}]}
        )


def test_tic_defaults_match_the_published_hyperprior_variant() -> None:
    tic = TicConfig()
    assert (tic.N, tic.M, tic.depths, tic.num_heads, tic.window_size, tic.hyper_window_size) == (
        128,
        192,
        (2, 4, 6, 2, 2, 2),
        (8, 8, 8, 16, 16, 16),
        8,
        4,
    )
