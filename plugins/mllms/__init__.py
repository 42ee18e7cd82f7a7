"""Built-in mllm plugins (`neckkit.plugins.mllms.<name>`, one module per mllm)."""
