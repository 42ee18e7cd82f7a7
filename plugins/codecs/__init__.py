"""Built-in codec plugin: registers every codec in this package.

``elic``: ELIC (CompressAI's ``Elic2022Chandelier``, the re-implementation the paper
used, or ``Elic2022Official``) and CompressAI zoo models; ``tic``: TIC's hyperprior variant on
Swin-transformer stages. Variable-rate codecs (rate levels, ``at_level``): CompressAI's three ``*-vbr``
zoo models, and ``elic-vbr`` / ``tic-vbr`` (QVRF gains on ELIC and TIC). Traditional anchors without a
latent (:mod:`neckkit.plugins.codecs.traditional`): ``jpeg``, ``webp``, ``avif``, ``heif``, ``jxl``, ``vtm``.
The factories are lazy, so listing codecs never imports torch.
"""

from __future__ import annotations

from neckkit.plugin_api import COMPRESSAI_OPTIONS, RegisterCallback, compressai_factory, hookimpl, lazy_factory
from neckkit.plugins.codecs.traditional import register_traditional_codecs

TINY_HELP = "tiny widths, random init (tests, quick start)"
WEIGHTS_HELP = COMPRESSAI_OPTIONS["weights"]
RANDOM_HELP = "real-size architecture, random weights"
# Every built-in codec names its synthesis transform (Codec.synthesis_modules), so all train d1, d2 and d3.
SCENARIOS = ("d1", "d2", "d3")
# d2/d3 would train the codec at one lambda; a variable-rate codec trains with neckkit train-codec instead.
VBR_SCENARIOS = ("d1",)
ZOO = {
    # name: (description, qualities with CompressAI pretrained weights, tiny sizes (N, M) or (N,))
    "bmshj2018-hyperprior": ("Ballé et al. 2018 scale hyperprior (CompressAI zoo)", tuple(range(1, 9)), (16, 32)),
    "mbt2018-mean": ("Minnen et al. 2018 mean-scale hyperprior (CompressAI zoo)", tuple(range(1, 9)), (16, 32)),
    "cheng2020-anchor": (
        "Cheng et al. 2020 anchor, autoregressive context (CompressAI zoo)",
        tuple(range(1, 7)),
        (16,),
    ),
}
VBR_ZOO = {
    # name: description (CompressAI's variable-rate MSE weights: one file, every level)
    "bmshj2018-hyperprior-vbr": "Ballé et al. 2018 scale hyperprior, variable rate (Kamisli et al. 2024, CompressAI "
    "zoo): 8 levels, continuous",
    "mbt2018-mean-vbr": "Minnen et al. 2018 mean-scale hyperprior, variable rate (Kamisli et al. 2024, CompressAI "
    "zoo): 8 levels, continuous",
    "mbt2018-vbr": "Minnen et al. 2018 autoregressive, variable rate (Kamisli et al. 2024, CompressAI zoo): 8 levels, "
    "continuous",
}
VBR_ZOO_OPTIONS = {
    "weights": COMPRESSAI_OPTIONS["weights"] + "; default: CompressAI's MSE variable-rate file (torch hub cache)",
    "tiny": "tiny widths (N=16, M=32), random init; with weights, loads them into the tiny model",
    "random_init": "real-size architecture (N=192, M=320), random weights",
}
ANCHOR_HELP = "level a fixed-rate checkpoint codes at with gain 1 (default: the top level)"
# The refusals without weights, shared with the factories (neckkit.plugins.codecs.qvrf).
ELIC_VBR_NEEDS = (
    "needs weights: pass weights=<file> (a fixed-rate ELIC checkpoint, e.g. the paper's, or an elic-vbr file), "
    "or tiny=True / random_init=True for random weights"
)
TIC_VBR_NEEDS = (
    "needs weights: pass weights=<file> (a TransTIC base_codec_<q>.pth.tar, release v1.0 of NYCU-MAPL/TransTIC, or a "
    "tic-vbr file), or tiny=True / random_init=True for random weights"
)


