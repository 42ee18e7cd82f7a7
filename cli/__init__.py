"""The ``neckkit`` command line (typer; one module per command)."""

from __future__ import annotations

import gc
import sys


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: load plugins (in every process, torchrun workers too), run."""
    import warnings

    # compressai 1.2.8 scripts helpers with torch.jit at import: a warning users cannot act on.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    from neckkit.cli.app import build_app
    from neckkit.host.manager import get_host

    app = build_app(get_host())
    try:
        app(args=sys.argv[1:] if argv is None else argv, prog_name="neckkit")
    finally:
        # The interpreter's last garbage collection walks every object torch and its friends created: 1.4 s
        # of a 6 s `compress` on 2 cores. Frozen objects are skipped; atexit handlers and module cleanup run.
        gc.freeze()


__all__ = ["main"]
