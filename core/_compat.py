"""Import names from before core/ was grouped by concept, kept working for plugins and users.

``neckkit.registry`` was a flat module and is now ``neckkit.host.registry``; third-party packages
import the old names, so each old name is an alias of the same module object (``neckkit.registry
is neckkit.host.registry``): attributes, monkeypatching and ``isinstance`` checks behave as before.
``neckkit.bitstream``, ``neckkit.neck`` and ``neckkit.evaluation`` became packages that re-export
the old modules' public names themselves.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

# old module -> where it lives now
MOVED_MODULES: dict[str, str] = {
    "neckkit.hookspecs": "neckkit.host.hookspecs",
    "neckkit.plugin_manager": "neckkit.host.manager",
    "neckkit.registry": "neckkit.host.registry",
    "neckkit.weights": "neckkit.loading.weights",
    "neckkit.hub": "neckkit.loading.hub",
    "neckkit.codec_weights": "neckkit.loading.codec_weights",
    "neckkit.preprocess": "neckkit.interfaces.preprocess",
    "neckkit.checkpoint": "neckkit.neck.checkpoint",
    "neckkit.paper_release": "neckkit.neck.paper_release",
    "neckkit.losses": "neckkit.training.losses",
    "neckkit.scenarios": "neckkit.training.scenarios",
    "neckkit.trainer": "neckkit.training.trainer",
    "neckkit.feature_cache": "neckkit.training.feature_cache",
    "neckkit.data": "neckkit.training.data",
    "neckkit.batches": "neckkit.training.batches",
    "neckkit.distributed": "neckkit.training.distributed",
    "neckkit.metrics_log": "neckkit.training.metrics_log",
    "neckkit.neck_path": "neckkit.training.neck_path",
    "neckkit.zero_shot": "neckkit.training.zero_shot",
    "neckkit.padding": "neckkit.bitstream.padding",
    "neckkit.images": "neckkit.bitstream.images",
    "neckkit.eval_annotations": "neckkit.evaluation.annotations",
    "neckkit.eval_report": "neckkit.evaluation.report",
    "neckkit.image_quality": "neckkit.evaluation.image_quality",
    "neckkit.text_metrics": "neckkit.evaluation.text_metrics",
    "neckkit.complexity": "neckkit.evaluation.complexity",
    "neckkit.machine_path": "neckkit.serving.machine_path",
}


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module name to the module now at its new name (the same object)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was executed under its new name."""


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (``import neckkit`` calls this)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
