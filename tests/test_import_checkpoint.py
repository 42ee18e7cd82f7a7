"""Importing the paper's released files (ELIC under 'state_dict', neck under 'adapter') as checkpoints.

The tests write files in the released layout themselves: names from reference/elic_key_mapping.md read
backwards (checked against the reference TSVs in tests/fixtures), values perturbed from a seeded model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import invoke
from neckkit import NeckkitError
from neckkit.bitstream.container import codec_fingerprint
from neckkit.host.manager import PluginHost
from neckkit.loading.codec_weights import CODER_TABLES
from neckkit.loading.weights import seeded_init
from neckkit.neck.checkpoint import build_neck, load_checkpoint, restore_codec_state
from neckkit.neck.paper_release import import_release, release_stem, scenario_from_name
from neckkit.neck.transform import TransformNeck
from neckkit.plugins.codecs.compressai_codecs import bridging_to_chandelier, build_elic

FIXTURES = Path(__file__).parent / "fixtures"
LEGACY = {"matrices": "_matrix", "biases": "_bias", "factors": "_factor"}
Release = tuple[Path, dict[str, torch.Tensor], dict[str, torch.Tensor]]  # file, codec, neck as written


def _tsv(name: str) -> dict[str, list[int]]:
    rows = (FIXTURES / name).read_text().strip().splitlines()[1:]
    return {key: [int(v) for v in re.findall(r"\d+", shape)] for key, shape in (row.split("\t") for row in rows)}


def _released_name(key: str) -> str | None:
    """Chandelier key -> the release's ELIC_LLM key; None for the copies of the one shared Gaussian."""
    if m := re.fullmatch(r"latent_codec\.hyper\.entropy_bottleneck\.(matrices|biases|factors)\.(\d+)", key):
        return f"entropy_bottleneck.{LEGACY[m[1]]}{m[2]}"
    if m := re.fullmatch(r"latent_codec\.hyper\.(.+)", key):
        return m[1]
    if m := re.fullmatch(r"latent_codec\.y\.channel_context\.y(\d+)\.(.+)", key):
        return f"cc_transforms.{int(m[1]) - 1}.{m[2]}"
    if m := re.fullmatch(r"latent_codec\.y\.latent_codec\.y(\d+)\.context_prediction\.(.+)", key):
        return f"context_prediction.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"latent_codec\.y\.latent_codec\.y(\d+)\.entropy_parameters\.(.+)", key):
        return f"ParamAggregation.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"latent_codec\.y\.latent_codec\.y(\d+)\.y\.gaussian_conditional\.(.+)", key):
        return f"gaussian_conditional.{m[2]}" if m[1] == "0" else None
    assert key.startswith(("g_a.", "g_s.")), key
    return key


def _released_codec(tiny: bool, seed: int = 1) -> dict[str, torch.Tensor]:
    """An ELIC state dict in the release's names, parameters off any seeded init, coder tables empty."""
    model = build_elic(tiny=tiny, random_init=not tiny).model
    parameters = {name for name, _ in model.named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        name = _released_name(key)
        if name is None:
            continue
        if key.rsplit(".", 1)[-1] in CODER_TABLES:
            state[name] = torch.zeros(0, dtype=value.dtype)  # as in the released files
        elif key in parameters:
            state[name] = value + 0.01 * torch.randn(value.shape, generator=generator)
        else:
            state[name] = value.clone()
    return state


def _released_neck(latent_channels: int, width: int, seed: int = 2) -> dict[str, torch.Tensor]:
    with seeded_init(seed):
        neck = TransformNeck(latent_channels, width, grid=16)
    generator = torch.Generator().manual_seed(seed)
    return {key: value + 0.01 * torch.randn(value.shape, generator=generator) for key, value in neck.state_dict().items()}


def _write(path: Path, codec: dict | None, neck: dict | None, codec_prefix: str = "", neck_prefix: str = "") -> Path:
    content: dict = {"epoch": 59, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0]}]}}
    if codec is not None:
        content["state_dict"] = {codec_prefix + key: value for key, value in codec.items()}
    if neck is not None:
        content["adapter"] = {neck_prefix + key: value for key, value in neck.items()}
    torch.save(content, path)
    return path


