"""The d1 feature cache: exact values, reuse, rebuilds, skipped files, atomic builds."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from neckkit import NeckkitError
from neckkit.config import DataConfig
from neckkit.training.data import ImageSet
from neckkit.training.feature_cache import FeatureCache, cache_folder_name, data_fingerprint, default_cache_root

CONFIG = DataConfig(resize=12, crop=8)
KEY = {"data": "d", "codec": "toy", "codec_fingerprint": "c0", "encoder": "toy", "entry_layer": 2, "fields": "v1"}


def _write_png(path: Path, seed: int, size: tuple[int, int] = (14, 10)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _image_set(folder: Path, n: int = 7, broken: tuple[int, ...] = ()) -> ImageSet:
    """``n`` labelled PNGs; the files at ``broken`` positions are not readable images."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        if i in broken:
            path = folder / (f"{i:02d}.png" if i % 2 else f"{i:02d}.txt")
            path.write_bytes(b"not an image at all")
        else:
            path = _write_png(folder / f"{i:02d}.png", seed=i)
        paths.append(path)
    return ImageSet(paths, labels=[10 + i for i in range(n)], config=CONFIG)


class Compute:
    """A deterministic function of the images; counts images and keeps every output."""

    def __init__(self, fail_after: int | None = None, extra: Callable[[Tensor], dict[str, Tensor]] | None = None):
        self.calls = 0
        self.images = 0
        self.outputs: list[dict[str, Tensor]] = []
        self.fail_after = fail_after
        self.extra = extra

    def __call__(self, images: Tensor) -> dict[str, Tensor]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("compute failed midway")
        self.calls += 1
        self.images += len(images)
        assert not torch.is_grad_enabled()
        pooled = torch.nn.functional.adaptive_avg_pool2d(images, 2)  # [B, 3, 2, 2]
        latent = torch.cat([pooled, pooled.pow(2).sum(1, keepdim=True).sqrt()], dim=1)  # [B, 4, 2, 2]
        flat = images.flatten(2)
        embedding = torch.cat([flat.mean(-1), flat.std(-1), flat.amax((1, 2))[:, None], flat.amin((1, 2))[:, None]], 1)
        out = {"latent": latent, "embedding": embedding.sin() * 1e3}  # [B, 8], full float32 mantissas
        if self.extra is not None:
            out.update(self.extra(images))
        self.outputs.append({name: value.clone() for name, value in out.items()})
        return out

    def all_outputs(self) -> dict[str, Tensor]:
        return {name: torch.cat([o[name] for o in self.outputs]) for name in self.outputs[0]}


def _bits(tensor: Tensor) -> Tensor:
    """The raw bytes of a tensor, for bit-for-bit comparisons."""
    return tensor.contiguous().view(torch.uint8)


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_values_equal_compute_output_bit_for_bit(tmp_path: Path) -> None:
    images = _image_set(tmp_path / "data")
    compute = Compute()
    cache = FeatureCache.open_or_build(tmp_path / "cache", KEY, images, compute, batch_size=3)
    assert cache.built and cache.build_seconds >= 0 and compute.calls == 3 and compute.images == 7
    assert len(cache) == 7 and cache.skipped == []
    assert cache.fields == {"latent": ((4, 2, 2), "float32"), "embedding": ((8,), "float32")}
    assert cache.root == tmp_path / "cache" / cache_folder_name(KEY)
    expected = compute.all_outputs()
    for i in range(len(cache)):
        item = cache[i]
        assert set(item) == {"latent", "embedding", "label"}
        for name in ("latent", "embedding"):
            assert item[name].dtype == torch.float32
            assert torch.equal(_bits(item[name]), _bits(expected[name][i]))
        assert item["label"].dtype == torch.int64 and item["label"].ndim == 0 and int(item["label"]) == 10 + i
    np.testing.assert_array_equal(cache.source_indices, np.arange(7))
    assert torch.equal(cache[-1]["embedding"], expected["embedding"][6])
    with pytest.raises(IndexError):
        cache[7]
    # rows are copies, not views of the read-only memory map
    row = cache[0]["latent"]
    row += 1
    assert torch.equal(cache[0]["latent"], expected["latent"][0])
    index = json.loads((cache.root / "index.json").read_text())
    assert index["complete"] is True and index["count"] == 7 and index["labelled"] == 7
    assert index["key"] == KEY and index["neckkit_version"] and index["skipped"] == []
    assert _leftovers(tmp_path / "cache") == [cache.root.name]


