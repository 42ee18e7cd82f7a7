"""The hooks: what neckkit calls to learn about this plugin's components.

Everything comes from :mod:`neckkit.plugin_api`, the stable API for plugins. The factories are
registered with ``lazy_factory``, so ``neckkit list-plugins`` never imports torch or the models.
"""

from __future__ import annotations

from neckkit.plugin_api import RegisterCallback, hookimpl, lazy_factory


@hookimpl
def register_codecs(register: RegisterCallback) -> None:
    register(
        "toy-codec",
        lazy_factory("neckkit_toy.codec:build_codec"),
        description="Toy codec: strided convolutions and a factorized entropy model",
        aliases=["toy"],
        tiny=True,
        tiny_weights=True,  # tiny=True with weights=<file>: a tiny toy trained elsewhere
        scenarios=("d1", "d2", "d3"),  # d3: ToyCodec.synthesis_modules() names g_s
        options={
            "channels": "latent channels (default 8)",
            "random_init": "real-size transforms, random weights",
            "weights": "state-dict file of a toy-codec (e.g. a d2/d3 run's codec weights)",
        },
    )


@hookimpl
def register_encoders(register: RegisterCallback) -> None:
    register(
        "toy-vit",
        lazy_factory("neckkit_toy.encoder:ToyViT"),
        description="Toy vision transformer with a class token",
        tiny=True,
    )


@hookimpl
def register_mllms(register: RegisterCallback) -> None:
    register(
        "toy-mllm",
        lazy_factory("neckkit_toy.mllm:ToyMLLM"),
        description="Toy MLLM that reads toy-vit's second-to-last layer",
        tiny=True,
    )


@hookimpl
def register_commands(app) -> None:  # app: typer.Typer
    import typer

    @app.command("toy-hello")
    def toy_hello(name: str = typer.Argument("world")) -> None:
        """Say hello (an example of a plugin command)."""
        typer.echo(f"hello {name} from neckkit-toy")
