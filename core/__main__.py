"""``python -m neckkit`` (used by torchrun) runs the CLI."""

from neckkit.cli import main

if __name__ == "__main__":
    main()
