"""Variable-rate codecs: CompressAI's three ``*-vbr`` zoo models and QVRF-gained ``elic-vbr`` / ``tic-vbr``.

What every one must keep at every level, and between two (``continuous_levels``): ``analyze(x).y_hat``
is bit for bit ``decompress_latent(compress(x))``; a higher level spends more bytes; weights files
round-trip; a QVRF codec at its anchor level (gain 1) codes exactly as its fixed-rate codec.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from compressai.models import ScaleHyperpriorVbr
from torch import nn

from neckkit.bitstream.decoding import decode_latent
from neckkit.bitstream.images import load_image
from neckkit.bitstream.nk_format import NkFile, decode_nk, encode_nk
from neckkit.config.paper import TicConfig
from neckkit.config.variable_rate import VariableRateConfig
from neckkit.errors import NeckkitError
from neckkit.host.manager import PluginHost
from neckkit.interfaces.codec import Codec, LatentPayload, VariableRateCodec, at_level, estimated_bits
from neckkit.loading.weights import seeded_init
from neckkit.neck.checkpoint import load_codec_weights
from neckkit.plugins.codecs.elic import build_elic
from neckkit.plugins.codecs.level_gains import initial_log_gains
from neckkit.plugins.codecs.qvrf import build_elic_vbr, build_tic_vbr
from neckkit.plugins.codecs.tic import build_tic
from neckkit.plugins.codecs.vbr_zoo import VBR_MODELS, build_compressai_vbr, vbr_checkpoint
from neckkit.samples import sample_images

ZOO_VBR = tuple(VBR_MODELS)
NAMES = (*ZOO_VBR, "elic-vbr", "tic-vbr")
LAMBDAS = VariableRateConfig().lambdas
BOOST = 20.0  # tiny random latents are mostly rounded to zero: scale g_a's last layer up


def _factory(name: str) -> Callable[..., Codec]:
    if name in VBR_MODELS:
        return lambda **options: build_compressai_vbr(name, **options)
    return {"elic-vbr": build_elic_vbr, "tic-vbr": build_tic_vbr}[name]


def _last_analysis_layer(codec: Codec) -> nn.Module:
    g_a = codec.model.g_a
    if isinstance(g_a, nn.Module):
        return [module for module in g_a.modules() if isinstance(module, nn.Conv2d)][-1]
    return codec.model.g_a6  # TIC: the conv to M channels (g_a7 is a Swin stage)


def _boost(codec: Codec) -> Codec:
    layer = _last_analysis_layer(codec)
    with torch.no_grad():
        layer.weight.mul_(BOOST)
        layer.bias.mul_(BOOST)
    return codec


def _tiny(name: str, seed: int = 0) -> VariableRateCodec:
    with seeded_init(seed):
        codec = _factory(name)(tiny=True)
    assert isinstance(codec, VariableRateCodec)
    return _boost(codec)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def tiny() -> Callable[[str], VariableRateCodec]:
    built: dict[str, VariableRateCodec] = {}

    def get(name: str) -> VariableRateCodec:
        if name not in built:
            built[name] = _tiny(name)
        return built[name]

    return get


def _image(codec: Codec, seed: int = 1) -> torch.Tensor:
    side = max(64, codec.pad_multiple)  # tiny TIC: 128
    return torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _photo(codec: Codec) -> torch.Tensor:
    photo = load_image(sample_images()[0])  # [1, 3, H, W]
    side = max(128, codec.pad_multiple)
    top, left = (photo.shape[2] - side) // 2, (photo.shape[3] - side) // 2
    return photo[:, :, top : top + side, left : left + side].contiguous()


def _coded(codec: VariableRateCodec, x: torch.Tensor, level: float) -> tuple[torch.Tensor, LatentPayload, torch.Tensor]:
    with at_level(codec, level), torch.no_grad():
        analysis = codec.analyze(x)
        payload = codec.compress(x)
        return analysis.y_hat, payload, codec.decompress_latent(payload)


# --- exact y_hat at every level ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_is_exact_at_every_level_and_between_two(tiny: Callable[[str], VariableRateCodec], name: str) -> None:
    codec = tiny(name)
    assert codec.num_levels == len(LAMBDAS) == 8 and codec.continuous_levels
    assert codec.level == codec.default_level == 7
    x = _image(codec)
    latents = {}
    for level in (*range(codec.num_levels), 2.5):
        y_hat, _, decoded = _coded(codec, x, level)
        assert y_hat.shape == (1, codec.latent_channels, x.shape[2] // 16, x.shape[3] // 16)
        assert torch.equal(y_hat, decoded), f"level {level}: max |diff| {(y_hat - decoded).abs().max().item()}"
        latents[level] = y_hat
    assert not torch.equal(latents[0], latents[7]) and not torch.equal(latents[2], latents[2.5])
    assert codec.level == 7  # at_level put the default back


@pytest.mark.parametrize("name", NAMES)
def test_top_level_spends_more_bytes_than_level_zero(tiny: Callable[[str], VariableRateCodec], name: str) -> None:
    codec = tiny(name)
    photo = _photo(codec)
    sizes = {level: _coded(codec, photo, level)[1].num_bytes for level in (0, 2, 2.5, 3, 7)}
    assert sizes[7] > sizes[0], sizes
    assert list(sizes.values()) == sorted(sizes.values()), sizes


@pytest.mark.parametrize("name", NAMES)
def test_gain_grows_with_the_level_and_interpolates_geometrically(
    tiny: Callable[[str], VariableRateCodec], name: str
) -> None:
    codec = tiny(name)
    gains = [codec.gain(level).item() for level in range(codec.num_levels)]  # type: ignore[attr-defined]
    assert gains == sorted(gains) and len(set(gains)) == len(gains)
    between = codec.gain(2.5).item()  # type: ignore[attr-defined]
    assert between == pytest.approx(math.sqrt(gains[2] * gains[3]), rel=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_training_mode_keeps_exact_y_hat_and_gradients(tiny: Callable[[str], VariableRateCodec], name: str) -> None:
    codec = tiny(name)
    x = _image(codec, seed=3)
    codec.train()
    try:
        with at_level(codec, 1.5):
            analysis = codec.analyze(x)
            (analysis.y_hat.square().mean() + estimated_bits(analysis.likelihoods)).backward()
            with torch.no_grad():
                decoded = codec.decompress_latent(codec.compress(x))
    finally:
        codec.eval()
    assert torch.equal(analysis.y_hat, decoded)
    assert set(analysis.likelihoods) == {"y", "z"}
    layer = _last_analysis_layer(codec)
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    if name in ("elic-vbr", "tic-vbr"):
        gains = codec.model.log_gains
        assert gains.grad is not None and gains.grad[1:3].abs().sum() > 0 and gains.grad[4:].abs().sum() == 0
    codec.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", NAMES)
def test_nk_file_decodes_at_its_recorded_level(tiny: Callable[[str], VariableRateCodec], name: str) -> None:
    """The core decoder (plausibility check first, then ``at_level(codec, nk.level)``) gives analyze's y_hat."""
    codec = tiny(name)
    x = _image(codec, seed=8)
    y_hat, payload, _ = _coded(codec, x, 4.5)
    nk = NkFile.from_payload(payload, codec=name, fingerprint="0" * 16, original_size=tuple(x.shape[-2:]),
                             padding=(0, 0, 0, 0), level=4.5)
    nk = decode_nk(encode_nk(nk))
    assert nk.level == 4.5 and torch.equal(decode_latent(codec, nk, source="photo.nk"), y_hat)
    assert codec.level == 7


