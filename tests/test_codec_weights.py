"""Reading foreign codec checkpoints: safe unpickling, wrappers, legacy names, entropy tables."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from compressai.models import ScaleHyperprior

from neckkit import NeckkitError
from neckkit.loading.codec_weights import extract_state_dict, load_codec_state, read_checkpoint


class Payload:
    """Unpickling this needs arbitrary code: weights_only must refuse it."""

    def __reduce__(self):
        return (print, ("this must never run",))


def _model() -> ScaleHyperprior:
    torch.manual_seed(0)
    return ScaleHyperprior(N=8, M=12)


def test_wrapped_and_prefixed_state_dict_loads_and_codes(tmp_path: Path) -> None:
    source = _model()
    state = {f"module.{key}": value for key, value in source.state_dict().items() if "_quantized_cdf" not in key}
    path = tmp_path / "codec.pth.tar"
    torch.save({"epoch": 3, "state_dict": state}, path)
    target = ScaleHyperprior(N=8, M=12)
    load_codec_state(target, extract_state_dict(read_checkpoint(path)), str(path))
    for key, value in source.state_dict().items():
        if not key.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table")):
            assert torch.equal(target.state_dict()[key], value), key
    x = torch.rand(1, 3, 64, 64)
    decoded = target.decompress(**target.compress(x))  # no "Run update() first"
    assert decoded["x_hat"].shape == x.shape


def test_legacy_entropy_bottleneck_names_are_renamed(tmp_path: Path) -> None:
    source = _model()
    state = {}
    for key, value in source.state_dict().items():
        key = key.replace("matrices.", "_matrix").replace("biases.", "_bias").replace("factors.", "_factor")
        state[key] = value
    assert "entropy_bottleneck._matrix0" in state
    target = ScaleHyperprior(N=8, M=12)
    load_codec_state(target, state, "legacy file")
    assert torch.equal(target.entropy_bottleneck.matrices[0], source.entropy_bottleneck.matrices[0])


def test_mismatched_file_names_missing_unexpected_and_wrong_shapes() -> None:
    state = dict(_model().state_dict())
    state.pop("g_a.0.weight")
    state["extra.weight"] = torch.zeros(1)
    state["g_s.0.bias"] = torch.zeros(3)
    with pytest.raises(NeckkitError) as caught:
        load_codec_state(ScaleHyperprior(N=8, M=12), state, "codec.pth")
    message = str(caught.value)
    assert message.startswith("codec.pth does not fit ScaleHyperprior: missing g_a.0.weight; unexpected extra.weight;")
    assert "wrong shape g_s.0.bias [3] (expected [8])" in message and "\n" not in message


def test_recomputed_buffers_are_dropped_from_the_file() -> None:
    state = dict(_model().state_dict())
    state["g_a.0.attn_mask"] = torch.zeros(4, 4)
    load_codec_state(ScaleHyperprior(N=8, M=12), state, "file", recomputed=("attn_mask",))


def test_file_needing_unpickling_is_refused_and_not_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Payload()}, path)
    with pytest.raises(NeckkitError, match=r"refusing to load .*evil.pth: it needs arbitrary unpickling"):
        read_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"garbage", "is not a readable PyTorch weight file"),
        (pickle.dumps({"a": 1}, protocol=5), "is not a readable PyTorch weight file"),
        (b"PK\x03\x04" + b"\x00" * 30, "is not a readable PyTorch weight file"),
    ],
)
def test_missing_or_broken_files_are_one_line(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "w.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(NeckkitError, match=message) as caught:
        read_checkpoint(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("checkpoint", "message"),
    [({}, "holds no state dict"), ({"state_dict": {"a": 3}}, "entry 'a' is a int, not a tensor"), ([1], "holds no state dict")],
)
def test_non_state_dicts_are_refused(checkpoint, message: str) -> None:
    with pytest.raises(NeckkitError, match=message):
        extract_state_dict(checkpoint)


def test_neckkit_codec_state_dict_with_model_prefix_is_unwrapped() -> None:
    state = {"model.g_a.0.weight": torch.zeros(1), "model.h_a.0.bias": torch.ones(1)}
    assert set(extract_state_dict(state)) == {"g_a.0.weight", "h_a.0.bias"}
    mixed = {"model.g_a.0.weight": torch.zeros(1), "g_s.0.bias": torch.ones(1)}
    assert set(extract_state_dict(mixed)) == {"model.g_a.0.weight", "g_s.0.bias"}
