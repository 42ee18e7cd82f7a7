"""``neckkit.plugin_api``: every exported name works as documented (tests/test_meta.py checks each is used here).

Each name of ``plugin_api.__all__`` appears below as ``api.<name>``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from compressai.models import FactorizedPrior, JointAutoregressiveHierarchicalPriors
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

import neckkit.plugin_api as api
from conftest import invoke
from neckkit import errors, interfaces
from neckkit.host.manager import PluginHost
from neckkit.neck.checkpoint import read_meta, resolve_checkpoint


def test_all_is_sorted_unique_and_every_name_resolves() -> None:
    assert len(set(api.__all__)) == len(api.__all__)
    assert api.__all__ == sorted(api.__all__, key=lambda name: (not name.isupper(), name[0].islower(), name))
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert set(api.__all__) <= set(dir(api))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        api.nope  # noqa: B018


def test_importing_the_api_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys, neckkit.plugin_api as api; api.hookimpl; api.lazy_factory; "
        "api.compressai_factory('mbt2018', tiny_sizes=(16, 32)); api.COMPRESSAI_OPTIONS; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout) == (0, "False\n"), result.stderr


def test_interfaces_and_errors_are_the_core_objects() -> None:
    assert (api.Codec, api.Analysis, api.LatentPayload, api.estimated_bits) == (
        interfaces.Codec,
        interfaces.Analysis,
        interfaces.LatentPayload,
        interfaces.estimated_bits,
    )
    assert (api.VisualEncoder, api.MLLM) == (interfaces.VisualEncoder, interfaces.MLLM)
    assert (api.NeckkitError, api.PluginError) == (errors.NeckkitError, errors.PluginError)
    assert issubclass(api.PluginError, api.NeckkitError)
    likelihoods = {"y": torch.full((1, 2, 2, 2), 0.5)}
    assert api.estimated_bits(likelihoods).item() == 8.0  # 8 symbols of one bit
    assert api.LatentPayload(strings=[[b"ab"], [b"c"]], shape=(1, 1)).num_bytes == 3
    assert api.Analysis(y_hat=torch.zeros(1), likelihoods={}).likelihoods == {}


class _LazyPlugin:
    """A plugin object whose factory is imported only when built."""

    @staticmethod
    @api.hookimpl
    def register_codecs(register: api.RegisterCallback) -> None:
        register(
            "lazy-toy",
            api.lazy_factory("neckkit_toy.codec:build_codec", channels=4),
            description="the toy codec through lazy_factory",
            tiny=True,
        )


def test_hookimpl_register_callback_and_lazy_factory(bare_host: PluginHost) -> None:
    assert bare_host.register(_LazyPlugin(), "lazy", "1.0")
    component = bare_host.components("codec").get("lazy-toy")
    assert component.factory.__name__ == "lazy(neckkit_toy.codec:build_codec)"
    codec = component.build(tiny=True)
    assert isinstance(codec, api.Codec) and codec.latent_channels == 4
    with pytest.raises(api.PluginError, match="must look like 'package.module:function'"):
        api.lazy_factory("no_colon")


class _PngCodec(api.ImageCodec):
    """A third-party image codec: lossless PNG, quality = zlib level."""

    name, quality_range, default_quality = "png-anchor", (0, 9), 6
    library = "pillow png"

    def encode(self, x: torch.Tensor) -> bytes:
        import io

        from neckkit.bitstream.images import tensor_to_image

        buffer = io.BytesIO()
        tensor_to_image(x).save(buffer, format="PNG", compress_level=self.quality)
        return buffer.getvalue()

    def decode(self, data: bytes, size: tuple[int, int] | None = None) -> torch.Tensor:
        import io

        from PIL import Image

        from neckkit.bitstream.images import image_to_tensor

        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            return image_to_tensor(image)


class _ImageCodecPlugin:
    @staticmethod
    @api.hookimpl
    def register_codecs(register: api.RegisterCallback) -> None:
        register("png-anchor", lambda quality=None, tiny=False: _PngCodec(quality), description="PNG, lossless",
                 image_codec=True, tiny=True, options={"quality": "zlib level 0-9"})
        register("not-an-image-codec", lambda tiny=False: object(), description="claims image_codec", image_codec=True,
                 tiny=True)


def test_an_image_codec_plugin_round_trips_through_the_nk_container(bare_host: PluginHost) -> None:
    from neckkit.bitstream.image_files import decode_image, encode_image
    from neckkit.bitstream.nk_format import decode_nk, encode_nk

    assert bare_host.register(_ImageCodecPlugin(), "anchors", "1.0")
    codecs = bare_host.components("codec")
    codec = codecs.get("png-anchor").build(quality=9, tiny=True)  # tiny is a no-op and combines with quality
    assert isinstance(codec, api.ImageCodec) and (codec.quality, len(codec.fingerprint)) == (9, 16)
    x = torch.rand(1, 3, 7, 5)
    nk = decode_nk(encode_nk(encode_image(codec, x)))
    assert (nk.options, nk.shape, tuple(nk.padding), nk.original_size) == ({"quality": 9}, (), (0, 0, 0, 0), (7, 5))
    assert torch.equal(decode_image(codec, nk), (x * 255).round() / 255)  # lossless at 8 bits
    with pytest.raises(api.NeckkitError, match=r"png-anchor: quality must be an integer in 0\.\.9, got 10"):
        _PngCodec(10)
    with pytest.raises(api.NeckkitError, match="registered as an image codec .* but its factory built object"):
        codecs.get("not-an-image-codec").build()


def test_read_weights_reads_tensors_and_refuses_code(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.ones(2)}, path)
    assert torch.equal(api.read_weights(path)["w"], torch.ones(2))
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"w": _LazyPlugin()}, unsafe)
    with pytest.raises(api.NeckkitError, match="refusing to load .*arbitrary unpickling") as caught:
        api.read_weights(unsafe)
    assert "\n" not in str(caught.value)
    with pytest.raises(api.NeckkitError, match="does not exist"):
        api.read_weights(tmp_path / "absent.pt")


def test_read_state_dict_unwraps_and_strips_module_prefixes(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"module.layer.weight": torch.ones(3)}, "epoch": 4}, path)
    assert list(api.read_state_dict(path)) == ["layer.weight"]
    assert list(api.read_state_dict({"model": {"module.bias": torch.zeros(1)}})) == ["bias"]
    with pytest.raises(api.NeckkitError, match="holds no state dict"):
        api.read_state_dict({"state_dict": {}})


def test_load_state_dict_loads_or_says_why_in_one_line(tmp_path: Path) -> None:
    source = nn.Linear(3, 2)
    path = tmp_path / "linear.pth"
    torch.save({"state_dict": {f"module.{key}": value for key, value in source.state_dict().items()}}, path)
    target = nn.Linear(3, 2)
    api.load_state_dict(target, path)
    assert torch.equal(target.weight, source.weight)
    with pytest.raises(api.NeckkitError) as caught:
        api.load_state_dict(nn.Linear(4, 2), path)
    assert str(caught.value) == f"{path} does not fit Linear: wrong shape weight [2, 3] (expected [2, 4])"
    partial = nn.Linear(3, 2)
    api.load_state_dict(partial, {"weight": source.weight.detach()}, skip=lambda key: key == "bias")
    assert torch.equal(partial.weight, source.weight)


def test_state_dict_mismatches_one_phrase_per_kind() -> None:
    expected = {"a": torch.zeros(2), "b": torch.zeros(3)}
    state = {"a": torch.zeros(4), "c": torch.zeros(1)}
    assert api.state_dict_mismatches(expected, state) == [
        "missing b",
        "unexpected c",
        "wrong shape a [4] (expected [2])",
    ]
    assert api.state_dict_mismatches(expected, dict(expected)) == []


def test_load_codec_state_rebuilds_the_entropy_tables(tmp_path: Path) -> None:
    with api.seeded_init(3):
        trained = FactorizedPrior(8, 16)
    trained.update(force=True)
    state = {
        key: value for key, value in trained.state_dict().items() if key.rsplit(".", 1)[-1] not in api.CODER_TABLES
    }
    assert len(state) < len(trained.state_dict())  # the file lacks the coder tables
    fresh = FactorizedPrior(8, 16)
    api.load_codec_state(fresh, state, "factorized.pth")
    assert torch.equal(fresh.entropy_bottleneck._quantized_cdf, trained.entropy_bottleneck._quantized_cdf)
    with pytest.raises(
        api.NeckkitError,
        match=r"factorized.pth does not fit FactorizedPrior: missing entropy_bottleneck\.biases\.0, .* \(\+\d+ more\)",
    ):
        api.load_codec_state(FactorizedPrior(8, 16), {"g_s.0.weight": state["g_s.0.weight"]}, "factorized.pth")


def test_seeded_init_and_fingerprint_identify_equal_weights() -> None:
    before = torch.random.get_rng_state()
    with api.seeded_init(1):
        first = nn.Linear(4, 4)
    with api.seeded_init(1):
        again = nn.Linear(4, 4)
    with api.seeded_init(2):
        other = nn.Linear(4, 4)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is untouched
    assert api.fingerprint(first) == api.fingerprint(again) != api.fingerprint(other)
    assert len(api.fingerprint(first)) == 16


def test_random_weights_says_whether_to_draw_and_refuses_what_the_core_refuses() -> None:
    assert api.random_weights(None, tiny=True, random_init=False)
    assert api.random_weights(None, tiny=False, random_init=True)
    assert not api.random_weights("file.pth", tiny=False, random_init=False)
    with pytest.raises(api.NeckkitError) as caught:
        api.random_weights("file.pth", tiny=True, random_init=False, component="codec 'mine'")
    assert str(caught.value) == (
        "codec 'mine': tiny and weights exclude each other (its tiny architecture loads no weights; one that does "
        "registers tiny_weights=True)"
    )
    with pytest.raises(api.NeckkitError, match=r"^codec 'mine': random_init and weights exclude each other$"):
        api.random_weights("file.pth", tiny=False, random_init=True, component="codec 'mine'")
    with pytest.raises(api.NeckkitError, match=r"^codec 'mine': tiny and random_init exclude each other$"):
        api.random_weights(None, tiny=True, random_init=True, component="codec 'mine'")
    with pytest.raises(api.NeckkitError, match=r"^test_random_weights_\w+\(\): tiny and weights exclude"):
        api.random_weights("file.pth", tiny=True, random_init=False)  # unnamed: the calling factory is named


def test_random_weights_agrees_with_tiny_weights_in_and_out_of_a_build(bare_host: PluginHost) -> None:
    assert api.random_weights("file.pth", tiny=True, random_init=False, tiny_weights=True) is False  # load into tiny

    def build(weights: str | None = None, tiny: bool = False) -> bool:
        return api.random_weights(weights, tiny, random_init=False)  # tiny_weights and the name from the registration

    class Plugin:
        @staticmethod
        @api.hookimpl
        def register_codecs(register: api.RegisterCallback) -> None:
            register("tiny-loads", build, description="x", tiny=True, tiny_weights=True, options={"weights": "w"})

    assert bare_host.register(Plugin, "p", "1.0")
    component = bare_host.components("codec").get("tiny-loads")
    assert component.build(tiny=True, weights="file.pth") is False and component.build(tiny=True) is True


def test_wrap_compressai_model_makes_any_supported_model_an_exact_codec() -> None:
    with api.seeded_init(2):
        model = JointAutoregressiveHierarchicalPriors(16, 32)  # mbt2018: serial context model
    model.g_a[-1].weight.data.mul_(20.0)  # real symbols, not only zeros, from a tiny random model
    codec = api.wrap_compressai_model(model, "mine")
    assert isinstance(codec, api.CompressAICodec) and isinstance(codec, api.Codec)
    assert (codec.model, codec.name, codec.latent_channels, codec.pad_multiple) == (model, "mine", 32, 64)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        analysis = codec.analyze(x)
        assert torch.equal(codec.decompress_latent(codec.compress(x)), analysis.y_hat)
    assert analysis.y_hat.round().abs().sum() > 0 and set(analysis.likelihoods) == {"y", "z"}
    with pytest.raises(api.NeckkitError, match="^no neckkit adapter for CompressAI model FactorizedPrior$"):
        api.wrap_compressai_model(FactorizedPrior(8, 16))


def test_compressai_factory_builds_a_zoo_model_with_the_standard_options(bare_host: PluginHost) -> None:
    class Plugin:
        @staticmethod
        @api.hookimpl
        def register_codecs(register: api.RegisterCallback) -> None:
            for name in ("cheng2020-attn", "mbt2018-mean", "bmshj2018-factorized"):
                register(
                    name,
                    api.compressai_factory(name, tiny_sizes=(8,) if "cheng" in name else (8, 16)),
                    description=name,
                    tiny=True,
                    tiny_weights=True,
                    options=api.COMPRESSAI_OPTIONS,
                )
            register(
                "wrong-sizes",
                api.compressai_factory("mbt2018", tiny_sizes=(8,)),
                description="x",
                tiny=True,
                options=api.COMPRESSAI_OPTIONS,
            )

    assert bare_host.register(Plugin, "p", "1.0")
    assert sorted(api.COMPRESSAI_OPTIONS) == ["quality", "random_init", "tiny", "weights"]
    codecs = bare_host.components("codec")
    attention = codecs.get("cheng2020-attn").build(tiny=True)
    assert (type(attention.model).__name__, attention.latent_channels) == ("Cheng2020Attention", 8)
    assert codecs.get("mbt2018-mean").build(tiny=True).name == "mbt2018-mean-tiny"
    with pytest.raises(api.NeckkitError) as caught:
        codecs.get("bmshj2018-factorized").build(tiny=True)
    assert str(caught.value) == (
        "unknown CompressAI zoo model 'bmshj2018-factorized' for neckkit's adapter; choose one of "
        "bmshj2018-hyperprior, mbt2018-mean, mbt2018, cheng2020-anchor, cheng2020-attn"
    )
    with pytest.raises(api.NeckkitError, match=r"^mbt2018's tiny_sizes are \(N, M\), got \(8,\)$"):
        codecs.get("wrong-sizes").build(tiny=True)


def test_byte_level_tokenizer_round_trips_any_text_offline() -> None:
    tokenizer = api.byte_level_tokenizer(("<unk>", "<s>", "</s>", "<pad>"), bos="<s>")
    ids = tokenizer("héllo <image>")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id == 1  # the family's special ids come first
    assert len(ids) == 1 + len("héllo ".encode()) + 1  # one token per byte, <image> never split
    assert tokenizer.convert_ids_to_tokens(ids[-1]) == "<image>" and ids[-1] == 4 + 256
    assert tokenizer.decode(ids, skip_special_tokens=True) == "héllo "
    assert (tokenizer.pad_token_id, tokenizer.padding_side) == (3, "left")
    with pytest.raises(ValueError, match="bos, eos, pad and unk must be among the special tokens"):
        api.byte_level_tokenizer(("<s>", "</s>"), bos="<s>")


WORDING = api.Wording(
    name="toy weights",
    hub_id="owner/toy",
    folder="holds config.json",
    folder_hint="Pass a folder holding config.json",
    flag="--codec-weights",
    fallback="--tiny",
    patterns=("*.json",),
)


def test_weights_source_tells_a_folder_from_a_hub_id_with_one_line_errors(tmp_path: Path, hub_cache: Path) -> None:
    assert api.hub_offline()
    assert api.WeightsSource(str(tmp_path), WORDING).folder == tmp_path
    with pytest.raises(api.NeckkitError, match="toy weights folder './nowhere/at/all' does not exist"):
        api.WeightsSource("./nowhere/at/all", WORDING)
    with pytest.raises(api.NeckkitError) as caught:
        api.WeightsSource("owner/absent", WORDING, fetch=["*.json"])
    message = str(caught.value)
    assert message.startswith(
        "cannot load toy weights 'owner/absent' from the Hugging Face cache (HF_HUB_OFFLINE is set)"
    )
    assert 'hf download owner/absent --include "*.json"' in message and "\n" not in message


def test_read_submodule_tensors_opens_only_the_shards_holding_them(tmp_path: Path) -> None:
    save_file(
        {"vision_model.proj.weight": torch.ones(2, 2), "vision_model.proj.bias": torch.zeros(2)},
        tmp_path / "model-00001-of-00002.safetensors",
    )
    save_file({"language_model.head.weight": torch.ones(3)}, tmp_path / "model-00002-of-00002.safetensors")
    weight_map = {
        "vision_model.proj.weight": "model-00001-of-00002.safetensors",
        "vision_model.proj.bias": "model-00001-of-00002.safetensors",
        "language_model.head.weight": "model-00002-of-00002.safetensors",
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "model-00002-of-00002.safetensors").unlink()  # never opened: it holds no vision tensor
    source = api.WeightsSource(str(tmp_path), WORDING)
    state = api.read_submodule_tensors(source, "vision_model.")
    assert sorted(state) == ["proj.bias", "proj.weight"] and torch.equal(state["proj.weight"], torch.ones(2, 2))
    with pytest.raises(api.NeckkitError) as caught:
        api.read_submodule_tensors(source, "language_model.")
    assert str(caught.value) == (
        f"cannot load toy weights the local folder '{tmp_path}': model-00002-of-00002.safetensors not found. "
        "Pass a folder holding config.json"
    )
    with pytest.raises(api.NeckkitError) as caught:
        api.read_submodule_tensors(source, "qformer.")
    assert str(caught.value) == f"toy weights the local folder '{tmp_path}' hold no tensors named qformer.*"


def test_preprocessing_helpers_resize_crop_and_normalise() -> None:
    x01 = torch.rand(2, 3, 40, 60)
    assert api.resize_center_crop(x01, 32, 24).shape == (2, 3, 24, 24)
    pixels = api.resize_center_crop_normalize(x01, 32, api.OPENAI_MEAN, api.OPENAI_STD)
    assert pixels.shape == (2, 3, 32, 32)
    assert api.resize_square_normalize(x01, 16, api.OPENAI_MEAN, api.OPENAI_STD).shape == (2, 3, 16, 16)
    squashed = api.resize_square(x01, 16)  # the whole image, aspect ratio not kept, still in [0, 1]
    assert squashed.shape == (2, 3, 16, 16) and 0 <= float(squashed.min()) and float(squashed.max()) <= 1
    torch.testing.assert_close(api.normalize(squashed, api.OPENAI_MEAN, api.OPENAI_STD),
                               api.resize_square_normalize(x01, 16, api.OPENAI_MEAN, api.OPENAI_STD), rtol=0, atol=0)
    grey = api.normalize(torch.full((1, 3, 2, 2), 0.5), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert torch.equal(grey, torch.zeros(1, 3, 2, 2))
    padded, padding = api.pad_to_multiple(x01, 16)
    assert padded.shape == (2, 3, 48, 64)
    assert (padding.top + padding.bottom, padding.left + padding.right) == (8, 4)


def test_sample_images_are_the_bundled_photos() -> None:
    photos = api.sample_images()
    assert [photo.name for photo in photos] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    assert all(photo.parent == api.SAMPLE_DIR for photo in photos)
    assert (api.SAMPLE_DIR / "LICENSES.md").is_file()


# --- the built-ins through the core: it seeds, the factories do not ----------------------------


def test_tiny_builds_are_deterministic_at_the_default_seed_and_follow_seed(host: PluginHost) -> None:
    for kind, name in (("codec", "elic"), ("codec", "tic"), ("encoder", "clip-l")):
        component = host.components(kind).get(name)
        first, again = component.build(tiny=True), component.build(tiny=True)
        assert api.fingerprint(first) == api.fingerprint(again), name
        assert api.fingerprint(component.build(tiny=True, seed=1)) != api.fingerprint(first), name


def test_tiny_llava_vision_equals_the_tiny_encoder_at_any_seed(host: PluginHost) -> None:
    for seed in (0, 2):
        encoder = host.components("encoder").get("clip-l-336").build(tiny=True, seed=seed)
        mllm = host.components("mllm").get("llava-1.5").build(tiny=True, seed=seed)
        assert api.fingerprint(mllm.visual_encoder.vision_model) == api.fingerprint(encoder.model.vision_model)


# --- testing a plugin: a host with the built-ins, seeded by the host ----------------------------


def test_host_for_tests_has_the_builtins_and_the_plugins_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import misspelled_hook

    import neckkit_toy.plugin

    monkeypatch.setenv("NECKKIT_DISABLE_PLUGINS", "neckkit.plugins.codecs")
    monkeypatch.setenv("NECKKIT_LOAD_PLUGINS", "nothing-installed")
    host = api.host_for_tests(neckkit_toy.plugin)
    assert {"tic", "elic", "toy-codec"} <= {component.name for component in host.components("codec")}
    assert [plugin.name for plugin in host.plugins() if not plugin.builtin] == ["neckkit_toy.plugin"]
    assert len(PluginHost(env={}).components("codec")) == 0  # a bare host has no built-ins
    assert [
        component.name for component in api.host_for_tests(neckkit_toy.plugin, builtins=False).components("codec")
    ] == ["toy-codec"]
    with pytest.raises(api.PluginError, match="^plugin 'misspelled_hook' failed: PluginValidationError: unknown hook"):
        api.host_for_tests(misspelled_hook)


def test_the_host_seeds_every_build_so_an_outer_seeded_init_changes_nothing() -> None:
    import neckkit_toy.plugin

    component = api.host_for_tests(neckkit_toy.plugin).components("codec").get("toy")
    with api.seeded_init(7):
        outer = component.build(tiny=True)
    default, seven = component.build(tiny=True), component.build(tiny=True, seed=7)
    assert api.fingerprint(outer) == api.fingerprint(default) != api.fingerprint(seven)


# --- the toy template uses the API: weights, random_init, d3 ------------------------------------


def test_toy_codec_factory_needs_a_source_and_loads_its_weights(toy_plugin: PluginHost, tmp_path: Path) -> None:
    component = toy_plugin.components("codec").get("toy")
    with pytest.raises(api.NeckkitError, match="toy-codec has no published weights"):
        component.build()
    trained = component.build(random_init=True, seed=4)
    trained.compress(torch.rand(1, 3, 8, 8))  # builds the coder tables, saved with the weights
    path = tmp_path / "toy.pth"
    torch.save({"state_dict": trained.state_dict()}, path)
    loaded = component.build(weights=str(path))
    assert api.fingerprint(loaded, exclude=api.CODER_TABLES) == api.fingerprint(trained, exclude=api.CODER_TABLES)
    assert loaded.synthesis_modules() == [loaded.g_s]


def test_toy_codec_trains_scenario_d3(runner: CliRunner, toy_plugin: PluginHost, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = invoke(
        runner, toy_plugin, "train", "--codec", "toy", "--encoder", "toy-vit", "--tiny", "--scenario", "d3",
        "--max-steps", "2", "--out", str(run),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = read_meta(resolve_checkpoint(run))
    assert (meta.codec.name, meta.encoder.name, meta.scenario) == ("toy-codec", "toy-vit", "d3")


def test_a_third_party_codec_decodes_untrusted_files_through_the_bounded_decoder(toy_plugin: PluginHost) -> None:
    from neckkit.bitstream.nk_format import NkFile

    codec = toy_plugin.components("codec").get("toy").build(random_init=True, seed=4).eval()
    x = torch.rand(1, 3, 32, 48)
    nk = NkFile.from_payload(
        codec.compress(x), codec="toy-codec", fingerprint="0" * 16, original_size=(32, 48), padding=(0, 0, 0, 0)
    )
    y_hat = api.decode_latent(codec, nk, source="toy.nk")
    assert torch.equal(y_hat, codec.analyze(x).y_hat) and y_hat.shape == (1, 8, 8, 12)
    assert isinstance(codec.entropy_bottleneck.entropy_coder._decoder, api.BoundedRansDecoder)
    with pytest.raises(api.NeckkitError, match=r"^toy.nk: shape \[8, 13\] is not the \[8, 12\]"):
        api.decode_latent(codec, dataclasses.replace(nk, shape=(8, 13)), source="toy.nk")
    with pytest.raises(api.NeckkitError, match=r"^toy.nk: original_size \[32, 48\] implies 768 latent values"):
        api.decode_latent(codec, dataclasses.replace(nk, streams=(nk.streams[0][:5],)), source="toy.nk")
    with pytest.raises(api.NeckkitError, match="^toy.nk: entropy decoding failed: the stream does not start"):
        api.decode_latent(codec, dataclasses.replace(nk, streams=(b"\xff" * len(nk.streams[0]),)), source="toy.nk")


def test_a_variable_rate_codec_codes_inside_at_level() -> None:
    class Levels(api.VariableRateCodec):
        latent_channels, stride, pad_multiple, num_levels, continuous_levels = 1, 1, 1, 4, False
        name = "levels"

        def analyze(self, x):  # noqa: ANN001, ANN202
            return api.Analysis(y_hat=x * self.level, likelihoods={})

        def synthesize(self, y_hat):  # noqa: ANN001, ANN202
            return y_hat

        def compress(self, x, analysis=None):  # noqa: ANN001, ANN202
            return api.LatentPayload(strings=[[bytes([int(self.level)])]], shape=())

        def decompress_latent(self, payload):  # noqa: ANN001, ANN202
            return torch.zeros(1)

    codec = Levels()
    assert codec.level == codec.default_level == 3
    with api.at_level(codec, 1) as level:
        assert level == 1 and codec.compress(torch.zeros(1)).strings == [[b"\x01"]]
        with api.at_level(codec, 2.0) as inner:
            assert inner == 2 and isinstance(inner, int) and codec.level == 2
        assert codec.level == 1
    assert codec.level == 3
    with pytest.raises(api.NeckkitError, match=r"^levels codes at its trained levels 0\.\.3 only; 1\.5 is between"):
        with api.at_level(codec, 1.5):
            pass
    with pytest.raises(api.NeckkitError, match=r"^levels has rate levels 0\.\.3; level 4 is outside them$"):
        with api.at_level(codec, 4):
            pass
    fixed = type("Fixed", (api.Codec,), {name: getattr(Levels, name) for name in (
        "latent_channels", "stride", "pad_multiple", "name", "synthesize", "compress", "decompress_latent")}
        | {"analyze": lambda self, x: api.Analysis(y_hat=x, likelihoods={})})()
    with api.at_level(fixed, None) as level:
        assert level is None
    with pytest.raises(api.NeckkitError, match=r"^levels is a fixed-rate codec: it has no rate levels \(got level 2\)$"):
        with api.at_level(fixed, 2):
            pass
