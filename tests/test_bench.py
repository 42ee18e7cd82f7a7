"""``neckkit bench`` and the exact MAC counter behind it (neckkit.evaluation.complexity).

The counter is checked against hand counts on small modules, against torch's FlopCounterMode where
that counter sees every product (math attention backend, gradients on), and on the paper's real-size
neck and CLIP front built on the meta device (shapes only: no memory, no compute).
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from conftest import invoke
from neckkit.config.paper import PAPER_FIGURES, NeckConfig
from neckkit.evaluation.complexity import MacCounter, count_parameters, kmac_per_pixel, measure
from neckkit.host.manager import PluginHost
from neckkit.neck.transform import TransformNeck
from neckkit.plugins.codecs.compressai_codecs import TINY_ELIC

JSON_KEYS = {
    "neck_params", "neck_kmac_per_pixel", "replaced_params", "replaced_kmac_per_pixel", "front_latency_ratio",
    "end_to_end_latency_ratio", "decode_seconds", "machine_front_seconds", "reconstruction_front_seconds",
    "machine_end_to_end_seconds", "reconstruction_end_to_end_seconds", "codec", "encoder", "size", "entry_layer",
    "device", "threads", "torch", "peak_rss_mib", "synthesis_params", "encoder_front_params",
}


def macs_of(function, *args) -> int:
    with torch.no_grad():
        return measure(function, *args)[1].macs


def flop_counter_macs(function, *args) -> int:
    """torch's FlopCounterMode (FLOPs = 2 MACs) with every product visible to it."""
    counter = FlopCounterMode(display=False)
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        function(*args)
    return counter.get_total_flops() // 2


# -- hand counts ------------------------------------------------------------------------------------

def test_linear_counts_rows_times_in_times_out_and_its_parameters() -> None:
    layer = nn.Linear(7, 5)
    _, count = measure(layer, torch.randn(2, 3, 7))
    assert count.macs == 2 * 3 * 7 * 5
    assert count.parameters_used == 7 * 5 + 5 == count_parameters(layer)


def test_convolutions_count_kernel_taps_per_output_or_per_input_when_transposed() -> None:
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)  # 8x8 -> 4x4
    assert macs_of(conv, torch.randn(1, 3, 8, 8)) == (4 * 4 * 4) * 3 * 3 * 3
    grouped = nn.Conv2d(4, 6, 3, padding=1, groups=2)  # 5x5 -> 5x5, 2 input channels per group
    assert macs_of(grouped, torch.randn(2, 4, 5, 5)) == 2 * (6 * 5 * 5) * 2 * 3 * 3
    deconv = nn.ConvTranspose2d(4, 3, 5, stride=2, padding=2, output_padding=1)  # 4x4 -> 8x8
    assert macs_of(deconv, torch.randn(1, 4, 4, 4)) == (4 * 4 * 4) * 3 * 5 * 5


def test_matrix_products_and_einsum() -> None:
    a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    for product in (torch.matmul, torch.bmm, lambda x, y: x @ y, lambda x, y: torch.einsum("bij,bjk->bik", x, y)):
        assert macs_of(product, a, b) == 2 * 3 * 5 * 4
    assert macs_of(torch.addmm, torch.randn(3, 5), torch.randn(3, 4), torch.randn(4, 5)) == 3 * 5 * 4
    assert macs_of(lambda x: x.matmul(torch.randn(4)), a) == 2 * 3 * 4  # matrix @ vector


def test_fused_attention_counts_qk_and_av_whatever_the_backend() -> None:
    q, k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 7, 8), torch.randn(1, 2, 7, 4)
    expected = 2 * 5 * 7 * 8 + 2 * 5 * 7 * 4  # heads x L x S x (E + Ev)
    assert macs_of(F.scaled_dot_product_attention, q, k, v) == expected
    with sdpa_kernel(SDPBackend.MATH):
        assert macs_of(F.scaled_dot_product_attention, q, k, v) == expected
    square = torch.randn(1, 4, 9, 16)  # equal head sizes: the fused CPU kernel
    assert macs_of(F.scaled_dot_product_attention, square, square, square) == 4 * 9 * 9 * (16 + 16)


