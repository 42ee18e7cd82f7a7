"""metrics.jsonl keeps its history whatever happens while a resumed run rewrites it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neckkit.training.metrics_log import METRICS_FILE, MetricsLog, read_metrics


def _history(run: Path, steps: int) -> list[dict]:
    records = [{"step": step, "kind": "train", "loss": 1.0 / step} for step in range(1, steps + 1)]
    (run / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return records


def test_resume_keeps_the_steps_the_checkpoint_holds_and_appends(tmp_path: Path) -> None:
    records = _history(tmp_path, 18)
    log = MetricsLog(tmp_path, resume_step=9, tensorboard=False)
    log.log(10, "train", {"loss": 0.5})
    log.close()
    assert read_metrics(tmp_path / METRICS_FILE) == [*records[:9], {"step": 10, "kind": "train", "loss": 0.5}]


def test_a_crash_while_rewriting_leaves_the_whole_old_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = _history(tmp_path, 18)

    def torn_write(self: Path, text: str, *args: object, **kwargs: object) -> int:
        with self.open("w", encoding="utf-8") as handle:
            handle.write(text[: len(text) // 3])  # the process dies a third of the way through
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(Path, "write_text", torn_write)
    with pytest.raises(KeyboardInterrupt):
        MetricsLog(tmp_path, resume_step=9, tensorboard=False)
    monkeypatch.undo()
    assert read_metrics(tmp_path / METRICS_FILE) == records  # 18 lines, not 3 and a torn one
    assert sorted(p.name for p in tmp_path.iterdir()) == [METRICS_FILE]  # no temporary file left