# --- levels that are refused ----------------------------------------------------------------------------


def test_levels_outside_or_between_are_refused(tiny: Callable[[str], VariableRateCodec], monkeypatch: pytest.MonkeyPatch) -> None:
    codec = tiny("mbt2018-mean-vbr")
    for level in (8, -1, 7.5):
        with pytest.raises(NeckkitError, match=rf"has rate levels 0\.\.7; level {level:g} is outside them"):
            codec.check_level(level)
    with pytest.raises(NeckkitError, match=r"a rate level is a number in 0\.\.7, got nan"):
        codec.check_level(float("nan"))
    assert codec.check_level(2.5) == 2.5 and codec.check_level(3.0) == 3 and isinstance(codec.check_level(3.0), int)
    monkeypatch.setattr(codec, "continuous_levels", False)
    with pytest.raises(NeckkitError, match=r"codes at its trained levels 0\.\.7 only; 2\.5 is between two of them"):
        with at_level(codec, 2.5):
            pass


# --- weights files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_weights_file_round_trip(tiny: Callable[[str], VariableRateCodec], name: str, tmp_path: Path) -> None:
    source = _tiny(name, seed=5)
    with torch.no_grad():  # gains unlike the initial ones, so the file's own must be the ones used
        if name in VBR_MODELS:
            source.model.Gain.mul_(1.1)
        else:
            source.model.log_gains.add_(0.1)
    path = tmp_path / f"{name}.pth"
    torch.save(source.state_dict(), path)
    options = {"weights": str(path)} if name in VBR_MODELS else {"weights": str(path), "tiny": True}
    rebuilt = _factory(name)(**options)
    x = _image(source, seed=2)
    for level in (0, 4.5):
        y_hat, payload, _ = _coded(source, x, level)
        again_y_hat, again, _ = _coded(rebuilt, x, level)
        assert again.strings == payload.strings and torch.equal(again_y_hat, y_hat)


