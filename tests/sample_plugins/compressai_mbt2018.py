"""A third-party codec on neckkit's CompressAI adapter: CompressAI's mbt2018 (Minnen et al. 2018).

Joint autoregressive and hierarchical priors: the adapter replays the serial 5x5 context model exactly,
so ``analyze(x).y_hat`` is the decoder's, bit for bit; likelihoods, entropy tables and the zoo's weights
by quality (one line when they are not cached and cannot be downloaded) come with it.
"""

from neckkit.plugin_api import COMPRESSAI_OPTIONS, RegisterCallback, compressai_factory, hookimpl


@hookimpl
def register_codecs(register: RegisterCallback) -> None:
    register(
        "mbt2018",
        compressai_factory("mbt2018", tiny_sizes=(16, 32)),
        description="Minnen et al. 2018 joint autoregressive and hierarchical priors (CompressAI zoo)",
        tiny=True,
        tiny_weights=True,
        qualities=tuple(range(1, 9)),
        scenarios=("d1", "d2", "d3"),
        options=COMPRESSAI_OPTIONS,
    )