@pytest.mark.parametrize("grad", [False, True], ids=["inference-fast-path", "with-grad"])
def test_multihead_attention_counts_projections_and_attention(grad: bool) -> None:
    attention = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    x = torch.randn(3, 5, 16)
    with torch.set_grad_enabled(grad):
        _, count = measure(lambda: attention(x, x, x, need_weights=False))
    per_item = 5 * 16 * 48 + 2 * 5 * 5 * 16 + 5 * 16 * 16  # qkv, QK^T + AV, out projection
    assert count.macs == 3 * per_item
    assert count.parameters_used == count_parameters(attention)
    cross = nn.MultiheadAttention(16, 2, kdim=6, vdim=10).eval()  # sequence-first, other key/value widths
    query, key, value = torch.randn(5, 3, 16), torch.randn(7, 3, 6), torch.randn(7, 3, 10)
    per_item = 5 * 16 * 16 + 7 * (6 + 10) * 16 + 2 * 5 * 7 * 16 + 5 * 16 * 16
    assert macs_of(lambda: cross(query, key, value)) == 3 * per_item


def test_elementwise_work_is_not_counted() -> None:
    x = torch.randn(2, 8, 16)
    assert macs_of(lambda: F.gelu(F.layer_norm(x, (16,))).softmax(-1) + 1) == 0
    assert kmac_per_pixel(65_536_000, 256, 256) == 1.0


# -- torch's FlopCounterMode ---------------------------------------------------------------------

def test_agrees_with_flop_counter_on_a_neck_when_it_sees_the_math_path() -> None:
    neck = TransformNeck(8, 32, 4, config=NeckConfig(num_heads=2, num_blocks=2)).eval()
    y_hat = torch.randn(2, 8, 4, 4)
    tokens = 2 * (4 * 4 + 1)
    expected = 2 * 16 * 8 * 32 + 2 * (tokens * 32 * 32 * (3 + 1 + 8) + 2 * 17 * 17 * 32 * 2)
    assert macs_of(neck, y_hat) == expected == flop_counter_macs(neck, y_hat)


def test_flop_counter_misses_the_fused_paths_this_counter_sees() -> None:
    """What we found with torch 2.14 on CPU (docs/benchmarks.md): FlopCounterMode counts ATen ops and
    has no formula for ``_native_multi_head_attention`` (nn.MultiheadAttention's inference fast path)
    nor ``_scaled_dot_product_flash_attention_for_cpu``. It never counts more than we do."""
    neck = TransformNeck(8, 32, 4, config=NeckConfig(num_heads=2)).eval()
    y_hat = torch.randn(1, 8, 4, 4)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        neck(y_hat)
    ours = macs_of(neck, y_hat)
    assert counter.get_total_flops() // 2 <= ours


def test_agrees_with_flop_counter_on_tiny_codecs_and_clip() -> None:
    from neckkit.plugins.codecs.compressai_codecs import build_elic
    from neckkit.plugins.codecs.tic import build_tic
    from neckkit.plugins.encoders.clip import build_clip

    for codec in (build_elic(tiny=True), build_tic(tiny=True)):
        y_hat = torch.randn(1, codec.latent_channels, 4, 4)
        macs = macs_of(codec.synthesize, y_hat)
        assert macs > 0 and macs == flop_counter_macs(codec.synthesize, y_hat)
    encoder = build_clip("clip-l", tiny=True)
    pixels = torch.randn(1, 3, encoder.image_size, encoder.image_size)

    def front() -> torch.Tensor:
        return encoder.blocks(encoder.embed(pixels), 0, 2)

    assert macs_of(front) == flop_counter_macs(front)


# -- the paper's sizes, on the meta device ---------------------------------------------------------

def test_paper_neck_is_52_7_kmac_per_pixel_at_256() -> None:
    with torch.device("meta"):
        neck = TransformNeck(320, 1024, 16)  # ELIC's latent channels, CLIP ViT-L/14's width and grid
        y_hat = torch.zeros(1, 320, 16, 16)  # a 256x256 image at stride 16
        _, count = measure(neck, y_hat)
    tokens = 257
    by_hand = 256 * 320 * 1024 + tokens * 1024 * (3 * 1024 + 1024 + 2 * 4096) + 2 * tokens * tokens * 1024
    assert count.macs == by_hand == 3_452_962_816
    assert count_parameters(neck) == PAPER_FIGURES.neck_params
    kmac = kmac_per_pixel(count.macs, 256, 256)
    assert kmac == pytest.approx(52.688, abs=1e-3)
    assert abs(kmac / PAPER_FIGURES.neck_kmac_per_pixel - 1) < 0.01


