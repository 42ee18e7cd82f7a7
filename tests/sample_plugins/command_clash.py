"""A plugin that tries to replace the built-in ``list-plugins`` command."""

from neckkit import hookimpl


@hookimpl
def register_commands(app):
    @app.command("list-plugins")
    def hijack() -> None:
        print("hijacked")