@pytest.fixture(scope="module")
def full_release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    """A file with exactly the released key names and shapes (ELIC N=192, M=320 and the paper's neck)."""
    codec, neck = _released_codec(tiny=False), _released_neck(320, 1024)
    path = _write(tmp_path_factory.mktemp("release") / "d2_3.pth.tar", codec, neck, neck_prefix="module.")
    return path, codec, neck


@pytest.fixture(scope="module")
def tiny_parts() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return _released_codec(tiny=True), _released_neck(32, 64)


@pytest.fixture
def tiny_release(tmp_path: Path, tiny_parts) -> Release:
    codec, neck = tiny_parts
    return _write(tmp_path / "elic_d3_lambda0.032.pth", codec, neck, codec_prefix="module."), codec, neck


def _one_line(caught: pytest.ExceptionInfo[NeckkitError]) -> str:
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- the layout ----------------------------------------------------------------------------------------


def test_generated_files_have_exactly_the_released_names_and_shapes(full_release: Release) -> None:
    _, codec, neck = full_release
    assert {key: list(value.shape) for key, value in codec.items()} == _tsv("bridging_elic_state_dict.tsv")
    assert {key: list(value.shape) for key, value in neck.items()} == _tsv("bridging_neck_state_dict.tsv")


# --- import_release --------------------------------------------------------------------------------------


def test_a_full_size_release_becomes_a_checkpoint_with_the_exact_tensors(full_release: Release, tmp_path: Path) -> None:
    path, codec, neck = full_release
    out = import_release(path, tmp_path / "d2_3")
    assert out == tmp_path / "d2_3" and sorted(p.name for p in tmp_path.iterdir()) == ["d2_3"]
    checkpoint = load_checkpoint(out)
    meta = checkpoint.meta
    assert (meta.scenario, meta.rate_lambda, meta.entry_layer, meta.source) == ("d2", 0.016, 2, "imported from d2_3.pth.tar")
    assert (meta.encoder.name, meta.encoder.options) == ("clip-l", {"double_ln_post": True})
    assert (meta.codec.name, meta.codec.options) == ("elic", {})
    shape = meta.neck
    assert (shape.latent_channels, shape.width, shape.grid, shape.class_token) == (320, 1024, 16, True)
    assert (shape.config.num_blocks, shape.config.num_heads, shape.config.mlp_ratio) == (1, 16, 4.0)

    rebuilt = build_neck(checkpoint)
    assert sum(p.numel() for p in rebuilt.parameters()) == 13_191_168
    assert rebuilt.state_dict().keys() == neck.keys()
    assert all(torch.equal(rebuilt.state_dict()[key], value) for key, value in neck.items())

    expected = bridging_to_chandelier(codec)
    assert checkpoint.codec_state is not None and checkpoint.codec_state.keys() == expected.keys()
    assert all(torch.equal(checkpoint.codec_state[key], value) for key, value in expected.items())
    elic = build_elic(random_init=True)
    restore_codec_state(elic, checkpoint)
    assert re.fullmatch(r"[0-9a-f]{16}", meta.codec.fingerprint or "")
    assert codec_fingerprint(elic) == meta.codec.fingerprint


def test_a_tiny_release_with_module_prefixes_imports_with_name_or_given_scenario(
    tiny_release: Release, tmp_path: Path
) -> None:
    path, codec, neck = tiny_release
    named = load_checkpoint(import_release(path, tmp_path / "named"))
    assert (named.meta.scenario, named.meta.rate_lambda) == ("d3", 0.032)
    assert named.meta.epoch == 59  # the file's own epoch entry, not 0
    assert named.meta.codec_tables == "rebuilt"  # the release's coder tables are empty
    assert named.meta.codec.options == {"tiny": True}
    assert all(torch.equal(named.neck_state[key], value) for key, value in neck.items())
    expected = bridging_to_chandelier(codec)
    assert all(torch.equal(named.codec_state[key], value) for key, value in expected.items())
    elic = build_elic(tiny=True)
    restore_codec_state(elic, named)
    assert codec_fingerprint(elic) == named.meta.codec.fingerprint

    given = load_checkpoint(import_release(path, tmp_path / "given", scenario="d1", rate_lambda=0.5))
    assert (given.meta.scenario, given.meta.rate_lambda) == ("d1", 0.5)
    plain = load_checkpoint(import_release(path.rename(tmp_path / "weights.pth"), tmp_path / "plain"))
    assert (plain.meta.scenario, plain.meta.rate_lambda) == ("d1", None)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("d1_1.pth.tar", ("d1", 0.004)),  # the release's own names: quality 1..4 -> the paper's lambdas
        ("d3_4.pth.tar", ("d3", 0.032)),
        ("elic_d2_lambda0.008.pth", ("d2", 0.008)),
        ("neck-D1.pth", ("d1", None)),
        ("lambda_0.016.pt", (None, 0.016)),
        ("d12_lambda0.0040.pth", (None, None)),
        ("d1_vs_d2_0.004.pth", (None, 0.004)),
        ("d1_5.pth.tar", ("d1", None)),
        ("weights.pth", (None, None)),
    ],
)
def test_scenario_and_lambda_from_the_file_name(name: str, expected: tuple) -> None:
    assert scenario_from_name(Path("/some/folder") / name) == expected


