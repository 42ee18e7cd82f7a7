"""What a command line names, checked before anything heavy is imported.

A misspelt component name, a missing file or a file of the wrong kind (a ``.nk`` given to ``compress``, a
JPEG to ``decompress``) fails here in a fraction of a second, instead of after torch, CompressAI and a model
have loaded. Nothing in this module imports torch: the names come from the plugin registry (factories are
not called), the kinds of files from their first bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from neckkit.bitstream.nk_format import MAGIC
from neckkit.checkpoint_folders import resolve_checkpoint
from neckkit.errors import NeckkitError

if TYPE_CHECKING:
    from neckkit.host.manager import PluginHost
    from neckkit.host.registry import Component, ComponentKind

__all__ = [
    "check_component",
    "check_file",
    "check_folder",
    "check_images",
    "check_latent_codec",
    "check_image_output",
    "check_neck",
    "check_nk_file",
    "file_kind",
]

FileKind = Literal["nk", "image", "other"]


def check_component(host: PluginHost, kind: ComponentKind, name: str, options: dict[str, Any] | None = None) -> Component:
    """The registered component ``name`` (its factory not called), its ``options`` checked against what it declares."""
    from neckkit.host.options import check_options

    component = host.components(kind).get(name)
    if options is not None:
        check_options(component, options)
    return component


def check_latent_codec(component: Component, advice: str) -> None:
    """Refuse an image codec (JPEG, AVIF...: no latent) where a latent is needed; ``advice`` ends the line."""
    from neckkit.errors import UsageError

    if component.info.image_codec:
        raise UsageError(f"{component.name} has no latent: it is a Reconstruction-path anchor; {advice}")


def file_kind(path: Path) -> FileKind:
    """``nk`` for a neckkit bitstream (its magic bytes), ``image`` for a file PIL can identify, else ``other``."""
    from PIL import Image, UnidentifiedImageError

    with path.open("rb") as handle:
        if handle.read(len(MAGIC)) == MAGIC:
            return "nk"
    try:
        with Image.open(path):  # reads the header only
            return "image"
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return "other"


def _image_problem(path: Path) -> str | None:
    """Why ``path`` cannot be compressed, or ``None`` when it looks like an image."""
    if not path.exists():
        return f"image {path} does not exist"
    if not path.is_file():
        return f"{path} is not a regular file"
    try:
        kind = file_kind(path)
    except OSError as error:
        return f"cannot read {path}: {error.strerror or error}"
    if kind == "nk":
        return f"{path} is a .nk bitstream, not an image: decode it with `neckkit decompress {path} -o IMAGE.png`"
    if kind == "other":
        return f"{path} is not a readable image (PIL cannot identify it)"
    return _pixel_problem(path)


def _pixel_problem(path: Path) -> str | None:
    """Why an image is too large to read (from its header), or ``None``."""
    from PIL import Image

    from neckkit.bitstream.pixel_limit import check_pixels

    try:
        with Image.open(path) as image:
            check_pixels(*image.size, source=str(path))
    except NeckkitError as error:
        return str(error)
    return None


def check_images(paths: list[Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """The paths that look like images, and ``{"image", "error"}`` for each one that does not."""
    readable, failed = [], []
    for path in paths:
        problem = _image_problem(path)
        if problem is None:
            readable.append(path)
        else:
            failed.append({"image": str(path), "error": problem})
    return readable, failed


def check_nk_file(path: Path) -> None:
    """Refuse a path that is not a ``.nk`` bitstream; an image gets the ``compress`` command that makes one."""
    if path.is_file() and file_kind(path) == "image":
        raise NeckkitError(
            f"{path} is an image, not a .nk bitstream: compress it first with "
            f"`neckkit compress {path} --codec NAME -o {path.with_suffix('.nk')}`"
        )
    # Anything else (missing, a folder, wrong magic bytes) is read_nk's to describe.


def check_neck(path: Path) -> Path:
    """The checkpoint folder ``--neck`` names (a training run resolves to its best or latest one)."""
    return resolve_checkpoint(path)


def check_file(path: Path | None, flag: str) -> None:
    """Refuse a file option (``--codec-weights``, ``--config``...) that names no file."""
    if path is None:
        return
    if not path.exists():
        raise NeckkitError(f"{flag} {path} does not exist")
    if not path.is_file():
        raise NeckkitError(f"{flag} {path} is not a file")


def check_folder(path: Path | None, flag: str) -> None:
    """Refuse a folder option (``--data``) that names no folder."""
    if path is not None and not path.is_dir():
        raise NeckkitError(f"{flag} {path} is not a folder" if path.exists() else f"{flag} {path} does not exist")


def check_image_output(path: Path | None) -> None:
    """Refuse an output image whose suffix names no format PIL writes (before any decoding)."""
    from PIL import Image

    if path is not None and Image.registered_extensions().get(path.suffix.lower()) is None:
        raise NeckkitError(f"cannot write {path}: unknown image suffix {path.suffix!r} (use .png, .jpg, ...)")
