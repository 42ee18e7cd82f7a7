"""Built-in encoder plugins (`neckkit.plugins.encoders.<name>`, one module per encoder)."""