def test_release_stem_drops_the_torch_suffixes() -> None:
    assert [release_stem(n) for n in ("d1_1.pth.tar", "a.pth", "b.pt", "c.tar", "d")] == ["d1_1", "a", "b", "c", "d"]


def _broken(tmp_path: Path, case: str, codec: dict, neck: dict) -> Path:
    path = tmp_path / "d1_1.pth.tar"
    if case == "missing":
        return path
    if case == "not torch":
        path.write_text("not a torch file")
        return path
    if case == "no adapter":
        return _write(path, codec, None)
    if case == "no state_dict":
        return _write(path, None, neck)
    if case == "not a dict":
        torch.save([torch.zeros(1)], path)
        return path
    if case == "chandelier names":
        return _write(path, bridging_to_chandelier(codec), neck)
    if case == "neck shapes":
        return _write(path, codec, {**neck, "ln_pre.weight": torch.zeros(10), "extra.bias": torch.zeros(1)})
    if case == "neck grid":
        return _write(path, codec, {**neck, "positional_embedding": torch.zeros(200, 64)})
    if case == "codec shapes":
        return _write(path, {**codec, "g_s.0.conv_a.0.conv.0.weight": torch.zeros(3, 3, 1, 1)}, neck)
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "weight file {path} does not exist"),
        ("not torch", "{path} is not a readable PyTorch weight file"),
        ("not a dict", "{path} is not one of the paper's released files: it holds a list"),
        ("no adapter", "{path} is not one of the paper's released files: it has no 'adapter' entry"),
        ("no state_dict", "{path} is not one of the paper's released files: it has no 'state_dict' entry"),
        ("chandelier names", "{path}: its 'state_dict' is not the paper's ELIC"),
        (
            "neck shapes",
            "{path} 'adapter' does not fit a transform-neck: unexpected extra.bias; "
            "wrong shape ln_pre.weight [10] (expected [64])",
        ),
        ("neck grid", "{path} 'adapter': positional_embedding has 199 patch rows, not a square grid"),
        (
            "codec shapes",
            "{path} 'state_dict' does not fit Elic2022Chandelier: wrong shape g_s.0.conv_a.0.conv.0.weight [3, 3, 1, 1]",
        ),
    ],
)
def test_bad_files_give_one_line_and_write_nothing(tmp_path: Path, tiny_parts, case: str, expected: str) -> None:
    (tmp_path / "in").mkdir()
    path = _broken(tmp_path / "in", case, *tiny_parts)
    with pytest.raises(NeckkitError) as caught:
        import_release(path, tmp_path / "out" / "d1_1")
    assert _one_line(caught).startswith(expected.format(path=path)), str(caught.value)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_bad_arguments_are_refused(tiny_release: Release, tmp_path: Path) -> None:
    path = tiny_release[0]
    with pytest.raises(NeckkitError, match=r"scenario must be one of d1, d2, d3, got 'd4'"):
        import_release(path, tmp_path / "x", scenario="d4")
    with pytest.raises(NeckkitError, match="lambda must be positive, got -1.0"):
        import_release(path, tmp_path / "x", rate_lambda=-1.0)
    assert not (tmp_path / "x").exists()


# --- the command ------------------------------------------------------------------------------------------


