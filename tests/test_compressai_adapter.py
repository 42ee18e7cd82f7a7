"""A third-party CompressAI codec in under 30 lines: mbt2018 on the exported adapter (tests/sample_plugins).

mbt2018 is autoregressive (a serial 5x5 context model), the hardest family to get exact: its plugin is
one ``register`` call on ``neckkit.plugin_api.compressai_factory``, yet it decodes bit for bit what
``analyze`` gives, names one-line errors for missing zoo weights, and trains d1 and d3.
"""

from __future__ import annotations

import ast
import urllib.error
import urllib.request
from pathlib import Path

import compressai_mbt2018
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import neckkit.plugin_api as api
from conftest import invoke
from neckkit.host.manager import PluginHost
from neckkit.neck.checkpoint import read_meta, resolve_checkpoint

PLUGIN = Path(compressai_mbt2018.__file__)


@pytest.fixture(scope="module")
def mbt_host() -> PluginHost:
    """The built-ins and the mbt2018 plugin, registered as its entry point would be."""
    return api.host_for_tests(compressai_mbt2018)


def _boosted(codec: api.Codec, gain: float = 20.0) -> api.Codec:
    """Scale g_a's last conv so a tiny random model codes real symbols, not only zeros."""
    conv = [module for module in codec.model.g_a.modules() if isinstance(module, nn.Conv2d)][-1]
    with torch.no_grad():
        conv.weight.mul_(gain)
        conv.bias.mul_(gain)
    return codec


def test_the_plugin_is_under_30_lines_of_plugin_api() -> None:
    source = PLUGIN.read_text()
    assert len(source.splitlines()) < 30
    imports = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert imports == {"neckkit.plugin_api"}


def test_its_codec_is_the_autoregressive_adapter_with_the_zoo_sizes(mbt_host: PluginHost) -> None:
    component = mbt_host.components("codec").get("mbt2018")
    assert (component.info.qualities, component.info.scenarios) == (tuple(range(1, 9)), ("d1", "d2", "d3"))
    codec = component.build(tiny=True)
    assert isinstance(codec, api.CompressAICodec) and type(codec).__name__ == "AutoregressiveCodec"
    assert (codec.name, codec.latent_channels, codec.stride, codec.pad_multiple) == ("mbt2018-tiny", 32, 16, 64)
    assert type(codec.model).__name__ == "JointAutoregressiveHierarchicalPriors"
    assert codec.synthesis_modules() == [codec.model.g_s]


def test_decompress_latent_of_compress_is_analyze_y_hat_bitwise(mbt_host: PluginHost) -> None:
    codec = _boosted(mbt_host.components("codec").get("mbt2018").build(tiny=True))
    x = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        analysis = codec.analyze(x)
        payload = codec.compress(x)
        decoded = codec.decompress_latent(payload)
    assert decoded.shape == analysis.y_hat.shape == (2, 32, 4, 8)
    assert torch.equal(decoded, analysis.y_hat)
    assert (analysis.y_hat.round() != 0).float().mean() > 0.05  # real symbols, not only zeros
    assert codec.compress(x, analysis=analysis).strings == payload.strings  # the analysis' y, the same bytes
    assert {name: tuple(value.shape) for name, value in analysis.likelihoods.items()} == {
        "y": (2, 32, 4, 8),
        "z": (2, 16, 1, 2),
    }
    assert payload.shape == codec.payload_shape(64, 128) == (1, 2)


def test_y_hat_is_differentiable_for_d2_and_d3(mbt_host: PluginHost) -> None:
    codec = mbt_host.components("codec").get("mbt2018").build(tiny=True)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    analysis = codec.analyze(x)
    (analysis.y_hat.sum() + api.estimated_bits(analysis.likelihoods)).backward()
    assert codec.model.g_a[0].weight.grad is not None and codec.model.g_a[0].weight.grad.abs().sum() > 0


def test_a_quality_not_cached_offline_is_one_line(
    mbt_host: PluginHost, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def unreachable(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    for switch in ("HF_HUB_OFFLINE", "NECKKIT_OFFLINE"):  # online, but the network is down
        monkeypatch.delenv(switch, raising=False)
    with pytest.raises(api.NeckkitError) as caught:
        mbt_host.components("codec").get("mbt2018").build(quality=3)
    assert str(caught.value) == (
        "CompressAI weights for mbt2018 quality 3 are not cached and could not be downloaded (network is unreachable): "
        "fetch https://compressai.s3.amazonaws.com/models/v1/mbt2018-3-22901978.pth.tar into "
        f"{tmp_path / 'hub' / 'checkpoints'}/ or pass --codec-weights FILE"
    )


def test_a_weights_file_loads_with_its_sizes_read_from_it(mbt_host: PluginHost, tmp_path: Path) -> None:
    component = mbt_host.components("codec").get("mbt2018")
    trained = component.build(tiny=True, seed=3)
    path = tmp_path / "mbt2018.pth.tar"
    torch.save({"state_dict": trained.model.state_dict()}, path)
    for loaded in (component.build(weights=str(path)), component.build(weights=str(path), tiny=True)):
        assert loaded.latent_channels == 32
        assert api.fingerprint(loaded, exclude=api.CODER_TABLES) == api.fingerprint(trained, exclude=api.CODER_TABLES)


@pytest.mark.parametrize("scenario", ["d1", "d3"])
def test_it_trains(
    scenario: str, mbt_host: PluginHost, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    result = invoke(
        runner, mbt_host, "train", "--codec", "mbt2018", "--encoder", "clip-l", "--tiny", "--scenario", scenario,
        "--max-steps", "2", "--out", str(run),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = read_meta(resolve_checkpoint(run))
    assert (meta.codec.name, meta.encoder.name, meta.scenario, meta.step) == ("mbt2018", "clip-l", scenario, 2)