def test_replaced_parts_of_elic_and_clip_l_by_hand() -> None:
    from compressai.models import Elic2022Chandelier
    from transformers import CLIPVisionModel

    from neckkit.plugins.encoders.clip import HFClipEncoder, clip_config

    with torch.device("meta"):
        encoder = HFClipEncoder(CLIPVisionModel(clip_config(224, tiny=False).vision_config))
        _, front = measure(lambda: encoder.blocks(encoder.embed(torch.zeros(1, 3, 224, 224)), 0, 2))
        elic = Elic2022Chandelier(N=192, M=320, groups=[16, 16, 32, 64, 192])
        _, synthesis = measure(elic.g_s, torch.zeros(1, 320, 16, 16))
    block = 257 * 1024 * (3 * 1024 + 1024 + 2 * 4096) + 2 * 257 * 257 * 1024
    assert front.macs == 256 * 1024 * 3 * 14 * 14 + 2 * block  # patch embedding + 2 blocks
    # patch embedding (no bias), class token, positions, ln_pre, two blocks
    assert front.parameters_used == 3 * 14 * 14 * 1024 + 1024 + 257 * 1024 + 2048 + 2 * 12_596_224
    assert count_parameters(elic.g_s) == synthesis.parameters_used == 7_337_475  # the paper's "decoder 7.34 M"
    assert kmac_per_pixel(synthesis.macs, 256, 256) == pytest.approx(254.968, abs=1e-3)


# -- the command -----------------------------------------------------------------------------------

def test_bench_json_on_tiny_models(runner: CliRunner, host: PluginHost) -> None:
    result = invoke(runner, host, "bench", "--codec", "elic", "--encoder", "clip-l", "--tiny",
                    "--size", "64", "--repeats", "2", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert JSON_KEYS <= set(report)
    assert (report["codec"], report["encoder"], report["size"], report["entry_layer"]) == ("elic", "clip-l", 64, 2)
    assert report["device"] == "cpu" and report["threads"] == 1 and report["torch"] == torch.__version__
    assert report["neck_params"] == count_parameters(TransformNeck(TINY_ELIC.M, 32, 16))  # tiny CLIP: width 32, grid 16
    assert report["replaced_params"] == report["synthesis_params"] + report["encoder_front_params"]
    assert report["replaced_macs"] > report["neck_macs"] > 0
    assert report["neck_kmac_per_pixel"] == pytest.approx(report["neck_macs"] / 64 / 64 / 1000)
    for key in ("decode_seconds", "machine_front_seconds", "reconstruction_front_seconds",
                "machine_end_to_end_seconds", "reconstruction_end_to_end_seconds"):
        assert 0 < report[key] < 60, key
    assert report["front_latency_ratio"] == pytest.approx(
        report["reconstruction_front_seconds"] / report["machine_front_seconds"]
    )
    assert report["end_to_end_latency_ratio"] > 0 and report["peak_rss_mib"] > 0
    assert report["cuda_peak_mib"] is None and report["payload_bytes"] > 0


def test_bench_table_with_another_entry_layer(runner: CliRunner, host: PluginHost) -> None:
    result = invoke(runner, host, "bench", "--codec", "tic", "--encoder", "clip-l", "--tiny",
                    "--size", "64", "--repeats", "1", "--entry-layer", "1", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "front latency ratio" in result.stdout and "entry layer 1" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--codec", "nope", "--encoder", "clip-l"), "unknown codec 'nope'"),
        (("--codec", "elic", "--encoder", "clip-l", "--entry-layer", "9"), "--entry-layer must be in 0..4"),
    ],
)
def test_bench_errors_are_one_line(runner: CliRunner, host: PluginHost, args: tuple[str, ...], message: str) -> None:
    result = invoke(runner, host, "bench", *args, "--tiny", "--size", "64", "--device", "cpu")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.output


def test_counting_leaves_results_unchanged() -> None:
    layer = nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with MacCounter() as counter:
        inside = layer(x)
    assert counter.macs == 2 * 4 * 4
    assert torch.equal(inside, layer(x))
