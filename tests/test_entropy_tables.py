"""Issue 14 C1: a codec file's own entropy-coder tables are used as stored, never rebuilt over."""

from __future__ import annotations

from pathlib import Path

import torch
from compressai.models import ScaleHyperprior

from neckkit.interfaces.codec import LatentPayload
from neckkit.loading.codec_weights import entropy_tables
from neckkit.neck.checkpoint import load_codec_weights
from neckkit.plugins.codecs.tic import TINY_CONFIG, TINY_RESOLUTION, TICModel, build_tic
from neckkit.plugins.codecs.zoo import build_zoo


def _perturbed(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """The state with the bottleneck's CDFs moved by a few 1/65536 at the median symbol (still valid)."""
    state = {key: value.clone() for key, value in state.items()}
    cdf = state[f"{prefix}entropy_bottleneck._quantized_cdf"]
    offset = state[f"{prefix}entropy_bottleneck._offset"]
    for channel in range(cdf.shape[0]):
        for index in (int(-offset[channel]), int(-offset[channel]) + 1):  # around the median symbol
            low, high = int(cdf[channel, index - 1]), int(cdf[channel, index + 1])
            value = int(cdf[channel, index])
            moved = value + 7 if value + 7 < high else (low + value) // 2
            assert low < moved < high
            cdf[channel, index] = moved
    return state


def _zoo_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(3)
    source = ScaleHyperprior(16, 32)
    source.update(force=True)
    state = _perturbed(source.state_dict())
    path = tmp_path / "codec.pth.tar"
    torch.save({"state_dict": state}, path)
    return path, state


def _reference(state: dict[str, torch.Tensor]) -> ScaleHyperprior:
    """Plain CompressAI, the file's tables set by hand (what the authors' code codes with)."""
    model = ScaleHyperprior(16, 32)
    model.update(force=True)
    for key, value in state.items():
        owner, _, name = key.rpartition(".")
        module = model.get_submodule(owner)
        if name in module._buffers:
            module._buffers[name] = value.clone()
        else:
            module.get_parameter(name).data.copy_(value)
    return model.eval()


def test_stored_tables_are_used_and_streams_match_the_files_codec(tmp_path: Path, capsys) -> None:
    path, state = _zoo_file(tmp_path)
    codec = build_zoo("bmshj2018-hyperprior", tiny=True, weights=path)
    assert entropy_tables(codec) == "stored" and "Notice" not in capsys.readouterr().err
    eb = codec.model.entropy_bottleneck
    assert torch.equal(eb._quantized_cdf, state["entropy_bottleneck._quantized_cdf"])
    reference = _reference(state)
    rebuilt = _reference(state)
    rebuilt.update(force=True)  # what neckkit used to code with
    assert not torch.equal(rebuilt.entropy_bottleneck._quantized_cdf, eb._quantized_cdf)

    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    payload = codec.compress(x)
    written = reference.compress(x)
    assert payload.strings == [list(s) for s in written["strings"]]  # same bytes as the file's tables give
    assert payload.strings[1] != rebuilt.compress(x)["strings"][1]  # the perturbation shows in the z stream
    assert entropy_tables(codec) == "stored"  # coding did not rebuild them

    expected = reference.decompress(written["strings"], written["shape"])["x_hat"]
    y_hat = codec.decompress_latent(LatentPayload(strings=[list(s) for s in written["strings"]], shape=tuple(written["shape"])))
    assert torch.equal(codec.model.g_s(y_hat).clamp(0, 1), expected)
    z_hat = reference.entropy_bottleneck.decompress(written["strings"][1], written["shape"])
    scales = reference.h_s(z_hat)
    indexes = reference.gaussian_conditional.build_indexes(scales)
    assert torch.equal(y_hat, reference.gaussian_conditional.decompress(written["strings"][0], indexes, z_hat.dtype))


def test_a_file_without_tables_is_rebuilt_with_one_notice(tmp_path: Path, capsys) -> None:
    torch.manual_seed(3)
    state = {k: v for k, v in ScaleHyperprior(16, 32).state_dict().items() if "_quantized_cdf" not in k}
    path = tmp_path / "plain.pth"
    torch.save(state, path)
    codec = build_zoo("bmshj2018-hyperprior", tiny=True, weights=path)
    notices = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Notice")]
    assert notices == [f"Notice: {path} carries no (complete) entropy-coder tables; rebuilt them from the weights"]
    assert entropy_tables(codec) == "rebuilt"


def test_training_after_loading_stored_tables_rebuilds_them(tmp_path: Path) -> None:
    path, _ = _zoo_file(tmp_path)
    codec = build_zoo("bmshj2018-hyperprior", tiny=True, weights=path)
    with torch.no_grad():
        codec.model.entropy_bottleneck.quantiles.add_(0.25)  # as an optimiser step would
    codec.compress(torch.rand(1, 3, 64, 64))
    assert entropy_tables(codec) == "rebuilt"


def test_tic_file_and_checkpoint_tables_are_kept(tmp_path: Path) -> None:
    torch.manual_seed(4)
    model = TICModel(TINY_CONFIG, resolution=TINY_RESOLUTION)
    model.update(force=True)
    state = _perturbed(model.state_dict())
    path = tmp_path / "tic.pth.tar"
    torch.save({"state_dict": state}, path)
    # build_tic refuses weights + tiny: load the tiny file into a tiny TIC codec instead
    codec = build_tic(tiny=True)
    load_codec_weights(codec, state, str(path))
    assert entropy_tables(codec) == "stored"
    assert torch.equal(codec.model.entropy_bottleneck._quantized_cdf, state["entropy_bottleneck._quantized_cdf"])
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    payload = codec.compress(x)
    assert torch.equal(codec.model.entropy_bottleneck._quantized_cdf, state["entropy_bottleneck._quantized_cdf"])
    # the adapter's own state dict (model.-prefixed, as trainer checkpoints hold) keeps them too
    again = build_tic(tiny=True)
    load_codec_weights(again, codec.state_dict(), "codec.safetensors")
    assert entropy_tables(again) == "stored" and again.compress(x).strings == payload.strings
    assert torch.equal(again.decompress_latent(payload), codec.analyze(x).y_hat)


def test_the_nk_fingerprint_names_stored_tables_so_a_rebuilt_codec_refuses_the_stream(tmp_path: Path) -> None:
    """Same weights, other tables: the .nk fingerprint differs, and decoding is refused, not wrong."""
    import pytest

    from neckkit.bitstream import NkFile, check_codec, codec_fingerprint, stream_fingerprint
    from neckkit.errors import NeckkitError

    path, _ = _zoo_file(tmp_path)
    stored = build_zoo("bmshj2018-hyperprior", tiny=True, weights=path)
    rebuilt = build_zoo("bmshj2018-hyperprior", tiny=True, weights=path)
    rebuilt.update_entropy_tables()
    assert (entropy_tables(stored), entropy_tables(rebuilt)) == ("stored", "rebuilt")
    assert codec_fingerprint(stored) == codec_fingerprint(rebuilt) == stream_fingerprint(rebuilt)  # the weights' alone
    assert stream_fingerprint(stored) != stream_fingerprint(rebuilt) and len(stream_fingerprint(stored)) == 16
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    nk = NkFile.from_payload(stored.compress(x), codec="bmshj2018-hyperprior", fingerprint=stream_fingerprint(stored),
                             original_size=(64, 64), padding=(0, 0, 0, 0))
    check_codec(nk, "bmshj2018-hyperprior", stream_fingerprint(build_zoo("bmshj2018-hyperprior", tiny=True, weights=path)))
    with pytest.raises(NeckkitError, match="stored entropy tables count as part of the weights"):
        check_codec(nk, "bmshj2018-hyperprior", stream_fingerprint(rebuilt))
