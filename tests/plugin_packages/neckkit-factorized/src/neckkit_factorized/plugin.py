"""The hook: one ``register`` call. The model lives in codec.py and is imported only when built."""

from __future__ import annotations

from neckkit.plugin_api import RegisterCallback, hookimpl, lazy_factory


@hookimpl
def register_codecs(register: RegisterCallback) -> None:
    register(
        "bmshj2018-factorized",
        lazy_factory("neckkit_factorized.codec:build_factorized"),
        description="Balle et al. 2018 factorized prior (CompressAI FactorizedPrior), one entropy bottleneck",
        tiny=True,
        scenarios=("d1", "d2", "d3"),
        options={
            "weights": "CompressAI-style state-dict file of a FactorizedPrior (sizes read from it)",
            "random_init": "real-size architecture (N=128, M=192), random weights",
        },
    )
