"""Importing CompressAI without its point-cloud half: torch_geometric loads only when something uses it.

compressai 1.2's ``__init__`` imports every subpackage, and ``compressai.registry.transforms`` fills its
``TRANSFORMS`` registry from ``torch_geometric.transforms`` at import: about 2.5 s (torch_geometric pulls in
torch._dynamo, transformers and pandas) that neckkit's image codecs never use. :func:`install`, which
``import neckkit`` calls, puts :class:`LeanCompressAIFinder` on ``sys.meta_path``; it changes how four
CompressAI modules load, none of them visibly:

- ``compressai.registry.transforms`` is this module's stand-in with compressai's names: ``TRANSFORMS`` is a
  :class:`LazyRegistry` that adds torchvision's and torch_geometric's transforms, and compressai's own point
  transforms, the first time it is read; ``register_transform`` works at once and keeps precedence.
- ``compressai.transforms`` (the point transforms import torch_geometric) and ``compressai.datasets``
  (pandas, through ShapeNet) execute the first time a name they define is looked up (a
  :class:`DeferredModule`); ``compressai.registry.DATASETS`` imports the datasets, which register
  themselves, on first read.

Nothing in site-packages is changed. A compressai other than 1.2.x, one imported before neckkit, or
``NECKKIT_EAGER_COMPRESSAI=1`` imports as compressai itself does.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from types import ModuleType
from typing import Any

__all__ = ["EAGER_VARIABLE", "DeferredModule", "LazyRegistry", "LeanCompressAIFinder", "install"]

EAGER_VARIABLE = "NECKKIT_EAGER_COMPRESSAI"
TRANSFORMS_MODULE = "compressai.registry.transforms"
REGISTRY_MODULE = "compressai.registry.torch"  # holds DATASETS
LAZY_MODULES = ("compressai.datasets", "compressai.transforms")


class LazyRegistry(dict):  # type: ignore[type-arg]
    """A CompressAI name -> class registry whose library entries are added the first time it is read.

    ``fill`` returns those entries (it may import modules that register more). Names written before that
    (``register_*`` decorators) keep precedence over them, as they did when the library entries came first.
    """

    def __init__(self, fill: Callable[[], Iterable[tuple[str, Any]]], entries: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._fill: Callable[[], Iterable[tuple[str, Any]]] | None = fill
        self._registered: set[str] = set()
        self.update(entries or {})

    def filled(self) -> LazyRegistry:
        """Add the library entries now, once."""
        fill, self._fill = self._fill, None
        if fill is not None:
            for name, entry in list(fill()):
                if name not in self._registered:
                    dict.__setitem__(self, name, entry)
        return self

    def __setitem__(self, name: str, entry: Any) -> None:
        self._registered.add(name)
        dict.__setitem__(self, name, entry)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for name, entry in dict(*args, **kwargs).items():
            self[name] = entry

    def __ior__(self, other: Any) -> LazyRegistry:
        self.update(other)
        return self


def _reading(name: str) -> Callable[..., Any]:
    method = getattr(dict, name)

    def read(self: LazyRegistry, *args: Any, **kwargs: Any) -> Any:
        return method(self.filled(), *args, **kwargs)

    read.__name__ = read.__qualname__ = name
    return read


for _name in ("__getitem__", "__contains__", "__iter__", "__len__", "__reversed__", "__repr__", "__eq__", "__ne__",
              "__or__", "__ror__", "__delitem__", "get", "keys", "values", "items", "copy", "pop", "popitem",
              "setdefault", "clear"):
    setattr(LazyRegistry, _name, _reading(_name))


def _upper_case_names(module_name: str) -> list[tuple[str, Any]]:
    """``{k: v for k, v in module.__dict__.items() if k[0].isupper()}``, as compressai fills TRANSFORMS."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:  # torch_geometric is optional for an image-only install
        return []
    return [(name, value) for name, value in vars(module).items() if name[0].isupper()]


def _library_transforms() -> list[tuple[str, Any]]:
    """torchvision's transforms, then torch_geometric's (which win a shared name), as compressai 1.2 orders them."""
    entries = _upper_case_names("torchvision.transforms") + _upper_case_names("torch_geometric.transforms")
    _load("compressai.transforms")  # its point transforms register themselves (and win over both)
    return entries


