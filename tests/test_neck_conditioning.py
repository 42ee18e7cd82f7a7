"""The rate-conditioned neck: equal to the unconditioned neck at init, continuous in the level, saved and loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import neckkit.neck.checkpoint as ck
from neckkit import NeckkitError
from neckkit.config import PAPER_FIGURES, NeckConfig
from neckkit.loading.weights import seeded_init
from neckkit.neck.conditioning import is_conditioning_key
from neckkit.neck.transform import TransformNeck

SMALL = dict(num_heads=2, num_blocks=2)
CONDITIONED = ("adaln", "film")


def _neck(conditioning: str = "none", seed: int = 0, **config) -> TransformNeck:
    with seeded_init(seed):
        return TransformNeck(8, 32, 4, config=NeckConfig(**SMALL, conditioning=conditioning, **config))


def _perturbed(conditioning: str) -> TransformNeck:
    neck = _neck(conditioning).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in neck.transformer.modulation:
            module.linear.weight.copy_(0.2 * torch.randn(module.linear.weight.shape, generator=generator))
    return neck


@pytest.mark.parametrize("conditioning", CONDITIONED)
@pytest.mark.parametrize("grad", [False, True], ids=["no-grad fast path", "grad"])
def test_a_conditioned_neck_equals_the_unconditioned_neck_bitwise_at_init(conditioning: str, grad: bool) -> None:
    plain, conditioned = _neck().eval(), _neck(conditioning).eval()
    shared = plain.state_dict()
    assert all(torch.equal(conditioned.state_dict()[key], value) for key, value in shared.items())
    y_hat = torch.randn(3, 8, 4, 4)
    with torch.set_grad_enabled(grad):
        expected = plain(y_hat)
        for level in ([0.0, 1.0, 3.0], [2.5, 2.5, 2.5]):
            assert torch.equal(conditioned(y_hat, torch.tensor(level)), expected)


@pytest.mark.parametrize("conditioning", CONDITIONED)
def test_the_paper_sized_conditioned_neck_equals_the_paper_neck_bitwise_at_init(conditioning: str) -> None:
    with seeded_init(0):
        plain = TransformNeck(320, 1024, 16).eval()  # ELIC -> CLIP ViT-L/14
    with seeded_init(0):
        conditioned = TransformNeck(320, 1024, 16, config=NeckConfig(conditioning=conditioning)).eval()
    y_hat = torch.randn(1, 320, 16, 16)
    with torch.no_grad():
        assert torch.equal(conditioned(y_hat, torch.tensor([2.0])), plain(y_hat))


@pytest.mark.parametrize("conditioning", CONDITIONED)
def test_unconditioned_parameter_names_stay_and_conditioning_adds_only_its_own_keys(conditioning: str) -> None:
    plain, conditioned = set(_neck().state_dict()), set(_neck(conditioning).state_dict())
    assert plain < conditioned
    extra = conditioned - plain
    assert all(is_conditioning_key(key) for key in extra) and not any(is_conditioning_key(key) for key in plain)
    assert {key.rsplit(".", 2)[0] for key in extra} == {
        "level_embedding", "transformer.modulation.0", "transformer.modulation.1"}
    _neck(conditioning).load_state_dict(_neck().state_dict(), strict=False)  # an unconditioned checkpoint starts it


@pytest.mark.parametrize("conditioning", CONDITIONED)
def test_once_trained_the_output_depends_on_the_level_continuously(conditioning: str) -> None:
    neck = _perturbed(conditioning)
    y_hat = torch.randn(1, 8, 4, 4).expand(3, -1, -1, -1)  # one latent at three levels
    with torch.no_grad():
        out = neck(y_hat, torch.tensor([2.0, 2.5, 3.0]))
        near = neck(y_hat[:2], torch.tensor([2.0, 2.001]))
    at_2, at_2_5, at_3 = out
    assert not torch.allclose(at_2, at_2_5, atol=1e-4) and not torch.allclose(at_2_5, at_3, atol=1e-4)
    assert not torch.allclose(at_2, at_3, atol=1e-4)
    step = (at_2 - at_2_5).abs().max()
    assert (near[0] - near[1]).abs().max() < step / 50  # a small change of level moves the output a little
    with torch.no_grad():
        one_number = neck(y_hat[:1], 2.5)
    torch.testing.assert_close(one_number[0], at_2_5)


def test_a_conditioned_neck_refuses_a_missing_level_and_a_wrong_shape_in_one_line() -> None:
    neck = _neck("adaln")
    y_hat = torch.randn(2, 8, 4, 4)
    with pytest.raises(NeckkitError) as missing:
        neck(y_hat)
    assert str(missing.value) == (
        "this neck is rate-conditioned (adaln): pass the rate level of each latent, neck(y_hat, level=[B])")
    with pytest.raises(NeckkitError, match=r"^the neck expects one rate level per latent, \[2\], got shape \[3\]$"):
        neck(y_hat, torch.zeros(3))


def test_an_unconditioned_neck_ignores_the_level() -> None:
    neck = _neck().eval()
    y_hat = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        assert torch.equal(neck(y_hat, torch.tensor([0.0, 3.0])), neck(y_hat))


def test_check_level_refuses_levels_outside_the_trained_range() -> None:
    neck = _neck("film", levels=(1, 2, 3))
    for level in (1, 2.5, 3):
        neck.check_level(level)
    with pytest.raises(NeckkitError, match=r"^this neck is conditioned on rate levels 1\.\.3 \(film\); level 0 is outside them$"):
        neck.check_level(0)
    _neck(levels=(1, 2)).check_level(7)  # an unconditioned neck reads any level


def test_parameters_each_conditioning_adds_at_the_paper_size() -> None:
    width, latent, features = 1024, 320, 256  # ELIC latent -> CLIP ViT-L/14, 1 block, DiT's 256 features
    embedding = (features * width + width) + (width * width + width)  # Linear(256 -> W), SiLU, Linear(W -> W)
    adaln = width * 6 * width + 6 * width  # SiLU, Linear(W -> 6W): shift, scale, gate of both sub-layers
    film = width * 2 * width + 2 * width  # SiLU, Linear(W -> 2W): scale, shift of the block output
    assert (embedding, adaln, film) == (1_312_768, 6_297_600, 2_099_200)
    counts = {}
    for conditioning in ("none", "adaln", "film"):
        with seeded_init(0):
            neck = TransformNeck(latent, width, 16, config=NeckConfig(conditioning=conditioning))
        counts[conditioning] = sum(p.numel() for p in neck.parameters())
    assert counts["none"] == PAPER_FIGURES.neck_params == 13_191_168
    assert counts["adaln"] - counts["none"] == embedding + adaln == 7_610_368
    assert counts["film"] - counts["none"] == embedding + film == 3_411_968


def _meta(neck: TransformNeck) -> ck.CheckpointMeta:
    return ck.CheckpointMeta(
        codec=ck.ComponentRef(name="mbt2018-mean-vbr", options={"tiny": True}),
        encoder=ck.ComponentRef(name="clip-l", options={"tiny": True}),
        entry_layer=2,
        neck=ck.NeckShape.of_neck(neck),
    )


@pytest.mark.parametrize("conditioning", CONDITIONED)
def test_a_checkpoint_round_trip_keeps_the_conditioning_and_the_levels(tmp_path: Path, conditioning: str) -> None:
    neck = _perturbed(conditioning)
    neck.config = neck.config.model_copy(update={"levels": (0.0, 1.0, 2.5)})
    ck.save_checkpoint(tmp_path / "ckpt", _meta(neck), neck.state_dict())
    saved = json.loads((tmp_path / "ckpt" / "meta.json").read_text())["neck"]["config"]
    assert (saved["conditioning"], saved["levels"]) == (conditioning, [0.0, 1.0, 2.5])
    loaded = ck.build_neck(ck.load_checkpoint(tmp_path / "ckpt")).eval()
    assert (loaded.conditioning, loaded.levels) == (conditioning, (0.0, 1.0, 2.5))
    y_hat, level = torch.randn(2, 8, 4, 4), torch.tensor([0.0, 2.5])
    with torch.no_grad():
        assert torch.equal(loaded(y_hat, level), neck(y_hat, level))


def test_an_old_checkpoint_without_the_fields_loads_as_unconditioned(tmp_path: Path) -> None:
    neck = _neck().eval()
    ck.save_checkpoint(tmp_path / "ckpt", _meta(neck), neck.state_dict())
    meta_path = tmp_path / "ckpt" / "meta.json"
    written = json.loads(meta_path.read_text())["neck"]["config"]
    assert sorted(written) == ["activation", "entry_layer", "mlp_ratio", "num_blocks", "num_heads"]  # as before
    loaded = ck.build_neck(ck.load_checkpoint(tmp_path / "ckpt"))
    assert (loaded.conditioning, loaded.levels) == ("none", None)
    assert not any(is_conditioning_key(key) for key in loaded.state_dict())


def test_a_conditioned_state_in_an_unconditioned_meta_is_refused_in_one_line(tmp_path: Path) -> None:
    ck.save_checkpoint(tmp_path / "ckpt", _meta(_neck()), _neck("adaln").state_dict())
    with pytest.raises(NeckkitError, match=r"does not fit the neck its meta\.json describes: unexpected level_embedding"):
        ck.build_neck(ck.load_checkpoint(tmp_path / "ckpt"))
