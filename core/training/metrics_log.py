"""Training metrics: a JSONL file (one object per logged step) and TensorBoard when installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neckkit.checkpoint_folders import METRICS_FILE

TENSORBOARD_DIR = "tensorboard"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file, in order (a torn last line is ignored)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


class MetricsLog:
    """Appends ``{"step": ..., "kind": "train"|"val", ...}`` lines; on resume drops lines past the step."""

    def __init__(self, run_dir: Path, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.path = run_dir / METRICS_FILE
        if resume_step is None:
            self._replace([])
        elif self.path.exists():  # the killed run may have logged steps the checkpoint does not hold
            self._replace([record for record in read_metrics(self.path) if record.get("step", 0) <= resume_step])
        self._file = self.path.open("a", encoding="utf-8")
        self._writer = _tensorboard_writer(run_dir / TENSORBOARD_DIR) if tensorboard else None

    def _replace(self, records: list[dict[str, Any]]) -> None:
        """Rewrite the file atomically: a kill during the rewrite leaves the old history whole, never half."""
        from neckkit.files import atomic_path

        with atomic_path(self.path) as temporary:
            temporary.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")

    def log(self, step: int, kind: str, values: dict[str, Any]) -> None:
        record = {"step": step, "kind": kind, **values}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def _tensorboard_writer(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(folder))
