"""Registering the traditional anchors: ``jpeg``, ``webp``, ``avif``, ``heif``, ``jxl`` and ``vtm``.

Each is an :class:`~neckkit.interfaces.image_codec.ImageCodec` (no latent: the Reconstruction path only),
registered with ``image_codec=True`` and a pydantic options model, so a ``quality`` outside its library's range
is refused before the factory runs. Listing them imports neither torch nor the codec libraries.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from neckkit.plugin_api import RegisterCallback, lazy_factory

__all__ = ["ANCHORS", "register_traditional_codecs"]

PILLOW = "neckkit.plugins.codecs.pillow_codecs:build_pillow_codec"
# name: (factory target, bound keywords, description, (lowest, highest) quality, default, higher is more bits)
ANCHORS: dict[str, tuple[str, dict[str, Any], str, tuple[int, int], int, bool]] = {
    "jpeg": (PILLOW, {"codec": "jpeg"}, "JPEG (Pillow, libjpeg-turbo), 4:2:0: a traditional anchor, no latent",
             (1, 100), 75, True),
    "webp": (PILLOW, {"codec": "webp"}, "lossy WebP (Pillow, libwebp: VP8 intra): a traditional anchor, no latent",
             (0, 100), 80, True),
    "avif": (PILLOW, {"codec": "avif"}, "AVIF (Pillow, libavif + libaom: AV1 intra), 4:2:0: a traditional anchor, "
             "no latent", (0, 100), 75, True),
    "heif": ("neckkit.plugins.codecs.heif:build_heif", {}, "HEIF, HEVC intra (pillow-heif: libheif + x265), 4:2:0: a "
             "traditional anchor, no latent", (0, 100), 50, True),
    "jxl": ("neckkit.plugins.codecs.jxl:build_jxl", {}, "JPEG XL (pillow-jxl-plugin: libjxl), VarDCT; quality 100 is "
            "lossless: a traditional anchor, no latent", (0, 100), 90, True),
    "vtm": ("neckkit.plugins.codecs.vtm:build_vtm", {}, "VVC intra (VTM reference binaries given by path), 4:4:4, quality is "
            "the QP: a traditional anchor, no latent", (0, 63), 37, False),
}
PATH_HELP = {
    "encoder": "path of VTM's EncoderAppStatic (default: $NECKKIT_VTM_ENCODER)",
    "decoder": "path of VTM's DecoderAppStatic (default: $NECKKIT_VTM_DECODER)",
    "config": "VTM encoder config, e.g. VTM's cfg/encoder_intra_vtm.cfg (default: $NECKKIT_VTM_CONFIG, else VTM's "
    "built-in defaults)",
}


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


def quality_help(low: int, high: int, default: int, more_bits: bool) -> str:
    """``"0-100, higher is more bits (default 75)"``: how list-plugins and the docs state a quality range."""
    direction = "more bits" if more_bits else "FEWER bits (a QP)"
    return f"{low}-{high}, higher is {direction} (default {default})"


def options_model(name: str, low: int, high: int, default: int, more_bits: bool) -> type[BaseModel]:
    """The options of anchor ``name``: ``quality`` within its range (and, for ``vtm``, the binaries' paths)."""
    fields: dict[str, Any] = {
        "quality": (int | None, Field(None, ge=low, le=high, description=quality_help(low, high, default, more_bits)))
    }
    if name == "vtm":
        fields |= {option: (str | None, Field(None, description=text)) for option, text in PATH_HELP.items()}
    return create_model(f"{name.capitalize()}Options", __base__=_Options, **fields)


def register_traditional_codecs(register: RegisterCallback) -> None:
    """Register every anchor (called from the built-in codec plugin's ``register_codecs``)."""
    for name, (target, bound, description, (low, high), default, more_bits) in ANCHORS.items():
        register(
            name,
            lazy_factory(target, **bound),
            description=description,
            image_codec=True,
            tiny=True,  # a no-op: commands that pass --tiny to every component may pass it here too
            options=options_model(name, low, high, default, more_bits),
        )