def _library_datasets() -> list[tuple[str, Any]]:
    _load("compressai.datasets")  # every dataset registers itself
    return []


def _load(module_name: str) -> None:
    try:
        module = importlib.import_module(module_name)
        if isinstance(module, DeferredModule):
            module.execute()
    except ImportError:  # e.g. the point transforms without torch_geometric
        pass


_LOCK = threading.RLock()
_EXECUTING: set[str] = set()  # deferred modules whose code is running now


class DeferredModule(ModuleType):
    """A module whose code runs the first time a name it does not have yet is looked up.

    Unlike ``importlib.util.LazyLoader``'s modules, the attributes the import system sets (``__file__``,
    ``__path__``, ``__spec__``...) do not run it, so ``inspect.getmodule``, which probes every module in
    ``sys.modules`` (torch does at import), leaves it alone; importing a submodule does not run it either.
    """

    def __getattr__(self, name: str) -> Any:
        if not self.execute():  # looked up while its own code runs: partly initialised, as in any import
            raise AttributeError(f"partially initialized module {self.__name__!r} has no attribute {name!r}")
        return getattr(self, name)

    def __dir__(self) -> list[str]:
        self.execute()
        return ModuleType.__dir__(self)

    def execute(self) -> bool:
        """Run the module's code now, once; False while it is running in this thread."""
        with _LOCK:  # a second thread waits for the first one's execution
            if type(self) is not DeferredModule:
                return True
            if self.__name__ in _EXECUTING:
                return False
            _EXECUTING.add(self.__name__)
            loader = self.__spec__.loader.loader  # type: ignore[union-attr]  # inside _OnFirstUse
            try:
                loader.exec_module(self)  # an error leaves it deferred: the next use tries again
            finally:
                _EXECUTING.discard(self.__name__)
            self.__spec__.loader = self.__loader__ = loader  # type: ignore[union-attr]
            self.__class__ = ModuleType
            return True


class _WrappedLoader(importlib.abc.Loader):
    """A module's own loader, wrapped: creates the module as it would; subclasses change ``exec_module``."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename...: the real loader's
        return getattr(self.loader, name)


class _OnFirstUse(_WrappedLoader):
    """Wraps a module's loader so that the module is a :class:`DeferredModule` until first used."""

    def exec_module(self, module: ModuleType) -> None:
        module.__class__ = DeferredModule


class _TransformsStandIn(importlib.abc.Loader):
    """``compressai.registry.transforms`` with compressai 1.2's names, its registry filled on first read."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        registry = LazyRegistry(_library_transforms)

        def register_transform(name: str) -> Callable[[type], type]:
            """Decorator for registering a transform."""

            def decorator(cls: type) -> type:
                registry[name] = cls
                return cls

            return decorator

        module.TRANSFORMS = registry
        module.register_transform = register_transform
        module.__all__ = ["TRANSFORMS", "register_transform"]


class _DatasetsOnFirstRead(_WrappedLoader):
    """Runs ``compressai.registry.torch`` itself, then makes its ``DATASETS`` a :class:`LazyRegistry`."""

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        module.DATASETS = LazyRegistry(_library_datasets, module.DATASETS)  # register_dataset writes into it


@functools.cache
def _known_compressai() -> bool:
    """Whether the installed compressai has the 1.2 layout the stand-ins reproduce."""
    try:
        return metadata.version("compressai").startswith("1.2.")
    except metadata.PackageNotFoundError:
        return False


class LeanCompressAIFinder(importlib.abc.MetaPathFinder):
    """Finds the four CompressAI modules this module changes; every other import is left to the usual finders."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in (TRANSFORMS_MODULE, REGISTRY_MODULE, *LAZY_MODULES) or not _known_compressai():
            return None
        if fullname == TRANSFORMS_MODULE:
            return importlib.machinery.ModuleSpec(fullname, _TransformsStandIn(), origin=__name__)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _DatasetsOnFirstRead(spec.loader) if fullname == REGISTRY_MODULE else _OnFirstUse(spec.loader)
        return spec


def install() -> None:
    """Put the finder on ``sys.meta_path`` once, unless ``NECKKIT_EAGER_COMPRESSAI=1`` asks for the usual import."""
    if os.environ.get(EAGER_VARIABLE, "") not in ("", "0"):
        return
    if not any(isinstance(finder, LeanCompressAIFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, LeanCompressAIFinder())