@pytest.mark.parametrize("name", NAMES)
def test_codec_state_restores_through_the_checkpoint_loader(name: str) -> None:
    """A checkpoint's ``codec.state_dict()`` (gains under ``model.``) loads as every other codec's does."""
    source, target = _tiny(name, seed=1), _tiny(name, seed=2)
    assert all(key.startswith("model.") for key in source.state_dict())
    load_codec_weights(target, source.state_dict(), "codec.safetensors")
    x = _image(source, seed=3)
    assert _coded(target, x, 3.5)[1].strings == _coded(source, x, 3.5)[1].strings


def test_compressai_weights_file_sizes_come_from_the_file(tmp_path: Path) -> None:
    source = _tiny("mbt2018-mean-vbr")
    path = tmp_path / "tiny.pth.tar"
    torch.save({"state_dict": source.model.state_dict()}, path)  # CompressAI's layout, no model. prefix
    codec = build_compressai_vbr("mbt2018-mean-vbr", weights=path)
    assert codec.latent_channels == 32 and torch.equal(codec.model.Gain, source.model.Gain)
    with pytest.raises(NeckkitError, match="does not look like a bmshj2018-hyperprior-vbr checkpoint: missing Gain"):
        torch.save({"g_a.0.weight": torch.zeros(16, 3, 5, 5), "g_a.6.weight": torch.zeros(32, 16, 5, 5)}, path)
        build_compressai_vbr("bmshj2018-hyperprior-vbr", weights=path)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch hub cache and no network."""

    def unreachable(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


@pytest.mark.parametrize("online", [False, True])
def test_zoo_weights_not_cached_are_one_line_naming_the_file(
    offline: Path, monkeypatch: pytest.MonkeyPatch, online: bool
) -> None:
    for variable in ("HF_HUB_OFFLINE", "NECKKIT_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    if not online:
        monkeypatch.setenv("NECKKIT_OFFLINE", "1")
    with pytest.raises(NeckkitError) as error:
        build_compressai_vbr("mbt2018-vbr")
    message = str(error.value)
    assert "\n" not in message
    assert "https://compressai.s3.amazonaws.com/models/v1/mbt2018-mse-vbr-f12581a1.pth.tar" in message
    assert str(offline) in message and "--codec-weights" in message
    assert ("NECKKIT_OFFLINE is set" in message) != online and ("network is unreachable" in message) == online
    assert not list(offline.glob("*"))


def test_zoo_weights_load_from_the_hub_cache(offline: Path) -> None:
    url, cached = vbr_checkpoint("bmshj2018-hyperprior-vbr")
    assert cached.parent == offline and url.endswith(cached.name)
    with seeded_init(3):
        source = ScaleHyperpriorVbr(16, 32, vr_entbttlnck=True)
    cached.parent.mkdir(parents=True)
    torch.save(source.state_dict(), cached)
    codec = build_compressai_vbr("bmshj2018-hyperprior-vbr")
    assert torch.equal(codec.model.gayn2zqstep[0].weight, source.gayn2zqstep[0].weight)
    assert codec.latent_channels == 32 and codec.level_names[0] == "lambda=0.0018"


# --- QVRF: the fixed-rate codec at the anchor level ---------------------------------------------------------


def test_initial_gains_are_compressais_vbr_gains() -> None:
    """sqrt(lambda_s / lambda_top): CompressAI's own variable-rate Gain table for the same lambdas."""
    gains = torch.tensor(initial_log_gains(LAMBDAS, len(LAMBDAS) - 1)).exp()
    assert torch.allclose(gains, ScaleHyperpriorVbr(8, 8).Gain.detach(), atol=1e-4)
    assert initial_log_gains(LAMBDAS, 3)[3] == 0.0
    with pytest.raises(NeckkitError, match=r"anchor_level must be one of the levels 0\.\.7, got 8"):
        initial_log_gains(LAMBDAS, 8)


