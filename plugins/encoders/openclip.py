"""open_clip vision towers: EVA02-CLIP ViT-L/14 (``eva02-l``) and any open_clip ViT by name (``openclip``).

Two kinds of open_clip image tower are split into embed / blocks / head:

- open_clip's own ``VisionTransformer`` (``ViT-B-16``, ``ViT-L-14``, ...): ``conv1``, class token,
  positional embedding, ``patch_dropout``, ``ln_pre`` | ``transformer.resblocks`` | ``ln_post`` and
  pooling (in the order ``final_ln_after_pool`` selects), ``proj``;
- a ``TimmModel`` around a timm ``Eva`` trunk (``EVA02-L-14`` and the other EVA02 configs):
  ``patch_embed``, ``_pos_embed``, ``norm_pre`` | ``blocks`` called with ``rope=`` | ``norm``,
  the trunk's pool / ``fc_norm`` / ``head``, then the ``TimmModel``'s own head.

``head(blocks(embed(p), 0, num_layers))`` equals ``model.encode_image(p)`` (unnormalised).
Attentional pooling (CoCa), ``pool_type='none'``, ModifiedResNet towers and non-EVA timm trunks
are refused with a :class:`~neckkit.NeckkitError`.

Weights (``pretrained``): an open_clip pretrained tag (downloaded into the Hugging Face cache, or
read from it when ``HF_HUB_OFFLINE`` is set), or a local open_clip checkpoint file (a state dict
saved with ``torch.save`` or safetensors). ``tiny=True`` builds the named model's family with tiny
widths and random weights (or loads a checkpoint file into that tiny architecture when
``pretrained`` is a file); ``random_init=True`` the real-size architecture with random weights.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import posixpath
from collections.abc import Iterator
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor, nn

from neckkit.loading.hub import hub_location
from neckkit.plugin_api import (
    NeckkitError,
    VisualEncoder,
    resize_center_crop,
    resize_center_crop_normalize,
    resize_square,
    resize_square_normalize,
)

EVA02_L_MODEL = "EVA02-L-14"
EVA02_L_PRETRAINED = "merged2b_s4b_b131k"
TINY_DEFAULT_MODEL = "ViT-B-16"  # the family ``openclip`` builds for a bare ``tiny=True``
# Tiny widths: every tower 32 wide with 2 heads; 4 vision and 2 text blocks; 16-d embeddings.
TINY_WIDTH = 32
TINY_HEADS = 2
TINY_VISION_LAYERS = 4
TINY_TEXT_LAYERS = 2
TINY_EMBED_DIM = 16
OPENCLIP_USAGE = (
    "the openclip encoder needs an open_clip model name, e.g. "
    "model='ViT-B-16' with pretrained='laion2b_s34b_b88k' "
    "(open_clip.list_models() lists the names, open_clip.list_pretrained() the tags)"
)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".npz")
INTERPOLATIONS = {
    "bicubic": TF.InterpolationMode.BICUBIC,
    "bilinear": TF.InterpolationMode.BILINEAR,
    "nearest": TF.InterpolationMode.NEAREST,
    "random": TF.InterpolationMode.BICUBIC,  # a training-time augmentation; evaluation is bicubic
}


# -- model configs, pretrained tags and building -----------------------------------------------


def _schema(model: str) -> bool:
    """Whether ``model`` names an ``hf-hub:`` repo or a ``local-dir:`` folder instead of a built-in config."""
    return model.startswith(("hf-hub:", "local-dir:"))


def openclip_model_config(model: str) -> dict[str, Any]:
    """open_clip's config for ``model`` (a copy); an unknown name lists close ones."""
    import open_clip
    from open_clip.factory import get_model_config

    try:
        config = get_model_config(model)
    except Exception as error:  # hf-hub: / local-dir: configs are read from the hub or a folder
        raise NeckkitError(f"cannot read the open_clip config of {model!r}: {_reason(error)}") from error
    if config is None:
        known = open_clip.list_models()
        close = difflib.get_close_matches(model, known, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise NeckkitError(f"unknown open_clip model {model!r}{hint} (open_clip.list_models() lists all {len(known)})")
    check_supported_config(model, config)
    return config


def check_supported_config(model: str, config: dict[str, Any]) -> None:
    """Refuse, before building anything, the image towers this encoder cannot split."""
    vision = config["vision_cfg"]
    timm_name = vision.get("timm_model_name")
    if timm_name:
        if not timm_name.startswith("eva"):
            raise NeckkitError(f"open_clip model {model!r} has a timm {timm_name!r} image tower; only EVA trunks are supported")
        if vision.get("timm_pool") in ("abs_attn", "rot_attn"):
            raise NeckkitError(f"open_clip model {model!r} pools with {vision['timm_pool']!r}, which is not supported")
    elif isinstance(vision.get("layers"), (list, tuple)):
        raise NeckkitError(f"open_clip model {model!r} has a ResNet image tower; only vision transformers are supported")
    elif vision.get("attentional_pool"):
        raise NeckkitError(f"open_clip model {model!r} uses attentional pooling (CoCa), which is not supported")
    elif vision.get("pool_type", "tok") not in ("tok", "avg"):
        raise NeckkitError(f"open_clip model {model!r} has pool_type={vision['pool_type']!r}; only 'tok' and 'avg' are supported")


def tiny_model_config(model: str, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``create_model`` overrides that shrink ``model``'s family, and the timm trunk's, if any.

    Image size, patch size, pooling and the tokenizer's vocabulary and context length stay;
    widths, depths and heads shrink. open_clip does not pass architecture keywords to timm, so a
    timm trunk's shrinking keywords are returned separately for :func:`_shrunk_timm`.
    """
    vision, text = dict(config["vision_cfg"]), dict(config["text_cfg"])
    if "hf_model_name" in text:
        raise NeckkitError(f"tiny=true needs an open_clip text tower; {model!r} uses the Hugging Face model {text['hf_model_name']!r}")
    text.update(width=TINY_WIDTH, heads=TINY_HEADS, layers=TINY_TEXT_LAYERS)
    trunk_kwargs = None
    if vision.get("timm_model_name"):
        trunk_kwargs = dict(embed_dim=TINY_WIDTH, depth=TINY_VISION_LAYERS, num_heads=TINY_HEADS)
    else:
        vision.update(width=TINY_WIDTH, layers=TINY_VISION_LAYERS, head_width=TINY_WIDTH // TINY_HEADS)
    return dict(embed_dim=TINY_EMBED_DIM, vision_cfg=vision, text_cfg=text), trunk_kwargs


@contextlib.contextmanager
def _shrunk_timm(trunk_kwargs: dict[str, Any] | None) -> Iterator[None]:
    """While building, make ``timm.create_model`` add ``trunk_kwargs`` (EVA width, depth, heads).

    ``open_clip.timm_model.TimmModel`` calls ``timm.create_model(name, num_classes=..., global_pool=...)``
    with no way to pass architecture keywords; timm's EVA constructors let keywords override their
    defaults, so the tiny trunk is built by exactly open_clip's code path, only narrower.
    """
    if trunk_kwargs is None:
        yield
        return
    import timm

    create_model = timm.create_model
    timm.create_model = functools.partial(create_model, **trunk_kwargs)
    try:
        yield
    finally:
        timm.create_model = create_model


def _tag_preprocess(model: str) -> dict[str, Any] | None:
    """The preprocessing all of ``model``'s pretrained tags agree on, for a checkpoint file; else ``None``."""
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    keys = ("mean", "std", "interpolation", "resize_mode")
    found = set()
    for tag in list_pretrained_tags_by_model(model):
        merged = merge_preprocess_dict(PreprocessCfg(), get_pretrained_cfg(model, tag))
        found.add(tuple(tuple(merged[key]) if isinstance(merged[key], list) else merged[key] for key in keys))
    return dict(zip(keys, found.pop(), strict=True)) if len(found) == 1 else None


def _download_hint(tag_cfg: dict[str, Any]) -> str:
    """How to fetch a pretrained tag's weights by hand."""
    hub = tag_cfg.get("hf_hub", "")
    if hub:  # 'org/repo/' (open_clip's default file names) or 'org/repo/file'
        repo, filename = posixpath.split(hub)
        return f"`hf download {repo} {filename}`" if filename else f'`hf download {repo} --include "open_clip_*"`'
    return f"download {tag_cfg.get('url', 'the checkpoint')} and pass pretrained=/path/to/file"


def _reason(error: BaseException) -> str:
    """One short clause from an open_clip / huggingface_hub error (their messages nest and run long)."""
    text = str(error).strip() or type(error).__name__
    text = text.rsplit("Last error: ", 1)[-1]  # open_clip wraps the hub's error twice
    return text.splitlines()[0].split(". ")[0].rstrip(".")


def load_openclip_model(
    model: str,
    pretrained: str | None = None,
    tiny: bool = False,
    random_init: bool = False,
    cache_dir: str | None = None,
) -> nn.Module:
    """``open_clip.create_model`` with one clear line for every way the weights can be missing.

    ``pretrained``: a tag of ``model`` or a checkpoint file; with ``tiny`` only a file (loaded into
    the tiny architecture). Real weights are required unless ``tiny`` or ``random_init``: open_clip's
    silent random fallback is never taken.
    """
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    config = openclip_model_config(model)
    overrides: dict[str, Any] = {}
    trunk_kwargs = None
    if tiny:
        overrides, trunk_kwargs = tiny_model_config(model, config)
    if random_init and not tiny and pretrained is not None:
        raise NeckkitError("pass either pretrained or random_init, not both")

    tag_cfg: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if pretrained is not None:
        if _schema(model):
            raise NeckkitError(f"{model!r} brings its own weights; do not pass pretrained={pretrained!r}")
        tag_cfg = {} if tiny else get_pretrained_cfg(model, pretrained)
        if tag_cfg:
            if tag_cfg.get("quick_gelu", False) and not config.get("quick_gelu", False):
                options["force_quick_gelu"] = True  # e.g. ViT-B-16 with the 'openai' tag
        elif os.path.isfile(pretrained):
            options["force_preprocess_cfg"] = _tag_preprocess(model)
        elif tiny and get_pretrained_cfg(model, pretrained):
            raise NeckkitError(f"tiny=true takes a checkpoint file as pretrained, not the tag {pretrained!r}")
        elif os.sep in pretrained or "/" in pretrained or pretrained.endswith(CHECKPOINT_SUFFIXES):
            raise NeckkitError(f"open_clip checkpoint file not found: {pretrained}")
        else:
            tags = list_pretrained_tags_by_model(model)
            close = difflib.get_close_matches(pretrained, tags, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise NeckkitError(
                f"unknown pretrained tag {pretrained!r} for open_clip model {model!r}: {hint}"
                f"known tags: {', '.join(tags) or 'none'}; or pass a checkpoint file path"
            )
    elif not (tiny or random_init or _schema(model)):
        tags = list_pretrained_tags_by_model(model)
        raise NeckkitError(
            f"open_clip model {model!r} needs pretrained=<tag or checkpoint file> "
            f"(tags: {', '.join(tags) or 'none'}) or random_init=true"
        )

    wants_weights = pretrained is not None or (_schema(model) and not (tiny or random_init))
    try:
        with _shrunk_timm(trunk_kwargs):  # random init: under neckkit's seeded_init(seed)
            return open_clip.create_model(
                model,
                pretrained=pretrained,
                load_weights=wants_weights,
                require_pretrained=wants_weights,
                pretrained_text=False,  # never fetch a Hugging Face text tower's base weights
                cache_dir=cache_dir,
                **options,
                **overrides,
            ).eval()
    except NeckkitError:
        raise
    except Exception as error:  # download, unpickling and state-dict errors all end here
        detail = _reason(error)
        if tag_cfg:
            where = hub_location()
            raise NeckkitError(
                f"cannot load open_clip weights {model}/{pretrained} from {where}: {detail}. "
                f"Download them ({_download_hint(tag_cfg)}), pass pretrained=/path/to/checkpoint, or use random_init=true"
            ) from error
        if pretrained is not None:
            raise NeckkitError(f"cannot load open_clip checkpoint {pretrained} into {model!r}: {detail}") from error
        raise NeckkitError(f"cannot build open_clip model {model!r}: {detail}") from error


# -- the encoder --------------------------------------------------------------------------------


def _square(value: Any, what: str) -> int:
    first, second = (value, value) if isinstance(value, int) else tuple(value)
    if first != second:
        raise NeckkitError(f"only square {what} are supported, got {first}x{second}")
    return int(first)


class OpenClipEncoder(VisualEncoder):
    """An open_clip ``CLIP`` / ``CustomTextCLIP`` split into embed / blocks / head, with its text tower.

    ``model_name`` is the open_clip name the model was built from (it picks the tokenizer).
    The image tower is open_clip's ``VisionTransformer`` (``kind == "vit"``) or a ``TimmModel``
    around a timm ``Eva`` trunk (``kind == "eva"``).
    """

    def __init__(self, model: nn.Module, model_name: str, entry_layer: int = 2) -> None:
        super().__init__()
        from open_clip.timm_model import TimmModel
        from open_clip.transform import PreprocessCfg, merge_preprocess_dict
        from open_clip.transformer import VisionTransformer

        self.model = model.eval()
        self.model_name = model_name
        visual = model.visual
        if isinstance(visual, VisionTransformer):
            self.kind = "vit"
            self._check_vit(visual)
            self.width = visual.conv1.out_channels
            grid, size = visual.grid_size, visual.image_size
            self.num_layers = len(visual.transformer.resblocks)
            self.embed_dim = visual.proj.shape[1] if visual.proj is not None else visual.ln_post.normalized_shape[0]
        elif isinstance(visual, TimmModel):
            self.kind = "eva"
            trunk = self._check_eva(visual)
            self.width = trunk.embed_dim
            grid, size = trunk.patch_embed.grid_size, trunk.patch_embed.img_size
            self.num_layers = len(trunk.blocks)
            self.has_class_token = trunk.cls_token is not None
            projections = [module for module in visual.head.modules() if isinstance(module, nn.Linear)]
            if projections:  # TimmModel's own proj / mlp maps the trunk's output to embed_dim
                self.embed_dim = projections[-1].out_features
            else:  # the trunk's classifier head is the projection (EVA02-CLIP), or there is none
                self.embed_dim = trunk.head.out_features if isinstance(trunk.head, nn.Linear) else trunk.num_features
        else:
            raise NeckkitError(f"open_clip model {model_name!r} has a {type(visual).__name__} image tower; only vision transformers are supported")
        self.grid = _square(grid, "patch grids")
        cfg = merge_preprocess_dict(PreprocessCfg(), getattr(visual, "preprocess_cfg", {}) or {})
        self.image_size = _square(size, "input images")  # the tower's own size (a bare model has no preprocess_cfg)
        self.mean, self.std = tuple(cfg["mean"]), tuple(cfg["std"])
        if cfg["interpolation"] not in INTERPOLATIONS or cfg["resize_mode"] not in ("shortest", "squash"):
            raise NeckkitError(
                f"open_clip preprocessing interpolation={cfg['interpolation']!r}, resize_mode={cfg['resize_mode']!r} is not supported"
            )
        self.interpolation = INTERPOLATIONS[cfg["interpolation"]]
        self.resize_mode = cfg["resize_mode"]
        if isinstance(entry_layer, bool) or not isinstance(entry_layer, int) or not 0 <= entry_layer <= self.num_layers:
            raise NeckkitError(f"entry_layer must be an integer in 0..{self.num_layers}, got {entry_layer!r}")
        self.entry_layer = entry_layer
        self._tokenizer: Any = None

    @staticmethod
    def _check_vit(visual: nn.Module) -> None:
        if getattr(visual, "attn_pool", None) is not None:
            raise NeckkitError("open_clip towers with attentional pooling (CoCa) are not supported")
        if getattr(visual, "pool_type", "tok") not in ("tok", "avg"):
            raise NeckkitError(f"open_clip pool_type={visual.pool_type!r} is not supported; only 'tok' and 'avg'")

    @staticmethod
    def _check_eva(visual: nn.Module) -> nn.Module:
        from timm.models.eva import Eva

        trunk = visual.trunk
        if not isinstance(trunk, Eva):
            raise NeckkitError(f"open_clip timm tower {type(trunk).__name__} is not supported; only EVA trunks")
        if getattr(trunk, "rope_mixed", False):
            raise NeckkitError("EVA trunks with depth-dependent (mixed) rotary embeddings are not supported")
        return trunk

    @property
    def visual(self) -> nn.Module:
        return self.model.visual

    def preprocess(self, x01: Tensor) -> Tensor:
        if self.resize_mode == "squash":
            return resize_square_normalize(x01, self.image_size, self.mean, self.std, interpolation=self.interpolation)
        return resize_center_crop_normalize(x01, self.image_size, self.mean, self.std, interpolation=self.interpolation)

    def geometric_preprocess(self, x01: Tensor) -> Tensor:
        """``preprocess``'s resize and crop (squashed or centre-cropped, with the model's interpolation), in [0, 1]."""
        if self.resize_mode == "squash":
            return resize_square(x01, self.image_size, interpolation=self.interpolation)
        return resize_center_crop(x01, self.image_size, self.image_size, interpolation=self.interpolation)

    def view_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        """The whole image when squashed, else the centre square."""
        if self.resize_mode == "squash":
            return 0.0, 0.0, height, width
        return super().view_box(height, width)

    def embed(self, pixels: Tensor) -> Tensor:
        if self.kind == "eva":
            trunk = self.visual.trunk
            tokens, _ = trunk._pos_embed(trunk.patch_embed(pixels))  # rope is rebuilt in blocks()
            return trunk.norm_pre(tokens)
        visual = self.visual
        patches = visual.conv1(pixels).flatten(2).transpose(1, 2)  # [B, grid*grid, width]
        cls = visual.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        tokens = torch.cat([cls, patches], dim=1) + visual.positional_embedding.to(patches.dtype)
        return visual.ln_pre(visual.patch_dropout(tokens))

    def _rope(self) -> Tensor | None:
        """The EVA trunk's rotary embedding for the default grid, as its ``_pos_embed`` builds it."""
        trunk = self.visual.trunk
        if trunk.rope is None:
            return None
        if getattr(trunk, "dynamic_img_size", False) or not hasattr(trunk.rope, "feat_shape"):
            return trunk.rope.get_embed(shape=trunk.patch_embed.grid_size)
        return trunk.rope.get_embed()

    def blocks(self, tokens: Tensor, start: int, end: int) -> Tensor:
        if not 0 <= start <= end <= self.num_layers:
            raise NeckkitError(f"{self.model_name} has blocks 0..{self.num_layers}; got start={start}, end={end}")
        if start == end:
            return tokens
        if self.kind == "eva":
            rope = self._rope()
            for block in self.visual.trunk.blocks[start:end]:
                tokens = block(tokens, rope=rope)
            return tokens
        transformer = self.visual.transformer
        batch_first = getattr(transformer, "batch_first", False)
        tokens = tokens if batch_first else tokens.transpose(0, 1)
        for block in transformer.resblocks[start:end]:
            tokens = block(tokens, attn_mask=None)
        return tokens if batch_first else tokens.transpose(0, 1)

    def head(self, tokens: Tensor) -> Tensor:
        if self.kind == "eva":
            trunk = self.visual.trunk
            return self.visual.head(trunk.forward_head(trunk.norm(tokens)))  # [B, embed_dim]
        visual = self.visual
        if getattr(visual, "final_ln_after_pool", False):
            pooled = visual.ln_post(self._pool(tokens))
        else:
            pooled = self._pool(visual.ln_post(tokens))
        return pooled @ visual.proj if visual.proj is not None else pooled  # [B, embed_dim]

    def _pool(self, tokens: Tensor) -> Tensor:
        return tokens[:, 1:].mean(dim=1) if getattr(self.visual, "pool_type", "tok") == "avg" else tokens[:, 0]

    def text_tower(self) -> nn.Module:
        """``model.text`` (``CustomTextCLIP``), or CLIP's text modules and parameters under their own names."""
        text = getattr(self.model, "text", None)
        if isinstance(text, nn.Module):
            return text
        tower = nn.Module()  # registers the model's own tensors (no copies) under CLIP's names
        for name in ("transformer", "token_embedding", "positional_embedding", "ln_final", "text_projection"):
            if getattr(self.model, name, None) is not None:
                setattr(tower, name, getattr(self.model, name))
        return tower

    def tokenizer(self) -> Any:
        """open_clip's tokenizer for ``model_name``, at the model's context length."""
        if self._tokenizer is None:
            import open_clip

            try:
                self._tokenizer = open_clip.get_tokenizer(self.model_name, context_length=self.model.context_length)
            except Exception as error:
                raise NeckkitError(f"cannot load the tokenizer of open_clip model {self.model_name!r}: {_reason(error)}") from error
        return self._tokenizer

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> Tensor:
        """Projected, unnormalised text embeddings [N, embed_dim] (``model.encode_text``)."""
        device = next(self.model.parameters()).device
        return self.model.encode_text(self.tokenizer()(texts).to(device), normalize=False)  # CoCa defaults to True


# -- factories and registration -----------------------------------------------------------------


def build_openclip(
    model: str | None = None,
    pretrained: str | None = None,
    tiny: bool = False,
    random_init: bool = False,
    entry_layer: int = 2,
    cache_dir: str | None = None,
) -> OpenClipEncoder:
    """Factory for ``openclip``: any open_clip ViT (or EVA) by name.

    ``model``: an open_clip model name (``ViT-B-16``), or ``hf-hub:org/repo`` / ``local-dir:/path``
    which bring their own weights. ``pretrained``: a tag of that model (``laion2b_s34b_b88k``) or a
    checkpoint file; required for the real model. ``tiny=True``: the model's family with tiny
    widths, random weights, or the weights of a checkpoint file given as ``pretrained`` (e.g. one
    saved from another tiny build); without ``model`` it is ``ViT-B-16``'s family.
    ``random_init=True``: the real-size architecture, random weights. ``cache_dir``: where
    open_clip caches downloads (default: the Hugging Face cache).
    """
    if not model:
        if not tiny:
            raise NeckkitError(OPENCLIP_USAGE)
        model = TINY_DEFAULT_MODEL
    network = load_openclip_model(model, pretrained, tiny=tiny, random_init=random_init, cache_dir=cache_dir)
    return OpenClipEncoder(network, model, entry_layer=entry_layer)


def build_eva02_l(
    pretrained: str | None = None,
    tiny: bool = False,
    random_init: bool = False,
    entry_layer: int = 2,
    cache_dir: str | None = None,
) -> OpenClipEncoder:
    """Factory for ``eva02-l``: EVA02-CLIP ViT-L/14, default tag ``merged2b_s4b_b131k`` (or a checkpoint file)."""
    if pretrained is None and not (tiny or random_init):
        pretrained = EVA02_L_PRETRAINED
    return build_openclip(EVA02_L_MODEL, pretrained, tiny=tiny, random_init=random_init, entry_layer=entry_layer, cache_dir=cache_dir)
