"""Built-in MLLM plugin: registers every MLLM in this package (one module per MLLM).

``llava``: LLaVA-1.5 through transformers' ``LlavaForConditionalGeneration``, reading ``clip-l-336``;
``blip2``: BLIP-2 through transformers; ``qwen_vl``: Qwen3-VL and Qwen2.5-VL at native resolution,
reading ``qwen3-vl-vit`` / ``qwen2.5-vl-vit``. The factories are lazy, so ``neckkit list-plugins``
lists them without importing torch or transformers.
"""

from __future__ import annotations

from neckkit.plugin_api import RegisterCallback, hookimpl, lazy_factory

ENTRY_LAYER_HELP = "vision-encoder block where neck tokens enter (default 2)"
TINY_HELP = "tiny widths, random init, offline tokenizer (tests, quick start)"
DTYPE_HELP = "weights dtype, e.g. bfloat16 or float16 (default: the checkpoint's; tiny and random: float32)"
DEVICE_MAP_HELP = "passed to from_pretrained, e.g. auto or cuda:0 (tiny and random: one device)"


@hookimpl
def register_mllms(register: RegisterCallback) -> None:
    # -- llava-1.5 (plugins/mllms/llava.py) --
    register(
        "llava-1.5",
        lazy_factory("neckkit.plugins.mllms.llava:build_llava"),
        description="LLaVA-1.5 (transformers LlavaForConditionalGeneration) reading clip-l-336's second-to-last layer",
        tiny=True,
        pretrained=("llava-hf/llava-1.5-7b-hf",),
        options={
            "weights": "hub id or local folder with model and processor (default llava-hf/llava-1.5-7b-hf)",
            "tiny": TINY_HELP,
            "random_init": "real-size LLaVA-1.5-7B architecture, random weights, offline tokenizer",
            "entry_layer": ENTRY_LAYER_HELP,
            "dtype": DTYPE_HELP,
            "device_map": DEVICE_MAP_HELP,
        },
    )
    # -- blip2 (plugins/mllms/blip2.py) --
    register(
        "blip2",
        lazy_factory("neckkit.plugins.mllms.blip2:build_blip2"),
        description="BLIP-2 OPT-2.7b (transformers Blip2ForConditionalGeneration) reading eva-g-blip2 through its Q-Former",
        tiny=True,
        pretrained=("Salesforce/blip2-opt-2.7b",),
        options={
            "weights": "hub id or local folder with model and processor (default Salesforce/blip2-opt-2.7b)",
            "tiny": TINY_HELP + "; vision weights equal eva-g-blip2 --tiny",
            "random_init": "real-size BLIP-2 OPT-2.7b architecture, random weights, offline tokenizer",
            "entry_layer": ENTRY_LAYER_HELP,
            "dtype": DTYPE_HELP,
            "device_map": DEVICE_MAP_HELP,
        },
    )
    # -- qwen3-vl, qwen2.5-vl (plugins/mllms/qwen_vl.py) --
    for name, family, class_name, encoder, sizes in (
        ("qwen3-vl", "Qwen3-VL", "Qwen3VLForConditionalGeneration", "qwen3-vl-vit", ("2b", "4b", "8b")),
        ("qwen2.5-vl", "Qwen2.5-VL", "Qwen2_5_VLForConditionalGeneration", "qwen2.5-vl-vit", ("3b", "7b")),
    ):
        hub_ids = tuple(f"Qwen/{family}-{size.upper()}-Instruct" for size in sizes)
        factory = "build_qwen3_vl" if name == "qwen3-vl" else "build_qwen25_vl"
        register(
            name,
            lazy_factory(f"neckkit.plugins.mllms.qwen_vl:{factory}"),
            description=f"{family} Instruct (transformers {class_name}) at native resolution, reading {encoder}",
            tiny=True,
            pretrained=hub_ids,
            options={
                "size": f"{', '.join(sizes)}: the default weights and the random_init architecture (default {sizes[0]})",
                "weights": f"hub id or local folder with model and processor (default {hub_ids[0]})",
                "tiny": TINY_HELP + f"; vision weights equal {encoder} --tiny",
                "random_init": f"real-size {family} architecture of size, random weights, offline tokenizer",
                "entry_layer": ENTRY_LAYER_HELP,
                "dtype": DTYPE_HELP,
                "device_map": DEVICE_MAP_HELP,
            },
        )
