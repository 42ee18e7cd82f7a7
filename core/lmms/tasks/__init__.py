"""lmms-eval tasks over neckkit's bundled photos (pass this folder to lmms-eval as ``--include_path``)."""

from __future__ import annotations

from pathlib import Path

TASK_DIR = Path(__file__).resolve().parent
LOCAL_TASKS = ("neckkit_yesno", "neckkit_caption")
