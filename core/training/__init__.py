"""Training a transform-neck: data, the surrogate loss, scenarios d1/d2/d3, the d1 cache, the trainer.

- :mod:`~neckkit.training.data`, :mod:`~neckkit.training.batches`: images and the per-step plan;
- :mod:`~neckkit.training.rate_levels`: one neck over a variable-rate codec's levels (a level per step);
- :mod:`~neckkit.training.neck_path`: codec analysis -> neck -> encoder (student) and the teacher;
- :mod:`~neckkit.training.losses`, :mod:`~neckkit.training.scenarios`, :mod:`~neckkit.training.zero_shot`;
- :mod:`~neckkit.training.feature_cache`: memory-mapped d1 latents and teacher embeddings,
  :mod:`~neckkit.training.feature_cache_keys`: their keys (data fingerprint, folder name),
  :mod:`~neckkit.training.cache_files`: their files written without a bus error on a full disk;
- :mod:`~neckkit.training.trainer`: :class:`Trainer`, the training loop;
  :mod:`~neckkit.training.checkpointing`: the run folder, checkpoints and exact resume;
  :mod:`~neckkit.training.run_lock`: one process owns a run folder;
  :mod:`~neckkit.training.validation`: held-out metrics against the Reconstruction baseline;
  :mod:`~neckkit.training.distributed`: torchrun;
  :mod:`~neckkit.training.metrics_log`: JSONL and TensorBoard.
"""