@hookimpl
def register_codecs(register: RegisterCallback) -> None:
    register(
        "elic",
        lazy_factory("neckkit.plugins.codecs.elic:build_elic"),
        description="ELIC (He et al. 2022), CompressAI's Elic2022Chandelier as in the paper; N=192, M=320",
        tiny=True,
        tiny_weights=True,  # weights=<file> with tiny=True: a tiny ELIC trained elsewhere
        weights_required="needs weights: CompressAI publishes none; pass weights=<file> (e.g. the paper's released "
        "checkpoint), or tiny=True / random_init=True for random weights",
        scenarios=SCENARIOS,
        options={
            "weights": WEIGHTS_HELP + "; the paper's released d1/d2/d3 files are read too",
            "variant": "chandelier (default, the paper's) or official (Elic2022Official)",
            "tiny": TINY_HELP + "; with weights, loads them into the tiny model",
            "random_init": RANDOM_HELP,
        },
    )
    register(
        "tic",
        lazy_factory("neckkit.plugins.codecs.tic:build_tic"),
        description="TIC hyperprior (Lu et al. 2022, TransTIC's TIC_hp): Swin stages, N=128, M=192",
        tiny=True,
        qualities=(1, 2, 3, 4),
        weights_required="needs weights: pass a TransTIC base_codec_<q>.pth.tar file (release v1.0 of "
        "NYCU-MAPL/TransTIC) as weights=<file>, or tiny=True (tiny random model) or random_init=True (real size, "
        "random weights)",
        scenarios=SCENARIOS,
        options={
            "weights": "TransTIC base_codec_<q>.pth.tar or another TIC_hp state dict file",
            "quality": "1-4: which TransTIC base codec the weights file is (for messages and metadata)",
            "tiny": TINY_HELP,
            "random_init": RANDOM_HELP,
        },
    )
    for name, (description, qualities, tiny_sizes) in ZOO.items():
        register(
            name,
            compressai_factory(name, tiny_sizes),  # the CompressAI adapter, as a third-party codec would
            description=description,
            tiny=True,
            tiny_weights=True,  # weights=<file> with tiny=True: a tiny zoo model trained elsewhere
            qualities=qualities,
            scenarios=SCENARIOS,
            options=COMPRESSAI_OPTIONS,
        )
    for name, description in VBR_ZOO.items():
        register(
            name,
            lazy_factory("neckkit.plugins.codecs.vbr_zoo:build_compressai_vbr", model=name),
            description=description,
            tiny=True,
            tiny_weights=True,  # weights=<file> with tiny=True: a tiny model trained elsewhere
            scenarios=VBR_SCENARIOS,
            options=VBR_ZOO_OPTIONS,
        )
    register(
        "elic-vbr",
        lazy_factory("neckkit.plugins.codecs.qvrf:build_elic_vbr"),
        description="ELIC with QVRF quantisation-regulator gains (Tong et al. 2023): 8 levels, continuous",
        tiny=True,
        tiny_weights=True,
        weights_required=ELIC_VBR_NEEDS,
        scenarios=VBR_SCENARIOS,
        options={
            "weights": "a fixed-rate ELIC checkpoint (as elic reads it; gains start at sqrt(lambda ratios)) or an "
            "elic-vbr file (its own gains)",
            "variant": "chandelier (default, the paper's) or official (Elic2022Official)",
            "tiny": TINY_HELP + "; with weights, loads them into the tiny model",
            "random_init": RANDOM_HELP,
            "anchor_level": ANCHOR_HELP,
        },
    )
    register(
        "tic-vbr",
        lazy_factory("neckkit.plugins.codecs.qvrf:build_tic_vbr"),
        description="TIC hyperprior with QVRF quantisation-regulator gains (Tong et al. 2023): 8 levels, continuous",
        tiny=True,
        tiny_weights=True,
        qualities=(1, 2, 3, 4),
        weights_required=TIC_VBR_NEEDS,
        scenarios=VBR_SCENARIOS,
        options={
            "weights": "a TransTIC base_codec_<q>.pth.tar or other TIC_hp state dict, or a tic-vbr file (its own gains)",
            "quality": "1-4: which TransTIC base codec the weights file is; anchors it at the level of its lambda",
            "tiny": TINY_HELP + "; with weights, loads them into the tiny model",
            "random_init": RANDOM_HELP,
            "anchor_level": ANCHOR_HELP + ", or quality's level",
        },
    )
    register_traditional_codecs(register)