def test_half_and_bfloat16_fields_keep_their_dtype_and_bits(tmp_path: Path) -> None:
    def extra(images: Tensor) -> dict[str, Tensor]:
        pooled = images.mean((2, 3)) * 3.3
        return {"half": pooled.half(), "brain": pooled.bfloat16(), "count": (images > 0.5).flatten(1).sum(1)}

    compute = Compute(extra=extra)
    cache = FeatureCache.open_or_build(tmp_path / "cache", KEY, _image_set(tmp_path / "data", 5), compute, 2)
    assert cache.fields["half"] == ((3,), "float16") and cache.fields["brain"] == ((3,), "bfloat16")
    assert cache.fields["count"] == ((), "int64")
    expected = compute.all_outputs()
    for name in ("half", "brain", "count"):
        got = torch.stack([cache[i][name] for i in range(len(cache))])
        assert got.dtype == expected[name].dtype and torch.equal(_bits(got), _bits(expected[name]))
    reopened = FeatureCache.open_or_build(tmp_path / "cache", KEY, _image_set(tmp_path / "data", 5), Compute(), 2)
    assert not reopened.built and torch.equal(reopened[4]["brain"], expected["brain"][4])


def test_same_key_reuses_and_any_key_change_rebuilds_elsewhere(tmp_path: Path) -> None:
    images = _image_set(tmp_path / "data")
    compute = Compute()
    first = FeatureCache.open_or_build(tmp_path / "cache", KEY, images, compute, batch_size=4)
    assert first.built and compute.calls == 2
    second = FeatureCache.open_or_build(tmp_path / "cache", dict(reversed(list(KEY.items()))), images, compute)
    assert not second.built and compute.calls == 2 and second.root == first.root
    assert second.build_seconds == pytest.approx(first.build_seconds)
    assert torch.equal(second[3]["latent"], first[3]["latent"])
    roots = {first.root}
    for change in ({"entry_layer": 3}, {"codec_fingerprint": "c1"}, {"data": "e"}, {"fields": "v2"}, {"new": [1]}):
        other = FeatureCache.open_or_build(tmp_path / "cache", {**KEY, **change}, images, Compute(), batch_size=4)
        assert other.built and other.root not in roots
        roots.add(other.root)
    assert set(_leftovers(tmp_path / "cache")) == {root.name for root in roots}


def test_unreadable_files_are_skipped_and_recorded(tmp_path: Path) -> None:
    images = _image_set(tmp_path / "data", n=9, broken=(0, 3, 4, 8))
    images.paths.append(tmp_path / "data" / "missing.png")
    images.labels.append(99)
    compute = Compute()
    cache = FeatureCache.open_or_build(tmp_path / "cache", KEY, images, compute, batch_size=3)
    readable = [1, 2, 5, 6, 7]
    assert len(cache) == 5 and compute.images == 5
    np.testing.assert_array_equal(cache.source_indices, readable)
    np.testing.assert_array_equal(cache.labels, [10 + i for i in readable])
    assert [int(cache[i]["label"]) for i in range(5)] == [10 + i for i in readable]
    assert len(cache.skipped) == 5
    for name in ("00.txt", "03.png", "04.txt", "08.txt", "missing.png"):
        assert any(name in message for message in cache.skipped)
    # each row is the features of the image it claims to come from
    for row, source in enumerate(readable):
        with torch.no_grad():
            alone = Compute()(images[source][0][None])
        torch.testing.assert_close(cache[row]["latent"], alone["latent"][0])
    index = json.loads((cache.root / "index.json").read_text())
    assert index["count"] == 5 and index["capacity"] == 10 and index["skipped"] == cache.skipped
    reopened = FeatureCache.open_or_build(tmp_path / "cache", KEY, images, Compute(fail_after=0))
    assert not reopened.built and reopened.skipped == cache.skipped and len(reopened) == 5