def test_cli_imports_each_file_into_out_named_after_its_stem(
    runner: CliRunner, host: PluginHost, tiny_release: Release, tmp_path: Path
) -> None:
    path = tiny_release[0]
    second = _write(tmp_path / "d2_4.pth.tar", *tiny_release[1:])
    out = tmp_path / "out"
    result = invoke(runner, host, "import-checkpoint", str(path), str(second), "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["failed"] == []
    rows = {row["checkpoint"]: row for row in report["checkpoints"]}
    assert sorted(rows) == [str(out / "d2_4"), str(out / "elic_d3_lambda0.032")]
    row = rows[str(out / "d2_4")]
    assert (row["scenario"], row["lambda"], row["codec"], row["encoder"]) == ("d2", 0.032, "elic", "clip-l")
    assert row["encoder_options"] == {"double_ln_post": True} and row["entry_layer"] == 2
    assert row["codec_fingerprint"] == load_checkpoint(out / "d2_4").meta.codec.fingerprint

    again = invoke(runner, host, "import-checkpoint", str(second), "-o", str(out), "--scenario", "d1", "--lambda", "0.1")
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith(f"{second} -> {out / 'd2_4'}: d1, lambda 0.1; codec elic (fingerprint ")
    assert again.stdout.rstrip().endswith("encoder clip-l (double_ln_post=True) at block 2")
    assert load_checkpoint(out / "d2_4").meta.scenario == "d1"  # replaced


def test_cli_reports_a_file_without_adapter_and_still_imports_the_others(
    runner: CliRunner, host: PluginHost, tiny_release: Release, tmp_path: Path
) -> None:
    good = tiny_release[0]
    bad = _write(tmp_path / "d1_1.pth.tar", tiny_release[1], None)
    out = tmp_path / "out"
    result = invoke(runner, host, "import-checkpoint", str(bad), str(good), "-o", str(out))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {bad} is not one of the paper's released files: it has no 'adapter' entry "
        "(they hold the ELIC codec under 'state_dict' and the neck under 'adapter')\n"
        f"Notice: {good} 'state_dict' carries no (complete) entropy-coder tables; rebuilt them from the weights\n"
    )
    assert sorted(p.name for p in out.iterdir()) == ["elic_d3_lambda0.032"]
    assert result.stdout.startswith(f"{good} -> {out / 'elic_d3_lambda0.032'}: d3, lambda 0.032;")


def test_cli_refuses_bad_options_in_one_line(
    runner: CliRunner, host: PluginHost, tiny_release: Release, tmp_path: Path
) -> None:
    path = tiny_release[0]
    result = invoke(runner, host, "import-checkpoint", str(path), "-o", str(tmp_path / "out"), "--scenario", "d4")
    assert result.exit_code == 1 and result.stderr == "Error: scenario must be one of d1, d2, d3, got 'd4'\n"
    twin = tmp_path / "elic_d3_lambda0.032.pth.tar"
    twin.write_bytes(path.read_bytes())
    result = invoke(runner, host, "import-checkpoint", str(path), str(twin), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1 and "would both be imported into" in result.stderr
    (tmp_path / "file").write_text("x")
    result = invoke(runner, host, "import-checkpoint", str(path), "-o", str(tmp_path / "file"))
    assert result.exit_code == 1 and result.stderr == f"Error: -o {tmp_path / 'file'} must be a folder\n"
    assert not (tmp_path / "out").exists()


# --- an imported folder stands alone ---------------------------------------------------------------------


def test_an_imported_checkpoint_builds_its_codec_from_the_weights_it_carries(
    full_release: Release, tmp_path: Path, host: PluginHost
) -> None:
    from neckkit.serving.machine_path import carried_codec_weights, codec_for_checkpoint

    checkpoint = load_checkpoint(import_release(full_release[0], tmp_path / "d2_3"))
    assert carried_codec_weights(host, checkpoint) == str(checkpoint.path / "codec.safetensors")
    name, codec = codec_for_checkpoint(host, checkpoint)  # no --codec-weights: ELIC's own would be refused
    assert name == "elic" and codec_fingerprint(codec) == checkpoint.meta.codec.fingerprint


def test_compress_given_only_an_imported_neck_uses_its_codec(
    tiny_release: Release, tmp_path: Path, runner: CliRunner, host: PluginHost
) -> None:
    from neckkit.samples import sample_images

    folder = import_release(tiny_release[0], tmp_path / "tiny")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["codec"]["options"] == {"tiny": True}  # tiny: built tiny, then the carried state restored
    result = invoke(runner, host, "compress", "--neck", str(folder), str(sample_images()[0]), "-o", str(tmp_path / "a.nk"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.nk").stat().st_size > 0
