"""The keys of the d1 feature cache: what a cache was computed from, and the folder it lives in.

A cache is valid for one exact input, so its key names everything its features depend on: the
images (:func:`data_fingerprint`: paths, sizes, mtimes and the crop), the codec and encoder and
their weights fingerprints, and the fields stored. :func:`cache_folder_name` hashes the key into
the folder name under :func:`default_cache_root`; another key is another folder, never a stale hit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from neckkit.config.paper import DataConfig
from neckkit.errors import NeckkitError

__all__ = ["cache_folder_name", "data_fingerprint", "default_cache_root"]


def data_fingerprint(paths: Sequence[Path], config: DataConfig) -> str:
    """Short hex digest of a file list, in order: resolved names, sizes, mtimes, and the crop.

    A file that is added, removed, renamed, rewritten or touched, or another resize/crop, gives
    another fingerprint. A missing file is fingerprinted as missing rather than an error (the
    dataset skips it). Labels are not included: they follow from the paths for folders read by
    :func:`neckkit.training.data.open_image_set`.
    """
    crops = f"resize={config.resize};crop={config.crop}"
    if config.preprocess != "neckkit":  # the default adds nothing: caches made before the option stay valid
        crops += f";preprocess={config.preprocess}"
    digest = hashlib.sha256(f"{crops}\0".encode())
    for path in paths:
        resolved = Path(path).resolve()
        try:
            stat = resolved.stat()
            facts = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            facts = "missing"
        digest.update(f"{resolved}\0{facts}\0".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def default_cache_root() -> Path:
    """``$NECKKIT_CACHE_DIR/features``, else ``~/.cache/neckkit/features``."""
    from neckkit.training.zero_shot import cache_dir

    return cache_dir() / "features"


def cache_folder_name(key: Mapping[str, Any]) -> str:
    """The folder name of ``key``: the first 16 hex digits of sha256 of its sorted JSON."""
    return hashlib.sha256(_key_json(key).encode()).hexdigest()[:16]


def _key_json(key: Mapping[str, Any]) -> str:
    try:
        return json.dumps(key, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise NeckkitError(f"feature cache key is not JSON-able: {error}") from None