def test_worker_processes_give_the_same_cache(tmp_path: Path) -> None:
    images = _image_set(tmp_path / "data", n=8, broken=(2, 5))
    serial = FeatureCache.open_or_build(tmp_path / "a", KEY, images, Compute(), batch_size=3)
    parallel = FeatureCache.open_or_build(tmp_path / "b", KEY, images, Compute(), batch_size=3, num_workers=2)
    np.testing.assert_array_equal(parallel.source_indices, serial.source_indices)
    assert parallel.skipped == serial.skipped and len(parallel.skipped) == 2  # messages made in the workers
    for i in range(len(serial)):
        assert all(torch.equal(parallel[i][name], serial[i][name]) for name in ("latent", "embedding", "label"))


def test_unlabelled_images_get_label_minus_one(tmp_path: Path) -> None:
    images = _image_set(tmp_path / "data", n=3)
    images.labels = None
    cache = FeatureCache.open_or_build(tmp_path / "cache", KEY, images, Compute())
    assert [int(cache[i]["label"]) for i in range(3)] == [-1, -1, -1]
    assert json.loads((cache.root / "index.json").read_text())["labelled"] == 0


def test_a_failing_compute_leaves_nothing_on_disk(tmp_path: Path) -> None:
    images = _image_set(tmp_path / "data")
    with pytest.raises(RuntimeError, match="midway"):
        FeatureCache.open_or_build(tmp_path / "cache", KEY, images, Compute(fail_after=1), batch_size=2)
    assert _leftovers(tmp_path / "cache") == []
    compute = Compute()
    cache = FeatureCache.open_or_build(tmp_path / "cache", KEY, images, compute, batch_size=2)
    assert cache.built and compute.calls == 4 and len(cache) == 7


@pytest.mark.parametrize(
    "bad_output",
    [
        lambda images: {"latent": images.mean((2, 3))} if len(images) == 2 else {"latent": images.mean(1)},
        lambda images: {"latent": images.mean((2, 3))} if len(images) == 2 else {"other": images.mean((2, 3))},
        lambda images: {"latent": images.mean((2, 3))[:1]},
        lambda images: {"label": images.mean((2, 3))},
        lambda images: {"../escape": images.mean((2, 3))},
        lambda images: images.mean((2, 3)),
    ],
    ids=["shape-changes", "fields-change", "wrong-batch", "reserved-name", "path-name", "not-a-dict"],
)
def test_inconsistent_compute_outputs_are_clear_errors(tmp_path: Path, bad_output: Callable) -> None:
    with pytest.raises(NeckkitError, match="feature cache"):
        FeatureCache.open_or_build(tmp_path / "cache", KEY, _image_set(tmp_path / "data", 3), bad_output, 2)
    assert _leftovers(tmp_path / "cache") == []


def test_no_readable_image_is_an_error(tmp_path: Path) -> None:
    images = _image_set(tmp_path / "data", n=2, broken=(0, 1))
    with pytest.raises(NeckkitError, match="none of the 2 images"):
        FeatureCache.open_or_build(tmp_path / "cache", KEY, images, Compute())
    assert _leftovers(tmp_path / "cache") == []
    with pytest.raises(NeckkitError, match="JSON"):
        FeatureCache.open_or_build(tmp_path / "cache", {"x": object()}, images, Compute())


def _delete_npy(root: Path) -> None:
    (root / "latent.npy").unlink()


def _garbage_index(root: Path) -> None:
    (root / "index.json").write_text("{ not json")


def _incomplete_index(root: Path) -> None:
    index = json.loads((root / "index.json").read_text())
    index["complete"] = False
    (root / "index.json").write_text(json.dumps(index))


def _truncated_npy(root: Path) -> None:
    np.save(root / "embedding.npy", np.zeros((3, 8), dtype=np.float32))


def _wrong_dtype_npy(root: Path) -> None:
    np.save(root / "labels.npy", np.zeros(7, dtype=np.int32))


def _no_index(root: Path) -> None:
    (root / "index.json").unlink()


def _file_instead_of_folder(root: Path) -> None:
    for path in root.iterdir():
        path.unlink()
    root.rmdir()
    root.write_text("oops")


