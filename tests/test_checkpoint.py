"""neckkit's own checkpoints: round trips, atomic replacement, resolution rules, one-line errors."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

import neckkit.neck.checkpoint as ck
from neckkit import NeckkitError, __version__
from neckkit.bitstream.container import codec_fingerprint
from neckkit.config import NeckConfig
from neckkit.loading.weights import seeded_init
from neckkit.neck.transform import TransformNeck
from neckkit.plugins.codecs.compressai_codecs import build_elic

SMALL = NeckConfig(num_heads=2, num_blocks=2)


def _neck(seed: int = 0) -> TransformNeck:
    with seeded_init(seed):
        return TransformNeck(latent_channels=8, width=32, grid=4, config=SMALL).eval()


def _meta(neck: TransformNeck, **fields) -> ck.CheckpointMeta:
    return ck.CheckpointMeta(
        codec=ck.ComponentRef(name="elic", options={"tiny": True}, fingerprint="0123456789abcdef"),
        encoder=ck.ComponentRef(name="clip-l", options={"tiny": True, "double_ln_post": True}),
        entry_layer=2,
        neck=ck.NeckShape.of_neck(neck),
        **fields,
    )


def _save(directory: Path, seed: int = 0, **fields) -> tuple[TransformNeck, ck.CheckpointMeta]:
    neck = _neck(seed)
    meta = _meta(neck, step=seed, **fields)
    ck.save_checkpoint(directory, meta, neck.state_dict())
    return neck, meta


def _one_line(caught: pytest.ExceptionInfo[NeckkitError]) -> str:
    message = str(caught.value)
    assert "\n" not in message
    return message


def _siblings(path: Path) -> list[str]:
    return sorted(entry.name for entry in path.parent.iterdir())


# --- writing and reading back ----------------------------------------------------------------------


def test_round_trip_keeps_tensors_meta_and_trainer_state(tmp_path: Path) -> None:
    neck = _neck()
    codec_state = {"g_a.0.weight": torch.randn(4, 3, 5, 5), "table._offset": torch.zeros(0, dtype=torch.int32)}
    trainer_state = {"step": 7, "optimizer": {"state": {0: {"exp_avg": torch.ones(3)}}}, "rng": torch.get_rng_state()}
    meta = _meta(
        neck, scenario="d2", rate_lambda=0.008, step=7, epoch=1, metrics={"val_loss": 0.25, "diverged": math.nan},
        config={"optim": {"lr": 1e-4, "lr_milestones": [20]}}, source="a test",
    )
    directory = ck.save_checkpoint(tmp_path / "ckpt", meta, neck.state_dict(), codec_state, trainer_state)

    assert directory == tmp_path / "ckpt"
    assert sorted(p.name for p in directory.iterdir()) == ["codec.safetensors", "meta.json", "neck.safetensors", "trainer.pt"]
    assert _siblings(directory) == ["ckpt"]  # no temporary folder left
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in [directory, *directory.iterdir()]}
    assert modes.pop("ckpt") == 0o777 & ~umask  # what mkdir gives, not mkdtemp's 0700
    assert set(modes.values()) == {0o666 & ~umask}  # safetensors alone would write 0600
    loaded = ck.load_checkpoint(directory)
    assert loaded.path == directory
    assert loaded.neck_state.keys() == neck.state_dict().keys()
    assert all(torch.equal(loaded.neck_state[k], v) for k, v in neck.state_dict().items())
    assert loaded.codec_state is not None and loaded.codec_state.keys() == codec_state.keys()
    assert all(torch.equal(loaded.codec_state[k], v) for k, v in codec_state.items())
    assert math.isnan(loaded.meta.metrics.pop("diverged")) and math.isnan(meta.metrics.pop("diverged"))
    assert sorted(loaded.meta.checksums) == ["codec.safetensors", "neck.safetensors", "trainer.pt"]
    assert loaded.meta.model_copy(update={"checksums": {}}) == meta  # the rest as given
    assert (loaded.meta.format, loaded.meta.format_version, loaded.meta.neckkit_version) == (
        "neckkit-checkpoint", 1, __version__
    )
    restored = ck.load_trainer_state(directory)
    assert restored is not None and restored["step"] == 7
    assert torch.equal(restored["optimizer"]["state"][0]["exp_avg"], torch.ones(3))
    assert torch.equal(restored["rng"], trainer_state["rng"])
    text = (directory / "meta.json").read_text()
    assert text.startswith("{\n  ") and json.loads(text.replace("NaN", "null"))["neck"]["config"]["num_blocks"] == 2


def test_views_shared_and_non_contiguous_tensors_are_saved_as_plain_copies(tmp_path: Path) -> None:
    base = torch.arange(12.0).reshape(3, 4)
    state = {"a": base, "same": base, "transposed": base.t(), "row": base[1], "grad": torch.ones(2, requires_grad=True)}
    ck.save_checkpoint(tmp_path / "ckpt", _meta(_neck()), state)
    loaded = ck.load_checkpoint(tmp_path / "ckpt").neck_state
    assert all(torch.equal(loaded[key], value.detach()) for key, value in state.items())
    assert ck.load_checkpoint(tmp_path / "ckpt").codec_state is None
    assert ck.load_trainer_state(tmp_path / "ckpt") is None


def test_saving_again_replaces_the_whole_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "best"
    ck.save_checkpoint(target, _meta(_neck()), _neck().state_dict(), trainer_state={"step": 1})
    neck, meta = _save(target, seed=5)
    loaded = ck.load_checkpoint(target)
    assert loaded.meta.step == 5 and torch.equal(loaded.neck_state["class_embedding"], neck.class_embedding)
    assert not (target / "trainer.pt").exists()  # nothing of the old checkpoint survives
    assert _siblings(target) == ["best"]


@pytest.mark.parametrize("fresh", [False, True])
def test_a_failed_write_keeps_the_old_checkpoint_and_leaves_no_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: bool
) -> None:
    target = tmp_path / "best"
    if not fresh:
        old_neck, old_meta = _save(target, seed=1)

    def failing_save(tensors, filename, metadata=None):
        open(filename, "wb").write(b"partial")  # noqa: SIM115 - a half-written file, then the crash
        raise RuntimeError("disk full")

    monkeypatch.setattr(ck, "save_file", failing_save)
    with pytest.raises(RuntimeError, match="disk full"):
        ck.save_checkpoint(target, _meta(_neck(2), step=2), _neck(2).state_dict())
    monkeypatch.undo()

    if fresh:
        assert list(tmp_path.iterdir()) == []
        return
    assert _siblings(target) == ["best"]
    kept = ck.load_checkpoint(target)
    assert kept.meta.model_copy(update={"checksums": {}}) == old_meta
    assert torch.equal(kept.neck_state["positional_embedding"], old_neck.positional_embedding)


def test_a_failed_rename_puts_the_old_checkpoint_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "best"
    _, old_meta = _save(target, seed=1)
    real_replace = ck.os.replace

    def replace(source, destination):
        if Path(source).name.endswith(".tmp"):
            raise OSError(28, "No space left on device")
        real_replace(source, destination)

    monkeypatch.setattr(ck.os, "replace", replace)
    with pytest.raises(NeckkitError) as caught:
        ck.save_checkpoint(target, _meta(_neck(2), step=2), _neck(2).state_dict())
    monkeypatch.undo()
    assert _one_line(caught) == f"cannot write checkpoint {target}: No space left on device"
    assert _siblings(target) == ["best"] and ck.read_meta(target).model_copy(update={"checksums": {}}) == old_meta


def test_a_folder_that_is_not_a_checkpoint_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"jpeg")
    with pytest.raises(NeckkitError) as caught:
        _save(tmp_path / "photos")
    assert "refusing to replace" in _one_line(caught) and (tmp_path / "photos" / "cat.jpg").exists()
    (tmp_path / "empty").mkdir()
    _save(tmp_path / "empty")  # an empty folder is fine
    assert ck.read_meta(tmp_path / "empty").step == 0


# --- errors reading ----------------------------------------------------------------------------------


def test_read_meta_errors_are_one_line_each(tmp_path: Path) -> None:
    cases: list[tuple[Path, str]] = []
    cases.append((tmp_path / "missing", "does not exist"))
    (tmp_path / "file").write_text("x")
    cases.append((tmp_path / "file", "is not a directory"))
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "neck.safetensors").write_bytes(b"")
    cases.append((tmp_path / "bare", "is not a neckkit checkpoint: it has no meta.json"))
    for name, text, expected in [
        ("garbled", "{not json", "meta.json is not valid JSON: Expecting property name"),
        ("foreign", json.dumps({"format": "other-tool"}), "is not neckkit checkpoint metadata (format 'other-tool'"),
        ("listed", "[1, 2]", "is not neckkit checkpoint metadata (format 'list'"),
        ("newer", json.dumps({"format": "neckkit-checkpoint", "format_version": 2}), "format version 2, newer than"),
        ("invalid", json.dumps({"format": "neckkit-checkpoint", "entry_layer": "two"}), "entry_layer: Input should be"),
        ("version0", json.dumps({"format": "neckkit-checkpoint", "format_version": 0}), "unknown checkpoint format version 0"),
        ("versionx", json.dumps({"format": "neckkit-checkpoint", "format_version": "1"}), "unknown checkpoint format version '1'"),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "meta.json").write_text(text)
        cases.append((tmp_path / name, expected))
    for path, expected in cases:
        with pytest.raises(NeckkitError) as caught:
            ck.read_meta(path)
        assert expected in _one_line(caught), (path.name, str(caught.value))
    with pytest.raises(NeckkitError) as caught:
        ck.read_meta(tmp_path / "newer")
    assert _one_line(caught).endswith("reads (up to 1): upgrade neckkit")


def test_missing_or_corrupt_tensor_files_name_the_file(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    _save(target)
    (target / "neck.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(NeckkitError) as caught:
        ck.load_checkpoint(target)
    assert _one_line(caught).startswith(f"{target / 'neck.safetensors'} does not match the checksum in meta.json")
    meta = json.loads((target / "meta.json").read_text())
    del meta["checksums"]  # a checkpoint written before checksums: the file itself is checked
    (target / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(NeckkitError) as caught:
        ck.load_checkpoint(target)
    assert _one_line(caught).startswith(f"{target / 'neck.safetensors'} is not a readable safetensors file")
    (target / "neck.safetensors").unlink()
    with pytest.raises(NeckkitError) as caught:
        ck.load_checkpoint(target)
    assert _one_line(caught) == f"checkpoint {target} is incomplete: it has no neck.safetensors"
    (target / "trainer.pt").write_bytes(b"not a pickle")
    with pytest.raises(NeckkitError) as caught:
        ck.load_trainer_state(target)
    assert "trainer.pt is not a readable PyTorch weight file" in _one_line(caught)


def test_every_file_carries_a_checksum_and_one_flipped_byte_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    neck = _neck()
    ck.save_checkpoint(target, _meta(neck), neck.state_dict(), {"w": torch.ones(3)}, {"step": 4})
    checksums = json.loads((target / "meta.json").read_text())["checksums"]
    assert sorted(checksums) == ["codec.safetensors", "neck.safetensors", "trainer.pt"]
    assert all(value.startswith("sha256:") and len(value) == 71 for value in checksums.values())
    assert ck.load_trainer_state(target) == {"step": 4}
    for name in ("neck.safetensors", "codec.safetensors", "trainer.pt"):
        data = bytearray((target / name).read_bytes())
        data[len(data) // 2] ^= 0x01  # a value's bit, not the header: safetensors alone would load it
        (target / name).write_bytes(bytes(data))
        with pytest.raises(NeckkitError) as caught:
            ck.load_trainer_state(target) if name == "trainer.pt" else ck.load_checkpoint(target)
        assert _one_line(caught) == (
            f"{target / name} does not match the checksum in meta.json: the file was changed or damaged after it "
            "was written; restore it or retrain"
        )
        data[len(data) // 2] ^= 0x01
        (target / name).write_bytes(bytes(data))
    assert ck.load_checkpoint(target).codec_state["w"].tolist() == [1.0, 1.0, 1.0]


def test_an_unknown_scenario_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    _save(target)
    meta = json.loads((target / "meta.json").read_text())
    (target / "meta.json").write_text(json.dumps({**meta, "scenario": "d4"}))
    with pytest.raises(NeckkitError) as caught:
        ck.read_meta(target)
    assert "scenario: Input should be 'd1', 'd2' or 'd3'" in _one_line(caught)


# --- finding checkpoints in a training run -----------------------------------------------------------


def test_checkpoint_dir_names_sort_by_step() -> None:
    assert ck.checkpoint_dir_name(100) == "step-00000100"
    assert ck.checkpoint_dir_name(0) == "step-00000000"


def test_resolve_prefers_best_then_the_latest_complete_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    steps = run / "checkpoints"
    for step in (100, 900, 1000):
        _save(steps / ck.checkpoint_dir_name(step), seed=step)
    (steps / ck.checkpoint_dir_name(5000)).mkdir()  # a step without meta.json: incomplete
    (steps / ".step-00009000.ab12cd34.tmp").mkdir()  # an unfinished write
    _save(steps / ".step-00009000.ab12cd34.tmp" / "inner")
    assert ck.latest_checkpoint(run) == steps / "step-00001000"
    assert ck.resolve_checkpoint(run) == steps / "step-00001000"
    assert ck.load_checkpoint(run).meta.step == 1000

    _save(run / "best", seed=900)
    assert ck.resolve_checkpoint(run) == run / "best"
    assert ck.load_checkpoint(run).meta.step == 900
    assert ck.resolve_checkpoint(steps / "step-00000100") == steps / "step-00000100"  # a checkpoint as it is


def test_a_run_without_checkpoints_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert ck.latest_checkpoint(tmp_path / "run") is None
    assert ck.latest_checkpoint(tmp_path / "nowhere") is None
    with pytest.raises(NeckkitError) as caught:
        ck.resolve_checkpoint(tmp_path / "run")
    assert "is not a neckkit checkpoint: it has no meta.json (nor, as a training run, best/" in _one_line(caught)


# --- using a checkpoint ----------------------------------------------------------------------------


def test_check_pair_names_both_pairs(tmp_path: Path) -> None:
    _, meta = _save(tmp_path / "ckpt")
    ck.check_pair(meta, "elic", "clip-l")
    with pytest.raises(NeckkitError) as caught:
        ck.check_pair(meta, "tic", "clip-l", path=tmp_path / "ckpt")
    assert _one_line(caught) == (
        f"checkpoint {tmp_path / 'ckpt'} holds a neck for codec 'elic' and encoder 'clip-l', "
        "not for codec 'tic' and encoder 'clip-l'"
    )
    with pytest.raises(NeckkitError, match="'elic' and encoder 'clip-l', not for codec 'elic' and encoder 'eva02-l'"):
        ck.check_pair(meta, "elic", "eva02-l")


def test_build_neck_gives_the_saved_neck_without_touching_the_global_rng(tmp_path: Path) -> None:
    neck, _ = _save(tmp_path / "ckpt", seed=3)
    checkpoint = ck.load_checkpoint(tmp_path / "ckpt")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    rebuilt = ck.build_neck(checkpoint).eval()
    assert torch.equal(torch.get_rng_state(), before)
    assert ck.NeckShape.of_neck(rebuilt) == checkpoint.meta.neck
    y_hat = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(y_hat), neck(y_hat), rtol=0, atol=0)


def test_build_neck_refuses_tensors_that_do_not_fit_the_meta(tmp_path: Path) -> None:
    neck = _neck()
    meta = _meta(neck)
    meta.neck = meta.neck.model_copy(update={"width": 64})
    ck.save_checkpoint(tmp_path / "ckpt", meta, neck.state_dict())
    with pytest.raises(NeckkitError) as caught:
        ck.build_neck(ck.load_checkpoint(tmp_path / "ckpt"))
    message = _one_line(caught)
    assert message.startswith(f"{tmp_path / 'ckpt' / 'neck.safetensors'} does not fit the neck its meta.json describes")
    assert "wrong shape class_embedding [32] (meta.json says [64])" in message


@pytest.mark.parametrize("layout", ["codec", "model"])
def test_restore_codec_state_loads_either_state_dict_layout(tmp_path: Path, layout: str) -> None:
    with seeded_init(1):  # as neckkit builds it with --codec-opt seed=1
        trained = build_elic(tiny=True)
    with torch.no_grad():
        trained.model.g_a[0].weight.mul_(1.5)
    state = trained.state_dict() if layout == "codec" else trained.model.state_dict()
    neck = _neck()
    ck.save_checkpoint(tmp_path / "ckpt", _meta(neck), neck.state_dict(), codec_state=state)
    fresh = build_elic(tiny=True)
    assert codec_fingerprint(fresh) != codec_fingerprint(trained)
    ck.restore_codec_state(fresh, ck.load_checkpoint(tmp_path / "ckpt"))
    assert codec_fingerprint(fresh) == codec_fingerprint(trained)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh.decompress_latent(fresh.compress(x)), trained.analyze(x).y_hat)


def test_restore_codec_state_names_mismatches_and_ignores_checkpoints_without_codec(tmp_path: Path) -> None:
    neck = _neck()
    ck.save_checkpoint(tmp_path / "plain", _meta(neck), neck.state_dict())
    codec = build_elic(tiny=True)
    before = codec_fingerprint(codec)
    ck.restore_codec_state(codec, ck.load_checkpoint(tmp_path / "plain"))
    assert codec_fingerprint(codec) == before
    state = dict(codec.model.state_dict())
    state["g_a.0.weight"] = torch.zeros(1)
    ck.save_checkpoint(tmp_path / "bad", _meta(neck), neck.state_dict(), codec_state=state)
    with pytest.raises(NeckkitError) as caught:
        ck.restore_codec_state(codec, ck.load_checkpoint(tmp_path / "bad"))
    assert "codec.safetensors does not fit Elic2022Chandelier: wrong shape g_a.0.weight [1]" in _one_line(caught)