@pytest.mark.parametrize(
    ("name", "fixed_rate", "gained"),
    [("elic", lambda: build_elic(tiny=True), build_elic_vbr), ("tic", lambda: build_tic(tiny=True), build_tic_vbr)],
)
def test_gained_codec_at_the_anchor_codes_like_the_fixed_rate_codec(
    tmp_path: Path, name: str, fixed_rate: Callable[[], Codec], gained: Callable[..., VariableRateCodec]
) -> None:
    with seeded_init(7):
        fixed = _boost(fixed_rate())
    path = tmp_path / f"{name}.pth"
    torch.save(fixed.state_dict(), path)
    x = _image(fixed, seed=4)
    with torch.no_grad():
        expected, payload = fixed.analyze(x).y_hat, fixed.compress(x)
    for anchor in (None, 3):
        options = {} if anchor is None else {"anchor_level": anchor}
        codec = gained(weights=str(path), tiny=True, **options)
        level = 7 if anchor is None else anchor
        gains = codec.gains
        assert gains[level] == 1.0
        assert gains.tolist() == pytest.approx([math.sqrt(value / LAMBDAS[level]) for value in LAMBDAS], rel=1e-6)
        y_hat, again, decoded = _coded(codec, x, level)
        assert torch.equal(y_hat, expected) and torch.equal(decoded, expected) and again.strings == payload.strings
        assert codec.level_names[level] == f"lambda={LAMBDAS[level]:g}"


def test_tic_quality_anchors_at_its_lambdas_level(tmp_path: Path) -> None:
    with seeded_init(2):
        fixed = build_tic(tiny=True)
    path = tmp_path / "base_codec.pth"
    torch.save(fixed.state_dict(), path)
    for quality, level in ((1, 0), (4, 3)):  # TransTIC's lambdas 0.0018 .. 0.013 are QVRF's levels 0 .. 3
        codec = build_tic_vbr(weights=str(path), tiny=True, quality=quality)
        assert codec.gains[level] == 1.0 and codec.level_names[level] == f"lambda={TicConfig().lambdas[quality - 1]:g}"


def test_gained_file_refuses_an_anchor(tiny: Callable[[str], VariableRateCodec], tmp_path: Path) -> None:
    path = tmp_path / "elic-vbr.pth"
    torch.save(tiny("elic-vbr").state_dict(), path)
    with pytest.raises(NeckkitError, match="already holds its gains"):
        build_elic_vbr(weights=str(path), tiny=True, anchor_level=2)


# --- CompressAI compatibility and registration ----------------------------------------------------------


@pytest.mark.parametrize("name", ZOO_VBR)
def test_compressai_decodes_our_streams_to_the_same_image(tiny: Callable[[str], VariableRateCodec], name: str) -> None:
    codec = tiny(name)
    model = codec.model
    if hasattr(model, "context_prediction"):  # CompressAI's decoder reads the weights unmasked
        with torch.no_grad():
            model.context_prediction.weight.mul_(model.context_prediction.mask)
    x = _image(codec, seed=6)
    for level in (1, 2.5):
        with at_level(codec, level), torch.no_grad():
            gain = codec.gain()  # type: ignore[attr-defined]
            ours = codec.synthesize(codec.analyze(x).y_hat)
            payload = codec.compress(x)
            where = {"s": level} if isinstance(level, int) else {"inputscale": gain}
            if getattr(model, "vr_entbttlnck", False):
                model.update(force=True, scale=gain)  # CompressAI's tables for this gain (ours are the same)
            theirs = model.decompress([list(s) for s in payload.strings], payload.shape, **where)["x_hat"]
        assert torch.equal(ours, theirs)


def test_registered_with_descriptions_and_built_by_name() -> None:
    host = PluginHost(env={})
    host.load_builtins()
    codecs = host.components("codec")
    for name in NAMES:
        component = codecs.get(name)
        assert component.info.description and component.info.tiny
        assert "weights" in component.info.options
        codec = component.build(tiny=True)
        assert isinstance(codec, VariableRateCodec) and codec.num_levels == 8 and codec.continuous_levels
    for name in ("elic-vbr", "tic-vbr"):
        with pytest.raises(NeckkitError, match="needs weights: pass weights=<file>"):
            codecs.get(name).build()
