"""The transform-neck: the paper's exact shape, the released key layout, any latent grid."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neckkit import NeckkitError
from neckkit.config import PAPER_FIGURES, NeckConfig
from neckkit.neck.transform import TransformNeck
from neckkit_toy import ToyCodec, ToyViT

FIXTURE = Path(__file__).parent / "fixtures" / "bridging_neck_state_dict.tsv"


def _reference_layout() -> dict[str, tuple[int, ...]]:
    rows = FIXTURE.read_text().strip().splitlines()[1:]
    return {key: tuple(int(v) for v in shape.strip("[]").split(", ")) for key, shape in (r.split("\t") for r in rows)}


@pytest.fixture(scope="module")
def paper_neck() -> TransformNeck:
    torch.manual_seed(0)
    return TransformNeck(latent_channels=320, width=1024, grid=16).eval()  # ELIC -> CLIP ViT-L/14


def test_paper_neck_has_exactly_13_191_168_parameters(paper_neck: TransformNeck) -> None:
    assert sum(p.numel() for p in paper_neck.parameters()) == PAPER_FIGURES.neck_params == 13_191_168


def test_parameter_names_and_shapes_are_the_released_necks(paper_neck: TransformNeck) -> None:
    ours = {key: tuple(value.shape) for key, value in paper_neck.state_dict().items()}
    assert ours == _reference_layout()


def test_a_released_layout_state_dict_loads_strictly(paper_neck: TransformNeck) -> None:
    state = {key: torch.randn(shape) for key, shape in _reference_layout().items()}
    neck = TransformNeck(320, 1024, 16)
    neck.load_state_dict(state, strict=True)
    assert torch.equal(neck.trans_latent_dim.weight, state["trans_latent_dim.weight"])


def test_forward_is_linear_class_token_positions_layernorm_blocks(paper_neck: TransformNeck) -> None:
    y_hat = torch.randn(2, 320, 16, 16)
    with torch.no_grad():
        tokens = paper_neck.trans_latent_dim(y_hat.flatten(2).transpose(1, 2))  # [2, 256, 1024]
        tokens = torch.cat([paper_neck.class_embedding.expand(2, 1, -1), tokens], dim=1)
        tokens = paper_neck.ln_pre(tokens + paper_neck.positional_embedding)
        expected = paper_neck.transformer.resblocks[0](tokens)
        out = paper_neck(y_hat)
    assert out.shape == (2, 257, 1024)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(("height", "width"), [(20, 12), (8, 8), (33, 47)])
def test_other_latent_grids_are_resampled_to_the_encoder_grid(paper_neck: TransformNeck, height: int, width: int) -> None:
    with torch.no_grad():
        out = paper_neck(torch.randn(1, 320, height, width))
    assert out.shape == (1, 257, 1024) and torch.isfinite(out).all()


def test_neck_tokens_enter_the_encoder_and_train_only_the_neck() -> None:
    codec, encoder = ToyCodec(tiny=True), ToyViT(tiny=True)
    neck = TransformNeck.for_pair(codec, encoder, NeckConfig(num_heads=2))
    assert (neck.width, neck.grid, neck.num_tokens) == (encoder.width, encoder.grid, encoder.grid**2 + 1)
    encoder.requires_grad_(False)
    y_hat = torch.randn(2, codec.latent_channels, 8, 8)  # another grid than the encoder's 4 x 4
    embedding = encoder.encode_from(neck(y_hat), encoder.entry_layer)
    assert embedding.shape == (2, encoder.embed_dim)
    embedding.sum().backward()
    assert neck.trans_latent_dim.weight.grad is not None and neck.trans_latent_dim.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.parameters())


def test_encoder_without_class_token_gets_no_class_token() -> None:
    neck = TransformNeck(8, 16, 4, class_token=False, config=NeckConfig(num_heads=2))
    assert neck.class_embedding is None and neck.num_tokens == 16
    assert neck(torch.randn(1, 8, 4, 4)).shape == (1, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"config": NeckConfig(num_heads=3)}, "neck width 16 is not divisible by num_heads=3"),
        ({"config": NeckConfig(num_heads=2, activation="swish")}, "neck activation must be one of quick_gelu, gelu"),
    ],
)
def test_invalid_shapes_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(NeckkitError, match=message):
        TransformNeck(8, 16, 4, **kwargs)


def test_wrong_latent_channels_are_refused() -> None:
    neck = TransformNeck(8, 16, 4, config=NeckConfig(num_heads=2))
    with pytest.raises(NeckkitError, match=r"expects a latent \[B, 8, h, w\], got shape \[1, 9, 4, 4\]"):
        neck(torch.randn(1, 9, 4, 4))



def test_inference_runs_fused_attention_with_the_same_result_and_restores_the_switch() -> None:
    """Without grad on the CPU the neck skips MultiheadAttention's bmm fast path; the tokens agree."""
    from neckkit.neck.transform import cpu_fused_attention

    torch.manual_seed(0)
    neck = TransformNeck(8, 32, 6, config=NeckConfig(num_heads=2, num_blocks=2)).eval()
    entering: list[torch.Tensor] = []
    neck.transformer.register_forward_pre_hook(lambda _module, args: entering.append(args[0]))
    with torch.no_grad():
        fused = neck(torch.randn(4, 8, 6, 6))
        assert torch.backends.mha.get_fastpath_enabled()  # restored on the way out
        native = neck.transformer._blocks(entering[0])  # the switch on: torch's native fast path
        with cpu_fused_attention(), cpu_fused_attention():  # nested users share the switch
            assert not torch.backends.mha.get_fastpath_enabled()
        assert torch.backends.mha.get_fastpath_enabled()
    torch.testing.assert_close(fused, native, rtol=0, atol=2e-6)
