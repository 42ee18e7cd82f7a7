"""The hooks: what neckkit calls to learn about this plugin's components."""

from __future__ import annotations

from neckkit import hookimpl


@hookimpl
def register_codecs(register):
    from neckkit_toy.codec import ToyCodec  # import inside: listing plugins stays fast

    register(
        "toy-codec",
        ToyCodec,
        description="Toy codec: strided convolutions and a factorized entropy model",
        aliases=["toy"],
        tiny=True,
        options={"channels": "latent channels", "tiny": "smaller transforms"},
    )


@hookimpl
def register_encoders(register):
    from neckkit_toy.encoder import ToyViT

    register("toy-vit", ToyViT, description="Toy vision transformer with a class token", tiny=True)


@hookimpl
def register_mllms(register):
    from neckkit_toy.mllm import ToyMLLM

    register("toy-mllm", ToyMLLM, description="Toy MLLM that reads toy-vit's second-to-last layer", tiny=True)


@hookimpl
def register_commands(app):
    import typer

    @app.command("toy-hello")
    def toy_hello(name: str = typer.Argument("world")) -> None:
        """Say hello (an example of a plugin command)."""
        typer.echo(f"hello {name} from neckkit-toy")
