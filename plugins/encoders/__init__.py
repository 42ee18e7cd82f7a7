"""Built-in visual-encoder plugin: registers every encoder in this package.

Each encoder family lives in its own module (``clip``: transformers CLIP ViT-L/14; ``openclip``:
any open_clip ViT or EVA tower, EVA02-L among them; ``blip2``: BLIP-2's EVA ViT-g through
transformers; ``qwen_vl``: the Qwen3-VL and Qwen2.5-VL towers at native resolution). The factories
are lazy, so ``neckkit list-plugins`` lists them without importing torch or transformers.
"""

from __future__ import annotations

from neckkit.plugin_api import RegisterCallback, hookimpl, lazy_factory

ENTRY_LAYER_HELP = "block where neck tokens enter (default 2)"
TINY_HELP = "tiny widths, random init (tests, quick start)"
DOUBLE_LN_POST_HELP = (
    "the paper's head: final LayerNorm applied twice before the projection, as the released necks were trained "
    "(default false: stock CLIP)"
)


@hookimpl
def register_encoders(register: RegisterCallback) -> None:
    for name, hub_id, size in (
        ("clip-l", "openai/clip-vit-large-patch14", 224),
        ("clip-l-336", "openai/clip-vit-large-patch14-336", 336),
    ):
        register(
            name,
            lazy_factory("neckkit.plugins.encoders.clip:build_clip", variant=name),
            description=f"OpenAI CLIP ViT-L/14 at {size} px (transformers), with text tower",
            tiny=True,
            pretrained=(hub_id,),
            options={
                "weights": f"hub id or local folder (default {hub_id})",
                "tiny": TINY_HELP,
                "random_init": "real-size architecture, random weights",
                "entry_layer": ENTRY_LAYER_HELP,
                "double_ln_post": DOUBLE_LN_POST_HELP,
            },
        )
    register(
        "eva-g-blip2",
        lazy_factory("neckkit.plugins.encoders.blip2:build_blip2_vision"),
        description="BLIP-2 EVA ViT-g/14 at 224 px (transformers Blip2VisionModel), no text tower",
        tiny=True,
        pretrained=("Salesforce/blip2-opt-2.7b",),
        options={
            "weights": "hub id or local folder, full BLIP-2 or bare vision model (default Salesforce/blip2-opt-2.7b)",
            "tiny": TINY_HELP,
            "random_init": "real-size ViT-g, random weights",
            "entry_layer": ENTRY_LAYER_HELP,
        },
    )
    open_clip_options = {
        "tiny": TINY_HELP + "; with pretrained=<file>, loads it into the tiny model",
        "random_init": "real-size architecture, random weights",
        "entry_layer": ENTRY_LAYER_HELP,
        "cache_dir": "where open_clip caches downloaded weights (default: the Hugging Face cache)",
    }
    register(
        "eva02-l",
        lazy_factory("neckkit.plugins.encoders.openclip:build_eva02_l"),
        description="EVA02-CLIP ViT-L/14 at 224 px (open_clip, timm EVA trunk), with text tower",
        tiny=True,
        tiny_weights=True,  # pretrained=<file> with tiny=True: a tiny tower trained elsewhere
        pretrained=("merged2b_s4b_b131k",),
        options={"pretrained": "open_clip tag or local checkpoint file (default merged2b_s4b_b131k)", **open_clip_options},
    )
    register(
        "openclip",
        lazy_factory("neckkit.plugins.encoders.openclip:build_openclip"),
        description="Any open_clip ViT or EVA by model name and pretrained tag, with text tower",
        tiny=True,
        tiny_weights=True,
        options={
            "model": "open_clip model name, e.g. ViT-B-16 (required)",
            "pretrained": "open_clip tag (e.g. laion2b_s34b_b88k) or local checkpoint file",
            **open_clip_options,
        },
    )
    # -- native resolution: the token grid follows each image's size (plugins/encoders/qwen_vl.py) --
    for name, family, class_name, factory, sizes in (
        ("qwen3-vl-vit", "Qwen3-VL", "Qwen3VLVisionModel", "build_qwen3_vl_vision", ("2b", "4b", "8b")),
        ("qwen2.5-vl-vit", "Qwen2.5-VL", "Qwen2_5_VisionTransformerPretrainedModel", "build_qwen25_vl_vision",
         ("3b", "7b")),
    ):
        hub_ids = tuple(f"Qwen/{family}-{size.upper()}-Instruct" for size in sizes)
        features = "merger + DeepStack features" if family == "Qwen3-VL" else "merger features"
        register(
            name,
            lazy_factory(f"neckkit.plugins.encoders.qwen_vl:{factory}"),
            description=f"{family} vision tower at native resolution (transformers {class_name}), {features}, "
            "no text tower",
            tiny=True,
            pretrained=hub_ids,
            options={
                "size": f"{', '.join(sizes)}: the default weights and the random_init architecture (default {sizes[0]})",
                "weights": f"hub id or local folder, full {family} or bare vision tower (default {hub_ids[0]})",
                "tiny": TINY_HELP,
                "random_init": f"real-size {family} tower of size, random weights",
                "entry_layer": ENTRY_LAYER_HELP,
            },
        )