@pytest.mark.parametrize(
    "damage",
    [
        _delete_npy,
        _garbage_index,
        _incomplete_index,
        _truncated_npy,
        _wrong_dtype_npy,
        _no_index,
        _file_instead_of_folder,
    ],
)
def test_a_damaged_cache_is_rebuilt(tmp_path: Path, damage: Callable[[Path], None]) -> None:
    images = _image_set(tmp_path / "data")
    first = FeatureCache.open_or_build(tmp_path / "cache", KEY, images, Compute())
    expected = [first[i]["embedding"] for i in range(len(first))]
    del first
    damage(tmp_path / "cache" / cache_folder_name(KEY))
    compute = Compute()
    cache = FeatureCache.open_or_build(tmp_path / "cache", KEY, images, compute)
    assert cache.built and compute.images == 7
    assert all(torch.equal(cache[i]["embedding"], expected[i]) for i in range(7))
    assert _leftovers(tmp_path / "cache") == [cache.root.name]
    assert not FeatureCache.open_or_build(tmp_path / "cache", KEY, images, Compute(fail_after=0)).built


def test_a_cache_completed_concurrently_is_used_not_overwritten(tmp_path: Path) -> None:
    """Another process (here: a nested call) finishes the same cache while this one builds."""
    images = _image_set(tmp_path / "data")
    other: list[FeatureCache] = []
    outer = Compute()

    def racing(batch: Tensor) -> dict[str, Tensor]:
        if not other:
            other.append(FeatureCache.open_or_build(tmp_path / "cache", KEY, images, Compute(), batch_size=7))
        return outer(batch)

    cache = FeatureCache.open_or_build(tmp_path / "cache", KEY, images, racing, batch_size=3)
    assert other[0].built and outer.calls == 3
    assert cache.root == other[0].root and len(cache) == 7
    assert _leftovers(tmp_path / "cache") == [cache.root.name]
    assert torch.equal(cache[6]["latent"], other[0][6]["latent"])


def test_a_cache_pickles_without_its_data(tmp_path: Path) -> None:
    cache = FeatureCache.open_or_build(tmp_path / "cache", KEY, _image_set(tmp_path / "data"), Compute())
    payload = pickle.dumps(cache)
    copy = pickle.loads(payload)
    assert b"latent" in payload and len(payload) < 4096
    assert len(copy) == 7 and torch.equal(copy[5]["latent"], cache[5]["latent"])
    assert "7 items" in repr(cache)


def test_progress_bar_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = FeatureCache.open_or_build(tmp_path / "cache", KEY, _image_set(tmp_path / "data"), Compute(), progress=True)
    assert len(cache) == 7


def test_data_fingerprint_follows_files_and_crop(tmp_path: Path) -> None:
    images = _image_set(tmp_path / "data", n=3)
    paths = list(images.paths)
    base = data_fingerprint(paths, CONFIG)
    assert base == data_fingerprint([Path(os.path.relpath(p)) for p in paths], CONFIG)
    assert len(base) == 16 and int(base, 16) >= 0
    assert data_fingerprint(paths, DataConfig(resize=12, crop=10)) != base
    assert data_fingerprint(paths, DataConfig(resize=16, crop=8)) != base
    assert data_fingerprint(paths[::-1], CONFIG) != base
    assert data_fingerprint([*paths, _write_png(tmp_path / "data" / "new.png", 50)], CONFIG) != base
    assert data_fingerprint([*paths, tmp_path / "data" / "absent.png"], CONFIG) != base
    stat = paths[1].stat()
    with open(paths[1], "ab") as handle:
        handle.write(b"\0")
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime, other size
    assert data_fingerprint(paths, CONFIG) != base
    paths[1].write_bytes(paths[1].read_bytes()[:-1])
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert data_fingerprint(paths, CONFIG) == base
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # touched
    assert data_fingerprint(paths, CONFIG) != base


def test_default_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(tmp_path))
    assert default_cache_root() == tmp_path / "features"
    monkeypatch.delenv("NECKKIT_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "home" / ".cache" / "neckkit" / "features"


def test_key_functions_stay_importable_from_feature_cache() -> None:
    from neckkit.training import feature_cache, feature_cache_keys

    for name in feature_cache_keys.__all__:
        assert getattr(feature_cache, name) is getattr(feature_cache_keys, name), name
        assert name in feature_cache.__all__
