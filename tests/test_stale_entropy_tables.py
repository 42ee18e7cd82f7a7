"""d2/d3 train the codec, so its entropy-coder tables go stale: ``Codec.update_entropy_tables()`` rebuilds them
before every save by default, and a codec whose tables cannot be rebuilt is refused, never saved stale."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from compressai.entropy_models import GaussianConditional
from torch import nn
from typer.testing import CliRunner

from conftest import invoke
from neckkit import NeckkitError, hookimpl
from neckkit.bitstream.codec_identity import stream_fingerprint
from neckkit.host.manager import PluginHost
from neckkit.loading.codec_weights import TABLE_BUFFERS, entropy_tables
from neckkit.neck.checkpoint import load_checkpoint, restore_codec_state
from neckkit.plugin_api import host_for_tests, seeded_init
from neckkit.training.scenarios import check_codec_scenario
from neckkit_toy.codec import ToyCodec

JOINT_NOW = ("--set", "scenarios.joint_only=true")  # the codec trains from step 0


def build_with_tables(tiny: bool = False) -> ToyCodec:
    """A third-party codec without its own rebuild whose factory builds the coder tables at build time."""
    codec = ToyCodec(tiny=tiny)
    codec.entropy_bottleneck.update()
    return codec


class CustomCoder(nn.Module):
    """Tables neckkit knows nothing about."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("_quantized_cdf", torch.zeros(2, 3, dtype=torch.int32))


class CustomTablesCodec(ToyCodec):
    def __init__(self, tiny: bool = False) -> None:
        super().__init__(tiny=tiny)
        self.coder = CustomCoder()


class FailingRebuildCodec(ToyCodec):
    def update_entropy_tables(self) -> None:
        raise RuntimeError("no tables here")


class TablesPlugin:
    @staticmethod
    @hookimpl
    def register_codecs(register) -> None:
        register("build-time-tables", build_with_tables, description="toy codec, tables built by its factory",
                 tiny=True)
        register("custom-tables", CustomTablesCodec, description="toy codec with its own tables", tiny=True)
        register("failing-rebuild", FailingRebuildCodec, description="toy codec whose rebuild fails", tiny=True,
                 scenarios=("d1", "d2", "d3"))


@pytest.fixture
def tables_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PluginHost:
    import neckkit_toy.plugin

    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(tmp_path / "cache"))
    return host_for_tests(neckkit_toy.plugin, TablesPlugin)


def _train(runner: CliRunner, host: PluginHost, codec: str, scenario: str, run: Path, steps: int = 2):
    return invoke(runner, host, "train", "--codec", codec, "--encoder", "toy-vit", "--tiny", "--scenario", scenario,
                  "--max-steps", str(steps), "--no-progress", "--out", str(run), *JOINT_NOW)


def _tables(bottleneck: nn.Module) -> dict[str, torch.Tensor]:
    return {name: getattr(bottleneck, name).clone() for name in TABLE_BUFFERS}


def test_a_codec_without_its_own_rebuild_saves_d3_tables_equal_to_a_rebuild(
    runner: CliRunner, tables_host: PluginHost, tmp_path: Path
) -> None:
    component = tables_host.components("codec").get("build-time-tables")
    build_time = _tables(component.build(tiny=True).entropy_bottleneck)
    run = tmp_path / "run"
    result = _train(runner, tables_host, "build-time-tables", "d3", run)
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(run)
    saved = {name: checkpoint.codec_state[f"entropy_bottleneck.{name}"] for name in TABLE_BUFFERS}
    assert not torch.equal(saved["_quantized_cdf"], build_time["_quantized_cdf"])  # training moved the tables
    codec = component.build(tiny=True)
    restore_codec_state(codec, checkpoint)  # the saved weights and, as stored, the saved tables
    rebuilt = copy.deepcopy(codec.entropy_bottleneck)
    rebuilt.update(force=True)
    for name in TABLE_BUFFERS:
        assert torch.equal(saved[name], getattr(rebuilt, name)), name
    assert checkpoint.meta.codec_tables == "rebuilt"
    assert stream_fingerprint(codec) == checkpoint.meta.codec.fingerprint  # eval's codec is the one meta.json names


def test_d2_refuses_a_codec_whose_tables_the_default_cannot_rebuild(
    runner: CliRunner, tables_host: PluginHost, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = _train(runner, tables_host, "custom-tables", "d2", run)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        "Error: codec 'custom-tables' (plugin 'TablesPlugin') holds entropy-coder tables that "
        "Codec.update_entropy_tables() cannot rebuild (coder (CustomCoder)), so d2, which trains the codec, would "
        "save stale tables; override update_entropy_tables() or train it with d1"
    ]
    assert not run.exists()
    check_codec_scenario(CustomTablesCodec(tiny=True), "d1", "codec 'custom-tables'")  # d1 leaves the codec as it is


def test_a_failing_rebuild_stops_the_run_before_a_stale_checkpoint_is_saved(
    runner: CliRunner, tables_host: PluginHost, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = _train(runner, tables_host, "failing-rebuild", "d3", run, steps=1)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: codec 'failing-rebuild' could not rebuild its entropy-coder tables (RuntimeError: no tables here); "
        "refusing to save a checkpoint with stale tables"
    )
    assert not (run / "checkpoints").exists() and not (run / "best").exists()


class TwoEntropyModels(ToyCodec):
    def __init__(self) -> None:
        super().__init__(tiny=True)
        self.gaussian_conditional = GaussianConditional([0.5, 1.0, 2.0])  # its own scale table


def test_the_default_rebuild_covers_every_compressai_entropy_model_and_keeps_its_scale_table() -> None:
    with seeded_init(3):
        codec = TwoEntropyModels()
    codec.entropy_bottleneck.update()
    stale = _tables(codec.entropy_bottleneck)
    with torch.no_grad():
        for parameter in codec.entropy_bottleneck.parameters():
            parameter.add_(0.5)  # as an optimiser step would
    expected_eb = copy.deepcopy(codec.entropy_bottleneck)
    expected_eb.update(force=True)
    expected_gc = copy.deepcopy(codec.gaussian_conditional)
    expected_gc.update()
    codec.update_entropy_tables()
    assert not torch.equal(stale["_quantized_cdf"], codec.entropy_bottleneck._quantized_cdf)
    for name in TABLE_BUFFERS:
        assert torch.equal(getattr(codec.entropy_bottleneck, name), getattr(expected_eb, name)), name
        assert torch.equal(getattr(codec.gaussian_conditional, name), getattr(expected_gc, name)), name
    assert codec.gaussian_conditional.scale_table.tolist() == [0.5, 1.0, 2.0]
    assert entropy_tables(codec) == "rebuilt"


def test_the_default_rebuild_refuses_tables_it_does_not_know_in_one_line() -> None:
    codec = CustomTablesCodec(tiny=True)
    with pytest.raises(NeckkitError) as caught:
        codec.update_entropy_tables()
    assert str(caught.value) == (
        "CustomTablesCodec holds entropy-coder tables that the default Codec.update_entropy_tables() cannot rebuild: "
        "coder (CustomCoder); override update_entropy_tables() to rebuild them"
    )
    assert codec.entropy_bottleneck._offset.numel() == 0  # nothing was rebuilt
