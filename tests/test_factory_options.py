"""The factory-option contract: legal combinations, declared options, seeding, and one mapping for every command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, Field

from conftest import invoke
from neckkit import NeckkitError, PluginError
from neckkit.cli.components import component_options
from neckkit.host.manager import PluginHost
from neckkit.host.options import (
    CORE_OPTIONS,
    STANDARD_OPTIONS,
    accepted_options,
    build_component,
    check_options,
    option_help,
)
from neckkit.host.registry import ComponentInfo, make_component

LABEL = "codec 'toy' (plugin 'p')"


def echo(**options: object) -> dict:
    """A factory that returns what it was given (and never takes ``seed``)."""
    return options


def toy(factory=echo, **info: object):
    info = {"description": "toy codec", "tiny": True, "options": {"weights": "w", "random_init": "r", "quality": "q"}} | info
    return make_component("codec", "p", "toy", factory, info)


# -- the option table ----------------------------------------------------------------------------------


def test_the_standard_options_and_who_handles_them() -> None:
    table = {option.name: (option.type, option.handled_by) for option in STANDARD_OPTIONS}
    assert table == {
        "tiny": (bool, "factory"),
        "random_init": (bool, "factory"),
        "weights": (str, "factory"),
        "quality": (int, "factory"),
        "seed": (int, "core"),
    }
    assert CORE_OPTIONS == {"seed"}


def test_every_register_info_field_is_described() -> None:
    for name, field in ComponentInfo.model_fields.items():
        assert field.description and len(field.description) > 30, name


# -- combinations, checked before the factory runs -----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"tiny": True, "random_init": True}, "--tiny and --random-init exclude each other"),
        ({"random_init": True, "weights": "w.pth"}, "--random-init and --codec-weights exclude each other"),
        ({"tiny": True, "weights": "w.pth"}, "--tiny and --codec-weights exclude each other (its tiny architecture loads no weights)"),
        ({"tiny": True, "quality": 3}, "--tiny and --quality exclude each other (a tiny model is the same random model at every quality)"),
        ({"seed": 3}, "seed seeds a random init: pass it with --tiny or --random-init"),
        ({"seed": 3, "weights": "w.pth"}, "seed seeds a random init: pass it with --tiny or --random-init"),
        ({"tiny": True, "seed": "three"}, "seed must be an integer, got 'three'"),
    ],
)
def test_illegal_combinations_are_one_line_naming_component_and_plugin(options: dict, reason: str) -> None:
    called = []
    component = toy(lambda **kw: called.append(kw))
    with pytest.raises(NeckkitError) as caught:
        component.build(**options)
    assert str(caught.value) == f"{LABEL}: {reason}"
    assert called == []  # refused before the factory ran


def test_quality_outside_the_registered_qualities_is_refused() -> None:
    component = toy(qualities=(1, 2, 3))
    assert component.build(quality=2) == {"quality": 2}
    assert component.build(random_init=True, quality=3) == {"random_init": True, "quality": 3}
    with pytest.raises(NeckkitError) as caught:
        component.build(quality=9)
    assert str(caught.value) == f"{LABEL}: no quality 9 (qualities with known weights: 1, 2, 3)"


def test_tiny_with_weights_is_legal_for_tiny_weights_components() -> None:
    assert toy(tiny_weights=True).build(tiny=True, weights="w.pth") == {"tiny": True, "weights": "w.pth"}


def test_undeclared_options_are_refused_listing_the_accepted_ones() -> None:
    with pytest.raises(NeckkitError) as caught:
        toy().build(typo=1, tpyo=2)
    assert str(caught.value) == (
        f"{LABEL} does not accept options 'tpyo', 'typo' (accepts: quality, random_init, seed, tiny, weights)"
    )


def test_tiny_is_declared_by_tiny_true_only() -> None:
    component = make_component("codec", "p", "toy", echo, {"description": "x"})
    with pytest.raises(NeckkitError, match=r"^codec 'toy' \(plugin 'p'\) does not accept option 'tiny' \(accepts: seed\)$"):
        component.build(tiny=True)
    assert make_component("codec", "p", "toy", echo, {"description": "x", "tiny": True}).build(tiny=True) == {"tiny": True}


def test_unset_standard_options_are_not_passed() -> None:
    assert toy().build(tiny=False, weights=None, quality=None, random_init=False) == {}


# -- seeding: the core's job ---------------------------------------------------------------------------


def test_the_core_seeds_the_factory_and_never_passes_seed() -> None:
    import torch

    def random_tensor(tiny: bool = False) -> torch.Tensor:  # no seed parameter: passing it would raise
        return torch.rand(4)

    component = toy(random_tensor, options={})
    default = component.build(tiny=True)
    assert torch.equal(default, component.build(tiny=True, seed=0))
    assert torch.equal(component.build(tiny=True, seed=7), component.build(tiny=True, seed=7))
    assert not torch.equal(default, component.build(tiny=True, seed=7))


# -- declared options as a pydantic model --------------------------------------------------------------


class ToyOptions(BaseModel):
    weights: str | None = Field(None, description="a state dict file")
    channels: int = Field(8, ge=1, description="latent channels")


def test_pydantic_options_are_validated_and_converted_before_the_factory() -> None:
    component = toy(options=ToyOptions)
    assert component.build(channels="16") == {"channels": 16}  # converted; defaults left to the factory
    assert component.build(tiny=True) == {"tiny": True}
    with pytest.raises(NeckkitError) as caught:
        component.build(channels=0)
    assert str(caught.value) == f"{LABEL}: invalid options: channels: Input should be greater than or equal to 1"
    with pytest.raises(NeckkitError, match=r"does not accept option 'quality' \(accepts: channels, seed, tiny, weights\)"):
        component.build(quality=1)
    assert option_help(component.info) == {"channels": "latent channels", "tiny": "tiny widths, random init (tests, quick start)",
                                           "weights": "a state dict file"}


# -- registration rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"tiny_weights": True}, "tiny_weights=True needs tiny=True"),
        ({"options": {"tiny": "small"}}, "options declare 'tiny': register with tiny=True"),
        ({"qualities": (1, 2)}, "qualities are given: declare the 'quality' option in options"),
        ({"scenarios": ("d1", "d4")}, "scenarios.1: Input should be 'd1', 'd2' or 'd3'"),
        ({"options": {"n": 3}}, "options.dict[str,str].n: Input should be a valid string"),
    ],
)
def test_inconsistent_register_info_is_refused(info: dict, message: str) -> None:
    with pytest.raises(PluginError) as caught:
        make_component("codec", "p", "toy", echo, {"description": "x", **info})
    assert message in str(caught.value)


def test_scenarios_are_undeclared_by_default_and_sorted_when_declared() -> None:
    assert ComponentInfo(description="x").scenarios is None  # d1, d2, and d3 decided on the built codec
    assert ComponentInfo(description="x", scenarios=("d3", "d1", "d2")).scenarios == ("d1", "d2", "d3")


# -- factory failures ----------------------------------------------------------------------------------


def test_a_factory_raising_is_one_line_naming_component_and_plugin() -> None:
    def broken(**_: object) -> None:
        raise RuntimeError("CUDA out of\nmemory")

    with pytest.raises(NeckkitError) as caught:
        toy(broken).build()
    assert str(caught.value) == f"{LABEL} failed to build: RuntimeError: CUDA out of memory"
    assert isinstance(caught.value.__cause__, RuntimeError)

    def refusing(**_: object) -> None:
        raise NeckkitError("needs weights")

    with pytest.raises(NeckkitError) as caught:
        toy(refusing).build()
    assert str(caught.value) == "needs weights"  # the plugin's own one-line errors pass unchanged


def test_weights_required_refuses_no_weight_source_before_the_factory_is_imported() -> None:
    from neckkit.host.factories import lazy_factory

    needy = toy(lazy_factory("no_such_module_anywhere:build"), weights_required="needs weights: pass weights=<file>")
    with pytest.raises(NeckkitError) as caught:
        needy.build()  # an import would fail with ModuleNotFoundError: the refusal comes first
    assert str(caught.value) == f"{LABEL}: needs weights: pass weights=<file>"
    for given in ({"weights": "w.pth"}, {"tiny": True}, {"random_init": True}, {"quality": 3}):
        with pytest.raises(NeckkitError, match="failed to build: ModuleNotFoundError"):
            needy.build(**given)  # a weight source: the factory is reached


# -- rebuilding with weights ---------------------------------------------------------------------------


def _host_with(bare_host: PluginHost, **info: object) -> PluginHost:
    from neckkit import hookimpl

    class Plugin:
        @staticmethod
        @hookimpl
        def register_codecs(register) -> None:
            register("toy", echo, description="toy", tiny=True, options={"weights": "w", "random_init": "r"}, **info)

    assert bare_host.register(Plugin, "p", "1.0")
    return bare_host


def test_weights_replace_random_init_and_keep_tiny_only_for_tiny_weights(bare_host: PluginHost) -> None:
    host = _host_with(bare_host)
    assert build_component(host, "codec", "toy", {"tiny": True, "seed": 2}, weights="w.pth") == ("toy", {"weights": "w.pth"})
    assert build_component(host, "codec", "toy", {"random_init": True}, weights="w.pth") == ("toy", {"weights": "w.pth"})


def test_a_tiny_weights_component_is_rebuilt_tiny(bare_host: PluginHost) -> None:
    host = _host_with(bare_host, tiny_weights=True)
    assert build_component(host, "codec", "toy", {"tiny": True}, weights="w.pth") == ("toy", {"tiny": True, "weights": "w.pth"})


# -- flags -> options: one function ---------------------------------------------------------------------


def test_flags_and_opt_items_merge_and_a_repeated_option_is_refused() -> None:
    assert component_options(["N=64", "variant=official"], tiny=True, weights=None, random_init=False) == {
        "N": 64, "variant": "official", "tiny": True}
    assert component_options(["weights=a.pth"], weights="a.pth") == {"weights": "a.pth"}
    with pytest.raises(NeckkitError, match=r"^option 'weights' is given twice, as 'a.pth' and as 'b.pth'; pass it once$"):
        component_options(["weights=a.pth"], weights="b.pth")


@pytest.mark.parametrize(
    ("flags", "extra", "expected"),
    [
        ({}, None, {"random_init": True}),
        ({"tiny": True}, None, {"tiny": True}),
        ({"weights": "w.pth"}, None, {"weights": "w.pth"}),
        ({}, ["pretrained=laion2b"], {"pretrained": "laion2b"}),
        ({"quality": 3}, None, {"quality": 3}),
    ],
)
def test_random_by_default_only_when_nothing_chooses_the_weights(flags: dict, extra: list | None, expected: dict) -> None:
    assert component_options(extra, random_by_default=True, **flags) == expected


def test_check_options_returns_what_the_factory_gets_and_the_seed() -> None:
    assert check_options(toy(), {"tiny": True, "seed": 5}) == ({"tiny": True}, 5)
    assert accepted_options(toy().info) == ["quality", "random_init", "seed", "tiny", "weights"]


# -- the commands --------------------------------------------------------------------------------------


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_eval_refuses_tiny_quality_points_that_would_be_identical(runner, host, tmp_path: Path) -> None:
    result = invoke(runner, host, "eval", "--codec", "bmshj2018-hyperprior", "--quality", "1", "--quality", "6", "--tiny",
                    "--out", str(tmp_path / "e"))
    assert _one_error_line(result) == (
        "Error: codec 'bmshj2018-hyperprior' (plugin 'neckkit.plugins.codecs'): --tiny and --quality exclude each other "
        "(a tiny model is the same random model at every quality)"
    )
    assert not (tmp_path / "e").exists()


def test_train_refuses_encoder_weights_with_tiny(runner, host, tmp_path: Path, offline_cache) -> None:
    out = tmp_path / "run"
    result = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l", "--tiny",
                    "--encoder-weights", "openai/clip-vit-large-patch14", "--out", str(out))
    assert _one_error_line(result) == (
        "Error: encoder 'clip-l' (plugin 'neckkit.plugins.encoders'): --tiny and --encoder-weights exclude each other "
        "(its tiny architecture loads no weights)"
    )
    assert not out.exists()


@pytest.mark.parametrize("command", ["compress", "train", "bench"])
def test_a_codec_opt_typo_names_component_plugin_and_accepted_options(runner, host, tmp_path: Path, command: str,
                                                                      offline_cache) -> None:
    from neckkit.samples import sample_images

    args = {
        "compress": ["compress", str(sample_images()[0]), "-o", str(tmp_path / "x.nk")],
        "train": ["train", "--encoder", "clip-l", "--out", str(tmp_path / "run")],
        "bench": ["bench", "--encoder", "clip-l", "--device", "cpu"],
    }[command]
    result = invoke(runner, host, *args, "--codec", "tic", "--tiny", "--codec-opt", "typo=1")
    assert _one_error_line(result) == (
        "Error: codec 'tic' (plugin 'neckkit.plugins.codecs') does not accept option 'typo' "
        "(accepts: quality, random_init, seed, tiny, weights)"
    )


def test_bench_refuses_tiny_with_an_explicit_random_init(runner, host) -> None:
    result = invoke(runner, host, "bench", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--random-init", "--device", "cpu")
    assert _one_error_line(result) == (
        "Error: codec 'tic' (plugin 'neckkit.plugins.codecs'): --tiny and --random-init exclude each other"
    )


def test_bench_refuses_two_different_entry_layers(runner, host) -> None:
    result = invoke(runner, host, "bench", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--device", "cpu",
                    "--entry-layer", "1", "--encoder-opt", "entry_layer=3")
    assert _one_error_line(result) == "Error: --entry-layer 1 and --encoder-opt entry_layer=3 disagree; pass one"


def test_train_refuses_a_scenario_the_codec_did_not_declare(runner, bare_host: PluginHost, tmp_path: Path) -> None:
    from neckkit import hookimpl

    class Plugin:
        @staticmethod
        @hookimpl
        def register_codecs(register) -> None:
            register("plain", echo, description="a codec without synthesis_modules", tiny=True, scenarios=("d1", "d2"))

        @staticmethod
        @hookimpl
        def register_encoders(register) -> None:
            register("vit", echo, description="an encoder", tiny=True)

    assert bare_host.register(Plugin, "p", "1.0")
    result = invoke(runner, bare_host, "train", "--codec", "plain", "--encoder", "vit", "--tiny", "--scenario", "d3",
                    "--out", str(tmp_path / "run"))
    assert _one_error_line(result) == (
        "Error: codec 'plain' (plugin 'p') supports scenarios d1, d2, not d3 (d3 needs Codec.synthesis_modules(); "
        "its plugin declares it with register(..., scenarios=(\"d1\", \"d2\", \"d3\")))"
    )


def test_entry_layer_is_one_source_of_truth(runner, host, tmp_path: Path, offline_cache) -> None:
    from neckkit.neck.checkpoint import load_checkpoint
    from neckkit.serving.machine_path import encoder_for_checkpoint

    out = tmp_path / "run"
    base = ["train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--no-progress", "--max-steps", "2"]
    result = invoke(runner, host, *base, "--encoder-opt", "entry_layer=3", "--out", str(out))
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(out)
    assert checkpoint.meta.entry_layer == 3 and checkpoint.meta.encoder.options == {"tiny": True, "entry_layer": 3}
    assert yaml.safe_load((out / "config.yaml").read_text())["neck"]["entry_layer"] == 3  # what the trainer used
    assert encoder_for_checkpoint(host, checkpoint)[1].entry_layer == 3  # the encoder eval and ask rebuild

    bench = invoke(runner, host, "bench", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--size", "64", "--repeats", "1",
                   "--device", "cpu", "--encoder-opt", "entry_layer=3", "--json")
    assert bench.exit_code == 0, bench.output
    assert json.loads(bench.stdout)["entry_layer"] == 3

    clash = invoke(runner, host, *base, "--encoder-opt", "entry_layer=3", "--set", "neck.entry_layer=2", "--out", str(tmp_path / "x"))
    assert _one_error_line(clash) == (
        "Error: --encoder-opt entry_layer=3 and neck.entry_layer=2 (from --set or --config) disagree; "
        "the encoder option says where neck tokens enter: pass one of them"
    )
    assert not (tmp_path / "x").exists()

    configured = tmp_path / "set"
    result = invoke(runner, host, *base, "--set", "neck.entry_layer=1", "--out", str(configured))
    assert result.exit_code == 0, result.output
    meta = load_checkpoint(configured).meta
    assert meta.entry_layer == 1 and meta.encoder.options == {"tiny": True, "entry_layer": 1}  # the encoder follows


def test_list_plugins_shows_scenarios_options_and_weights_facts(runner, host) -> None:
    result = invoke(runner, host, "list-plugins", "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert set(listing) == {"plugins", "components", "failed"}
    codecs = {row["name"]: row for row in listing["components"]["codecs"]}
    assert codecs["bmshj2018-hyperprior"] == {
        "name": "bmshj2018-hyperprior",
        "plugin": "neckkit.plugins.codecs",
        "description": "Ballé et al. 2018 scale hyperprior (CompressAI zoo)",
        "aliases": [],
        "tiny": True,
        "tiny_weights": True,
        "qualities": [1, 2, 3, 4, 5, 6, 7, 8],
        "pretrained": [],
        "options": codecs["bmshj2018-hyperprior"]["options"],
        "paths": ["reconstruction", "neck"],
        "scenarios": ["d1", "d2", "d3"],
    }
    assert list(codecs["bmshj2018-hyperprior"]["options"]) == ["quality", "random_init", "tiny", "weights"]
    learned = [row for row in codecs.values() if row["paths"] == ["reconstruction", "neck"]]
    assert all(row["scenarios"] == (["d1"] if row["name"].endswith("-vbr") else ["d1", "d2", "d3"]) for row in learned)
    anchors = [row for row in codecs.values() if row["paths"] == ["reconstruction"]]  # no latent: nothing to train
    assert {row["name"] for row in anchors} == {"jpeg", "webp", "avif", "heif", "jxl", "vtm"}
    assert all(row["scenarios"] == [] and row["qualities"] == [] for row in anchors)
    assert (codecs["tic"]["tiny_weights"], codecs["tic"]["qualities"]) == (False, [1, 2, 3, 4])
    encoders = {row["name"]: row for row in listing["components"]["encoders"]}
    assert encoders["clip-l"]["pretrained"] == ["openai/clip-vit-large-patch14"]
    assert "entry_layer" in encoders["clip-l"]["options"] and "scenarios" not in encoders["clip-l"]
    assert encoders["openclip"]["tiny_weights"] is True
    table = invoke(runner, host, "list-plugins")
    assert table.exit_code == 0
    for text in ("scenarios", "qualities", "d1,d2,d3", "1-8", "yes+weights",
                 "tic (plugin neckkit.plugins.codecs) options: quality, random_init, tiny, weights",
                 "clip-l (plugin neckkit.plugins.encoders) options: double_ln_post, entry_layer, random_init, tiny, weights; "
                 "pretrained tags / hub ids: openai/clip-vit-large-patch14"):
        assert text in table.stdout, text
