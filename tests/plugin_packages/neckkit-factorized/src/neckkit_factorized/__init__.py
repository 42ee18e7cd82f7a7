"""A third-party neckkit plugin: CompressAI's bmshj2018-factorized codec (see plugin.py for the hook)."""
