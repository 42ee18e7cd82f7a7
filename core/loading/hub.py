"""Hugging Face Hub facts that weight loaders put into their error messages, and where weights are.

:class:`WeightsSource` tells a local folder from a hub id (resolved to its cached snapshot under
``HF_HUB_OFFLINE``) and words every failure as one line naming what to do, in the terms of a
:class:`Wording` that each loader fills in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from neckkit.errors import NeckkitError, first_line


def hub_offline() -> bool:
    """True when nothing may be downloaded (``HF_HUB_OFFLINE``, ``NECKKIT_OFFLINE``, or a component that a
    file names: :mod:`neckkit.loading.downloads`): loaders read only the local cache."""
    from neckkit.loading.downloads import downloads_allowed

    return not downloads_allowed()


def hub_location() -> str:
    """Where a hub id is looked up, for "cannot load X from <where>" messages."""
    from neckkit.loading.downloads import offline_reason

    reason = offline_reason()
    return f"the Hugging Face cache ({reason})" if reason else "the Hugging Face Hub"


def looks_like_path(weights: str) -> bool:
    """A string meant as a folder rather than an ``owner/name`` hub id."""
    return weights.startswith(("/", ".", "~")) or weights.count("/") > 1 or os.sep != "/" and os.sep in weights


@dataclass(frozen=True)
class Wording:
    """How one loader's errors name its weights and what they suggest instead.

    ``name``: ``"BLIP-2 weights"`` in ``"BLIP-2 weights 'x' is a file"``; ``loading``: the same in
    ``"cannot load <loading> <where>: ..."`` where it differs; ``hub_id``: the example hub id (the
    default); ``folder``: what the folder holds (``"pass the folder that <folder>"``);
    ``folder_hint``: the advice when a local folder does not load; ``flag``, ``fallback``,
    ``pronoun`` and ``patterns``: the advice for a hub id, ``"Download <pronoun> (`hf download <id>
    --include <pattern>...`), pass <flag> /path/to/folder, or use <fallback>"``.
    """

    name: str
    hub_id: str
    folder: str
    folder_hint: str
    flag: str
    fallback: str
    loading: str | None = None
    pronoun: str = "them"
    patterns: tuple[str, ...] = ()


class WeightsSource:
    """Weights given as a local folder or a hub id, with one-line errors worded by ``wording``.

    A folder is :attr:`folder` (``~`` expanded). A hub id is :attr:`hub_id`; with ``fetch``, its
    snapshot of just those file patterns is downloaded (read from the cache only when offline) and
    becomes :attr:`folder`; without, :attr:`folder` is None and :attr:`pretrained` is the id itself.
    """

    def __init__(self, weights: str, wording: Wording, fetch: Sequence[str] | None = None) -> None:
        self.weights = weights
        self.wording = wording
        self.hub_id: str | None = None
        self.folder: Path | None = None
        path = Path(weights).expanduser()
        if path.is_dir():
            self.folder = path
            return
        if path.exists():
            raise NeckkitError(f"{wording.name} {weights!r} is a file; pass the folder that {wording.folder}")
        if looks_like_path(weights):
            raise NeckkitError(
                f"{wording.name} folder {weights!r} does not exist "
                f"(pass a folder or a hub id such as {wording.hub_id!r})"
            )
        self.hub_id = weights
        if fetch is not None:
            self.folder = self.fetch(fetch)

    @property
    def where(self) -> str:
        """``"the local folder 'x'"`` or ``"'owner/name' from <hub location>"``, for messages."""
        if self.hub_id is None:
            return f"the local folder {self.weights!r}"
        return f"{self.hub_id!r} from {hub_location()}"

    @property
    def pretrained(self) -> str:
        """What ``from_pretrained`` takes: the folder, or the hub id."""
        return str(self.folder) if self.folder is not None else str(self.hub_id)

    def hint(self, files: Sequence[str] | None = None) -> str:
        """What to do about it, for the end of an error line; ``files``: the ones to download."""
        wording = self.wording
        if self.hub_id is None:
            return wording.folder_hint
        wanted = list(files) if files else [f'--include "{pattern}"' for pattern in wording.patterns]
        command = " ".join(["hf download", self.hub_id, *wanted])
        advice = f"pass {wording.flag} /path/to/folder, or use {wording.fallback}"
        return f"Download {wording.pronoun} (`{command}`), {advice}"

    def fail(self, problem: str, files: Sequence[str] | None = None) -> NeckkitError:
        """``"cannot load <what> <where>: <problem>. <hint>"``, to raise."""
        loading = self.wording.loading or self.wording.name
        return NeckkitError(f"cannot load {loading} {self.where}: {problem}. {self.hint(files)}")

    def fetch(self, patterns: Sequence[str]) -> Path:
        """``snapshot_download`` of just ``patterns`` of the hub id (from the cache only when offline)."""
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError

        try:
            return Path(snapshot_download(self.hub_id, allow_patterns=list(patterns), local_files_only=hub_offline()))
        except HFValidationError:
            wording = self.wording
            raise NeckkitError(
                f"{wording.name} {self.weights!r} are neither a local folder nor a hub id like {wording.hub_id!r}"
            ) from None
        except (OSError, ValueError) as error:
            raise self.fail(first_line(error)) from None

    def need(self, names: Sequence[str]) -> None:
        """Make sure ``names`` are in the folder: download them for a hub id, or fail with one line."""
        from neckkit.loading.weights import few_names  # imports torch

        missing = [name for name in names if not (self.folder / name).is_file()]
        if missing and self.hub_id is not None:
            self.folder = self.fetch(missing)
            missing = [name for name in names if not (self.folder / name).is_file()]
        if missing:
            raise self.fail(f"{few_names(missing)} not found", missing)
