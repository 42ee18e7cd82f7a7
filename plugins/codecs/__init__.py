"""Built-in codec plugins (`neckkit.plugins.codecs.<name>`, one module per codec)."""
