"""The method interface of the pretraining engine (no heavy imports here).

See ``docs/dev/ssl_methods.md`` for how to add a method.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathseg.registry import Registry

#: Built-in method modules, imported by :func:`load_methods`.
BUILTIN_MODULES = ("pathseg.ssl.mocov2", "pathseg.ssl.densecl")


@dataclass(frozen=True)
class BuildContext:
    """What the engine tells a method's factories (everything but the method's own hyper-parameters).

    Attributes:
        backbone: timm name of the backbone to train and export.
        crop_size: Side of the training views in pixels.
        mean: Normalisation mean (RGB, 0-1), also written into the exported encoder.
        std: Normalisation std.
        data: The ``--data`` argument (canonical data set directory or tile-index CSV).
        splits: Splits of a canonical data set to read (empty: all).
        seed: The run's seed.
        max_steps: Total optimiser steps of the run (for schedules such as a momentum ramp).
        extra: Free-form values a method may read (documented by the method).
    """

    backbone: str
    crop_size: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    data: Path = Path()
    splits: tuple[str, ...] = ()
    seed: int = 0
    max_steps: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    """A pretraining method, as registered in :data:`METHODS`.

    Attributes:
        config: Dataclass of the method's hyper-parameters (``method_args`` are validated against it: unknown
            keys and wrong types are :class:`~pathseg.errors.ConfigError`).
        build_model: ``(method_cfg, ctx) -> SSLMethod`` — must unpack ``method_cfg`` into constructor arguments.
        build_transform: ``(method_cfg, ctx) -> callable`` mapping one ``uint8 [H, W, 3]`` numpy image to the
            dict of tensors that :meth:`SSLMethod.training_loss` receives (batched by the default collate).
            It must draw randomness from torch's global RNG only (the engine seeds it per sample).
        build_dataset: Optional ``(method_cfg, ctx, transform) -> Dataset`` replacing the default unlabeled image
            dataset (for methods that need more than the image, e.g. superpixel maps or tile coordinates).
            ``dataset[i]`` must return the dict given to ``training_loss`` and use torch's RNG only.
        description: One line for ``pathseg pretrain --help`` and the docs.
    """

    config: type
    build_model: Callable[[Any, BuildContext], Any]
    build_transform: Callable[[Any, BuildContext], Callable[[Any], dict[str, Any]]]
    build_dataset: Callable[[Any, BuildContext, Any], Any] | None = None
    description: str = ""


#: All registered pretraining methods, by name (``mocov2``, ``densecl``, plug-ins such as ``url``).
METHODS: Registry[MethodSpec] = Registry("pretraining method")

_loaded = False


def load_methods() -> Registry[MethodSpec]:
    """Import the built-in methods and every ``pathseg.ssl.<package>.register`` module; return :data:`METHODS`."""
    global _loaded
    if _loaded:
        return METHODS
    _loaded = True
    for name in BUILTIN_MODULES:
        importlib.import_module(name)
    import pathseg.ssl as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.ispkg and importlib.util.find_spec(f"pathseg.ssl.{info.name}.register") is not None:
            importlib.import_module(f"pathseg.ssl.{info.name}.register")
    return METHODS
