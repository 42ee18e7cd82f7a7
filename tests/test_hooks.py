"""One test per hook (tests/test_meta.py checks that every hook has one here)."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from conftest import invoke
from neckkit import MLLM, Codec, VisualEncoder
from neckkit.host.manager import PluginHost


def test_hook_register_codecs(toy_plugin: PluginHost) -> None:
    component = toy_plugin.components("codec").get("toy")  # by alias
    codec = component.build(tiny=True, channels=4)
    assert isinstance(codec, Codec)
    assert (component.name, codec.latent_channels, codec.stride) == ("toy-codec", 4, 4)
    assert set(component.info.options) == {"channels", "random_init", "weights"}
    assert component.info.scenarios == ("d1", "d2", "d3")


def test_hook_register_encoders(toy_plugin: PluginHost) -> None:
    encoder = toy_plugin.components("encoder").get("toy-vit").build(tiny=True)
    assert isinstance(encoder, VisualEncoder)
    assert encoder.embed(encoder.preprocess(torch.rand(1, 3, 8, 8))).shape == (1, encoder.grid**2 + 1, encoder.width)


def test_hook_register_mllms(toy_plugin: PluginHost) -> None:
    mllm = toy_plugin.components("mllm").get("toy-mllm").build(tiny=True)
    assert isinstance(mllm, MLLM)
    assert mllm.encoder in toy_plugin.components("encoder")  # it names a registered encoder


def test_hook_register_commands(runner: CliRunner, toy_plugin: PluginHost) -> None:
    result = invoke(runner, toy_plugin, "toy-hello", "neck")
    assert result.exit_code == 0
    assert result.stdout == "hello neck from neckkit-toy\n"
    assert "toy-hello" in invoke(runner, toy_plugin, "--help").stdout
