"""neckkit.lean_compressai: CompressAI imports without torch_geometric, and nothing is lost when it is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from neckkit.lean_compressai import EAGER_VARIABLE, LazyRegistry

# What compressai offers after a user touches its point-cloud half, written to stdout as JSON.
REGISTRIES = """
import json, sys
import neckkit
import compressai.models, compressai.entropy_models, compressai.latent_codecs, compressai.zoo
from compressai.registry import DATASETS, TRANSFORMS, register_transform

@register_transform("Center")  # registered before first read: must win over torch_geometric's Center
class MyCenter:
    pass

imported = {name: name in sys.modules for name in ("torch_geometric", "pandas")}
deferred = type(sys.modules["compressai.datasets"]).__name__
import inspect
inspect.getmodule(MyCenter)  # probes every module in sys.modules, as torch does at import
still_deferred = type(sys.modules["compressai.datasets"]).__name__
name = lambda value: f"{value.__module__}.{value.__qualname__}"
transforms = {key: name(value) for key, value in TRANSFORMS.items() if key != "Center"}
datasets = {key: name(value) for key, value in DATASETS.items()}
from compressai.datasets import ImageFolder
import torch_geometric.transforms
from compressai.transforms.point import RandomSample
print(json.dumps({"imported": imported, "deferred": [deferred, still_deferred], "transforms": transforms,
                  "datasets": datasets, "mine_wins": TRANSFORMS["Center"] is MyCenter,
                  "point_registered": TRANSFORMS["RandomSample"] is RandomSample,
                  "dataset_registered": DATASETS["ImageFolder"] is ImageFolder,
                  "geometric_center": torch_geometric.transforms.Center.__name__}))
"""


def registries(eager: bool) -> dict:
    env = {**os.environ, EAGER_VARIABLE: "1" if eager else ""}
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", REGISTRIES], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def lean() -> dict:
    return registries(eager=False)


def test_compressai_imports_without_torch_geometric_or_its_datasets(lean: dict) -> None:
    assert lean["imported"] == {"torch_geometric": False, "pandas": False}
    assert lean["deferred"] == ["DeferredModule", "DeferredModule"]  # inspect.getmodule did not run it


def test_registries_and_later_imports_are_what_compressai_itself_gives(lean: dict) -> None:
    eager = registries(eager=True)
    assert eager["imported"] == {"torch_geometric": True, "pandas": True}  # the cost lean_compressai avoids
    assert lean["transforms"] == eager["transforms"] and len(lean["transforms"]) > 100
    assert lean["transforms"]["Compose"].startswith("torch_geometric.")  # torch_geometric wins, as in compressai
    assert lean["datasets"] == eager["datasets"] and "ImageFolder" in lean["datasets"]
    for result in (lean, eager):
        assert result["mine_wins"] and result["point_registered"] and result["dataset_registered"]
        assert result["geometric_center"] == "Center"


def test_lazy_registry_fills_once_on_first_read_and_registrations_win() -> None:
    calls = []

    def fill() -> list[tuple[str, str]]:
        calls.append(1)
        return [("Library", "library"), ("Shared", "library")]

    registry = LazyRegistry(fill)
    registry["Shared"] = "registered"
    assert calls == []  # writing does not fill
    assert "Library" in registry and calls == [1]
    assert dict(registry) == {"Library": "library", "Shared": "registered"} and len(registry) == 2
    registry["Later"] = "later"
    assert sorted(registry) == ["Later", "Library", "Shared"] and calls == [1]


@pytest.mark.parametrize("read", [len, list, repr, lambda r: r.get("x"), lambda r: r.items(), lambda r: r == {}, dict])
def test_every_way_of_reading_a_lazy_registry_fills_it(read) -> None:
    registry = LazyRegistry(lambda: [("Library", 1)])
    read(registry)
    assert dict.__contains__(registry, "Library")
