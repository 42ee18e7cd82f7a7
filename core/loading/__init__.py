"""Reading weights: fingerprints and seeded init, Hugging Face sources, foreign codec checkpoints.

- :mod:`neckkit.loading.weights`: ``fingerprint``, ``seeded_init``, ``state_dict_mismatches``;
- :mod:`neckkit.loading.hub`: ``WeightsSource`` (local folder or hub id, one-line offline errors);
- :mod:`neckkit.loading.shards`: ``read_submodule_tensors`` (one sub-module's tensors from safetensors shards);
- :mod:`neckkit.loading.codec_weights`: ``read_checkpoint`` (``weights_only``) and state-dict clean-up;
- :mod:`neckkit.loading.rebuild_tables`: rebuilding a codec's entropy-coder tables from its weights.
"""
