"""Shared pieces of the transfer tasks: encoder resolution, model building, saved weights, seed aggregation.

Models come from :mod:`pathseg.models` (``create_segmentation_model``, ``create_encoder``, ``read_encoder``).
A trained model is saved as ``model_best.safetensors`` / ``model_last.safetensors`` (tensors only) beside
``model.json`` (:class:`ModelSpec`), from which :func:`build_model` rebuilds the architecture.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pathseg.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from pathseg.errors import ConfigError, DataError
from pathseg.io import atomic_write_text

DEFAULT_BACKBONE = "resnet18"


@dataclass
class EncoderSpec:
    """The encoder to start from: timm name, input normalisation and an optional weights file."""

    timm_name: str
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    weights: Path | None = None


@dataclass
class ModelSpec:
    """Everything needed to rebuild a fine-tuned model (written as ``model.json``)."""

    task: str
    encoder: str
    num_classes: int
    decoder: str | None = None
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    window: int = 256
    overlap: float = 0.25
    blend: str = "gaussian"
    ignore_index: int = 255
    class_names: list[str] = field(default_factory=list)
    colors: list[list[int]] = field(default_factory=list)
    mpp: float | None = None  # µm/px of the training data (whole-slide inference reads slides at it)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON, atomically."""
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelSpec:
        """Read ``model.json``.

        Raises:
            DataError: Missing or unreadable.
        """
        p = Path(path)
        if not p.is_file():
            raise DataError("model.json not found (not a fine-tuning run?)", p)
        try:
            return cls(**json.loads(p.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise DataError(f"invalid model.json ({exc})", p) from None


def resolve_encoder(encoder: str, backbone: str = "") -> EncoderSpec:
    """Turn ``--encoder FILE|random`` and ``--backbone`` into an :class:`EncoderSpec`.

    The timm name and normalisation of a file come from its metadata; ``backbone``, when given, must agree.

    Raises:
        ConfigError: The file's backbone differs from ``backbone``.
        DataError: The file is missing or has no timm name.
    """
    if encoder in ("random", "", "none"):
        return EncoderSpec(timm_name=backbone or DEFAULT_BACKBONE)
    path = Path(encoder)
    if not path.is_file():
        raise DataError("encoder file not found (give a file from 'pathseg export' or 'random')", path)
    from pathseg.models import read_encoder

    _, meta = read_encoder(path, backbone)  # a file without a timm name takes backbone (or the detected one)
    name = str(meta.get("timm_name") or "")
    if not name:
        raise DataError("encoder file has no 'timm_name' in its metadata", path)
    if backbone and backbone != name:
        raise ConfigError(f"--backbone {backbone} disagrees with the encoder file, which holds a {name}", path)
    return EncoderSpec(timm_name=name, mean=_triple(meta.get("mean"), IMAGENET_MEAN, path),
                       std=_triple(meta.get("std"), IMAGENET_STD, path), weights=path)


def _triple(value: Any, default: tuple[float, ...], path: Path) -> tuple[float, ...]:
    if value is None or value == "":
        return default
    if isinstance(value, str):  # safetensors metadata holds strings
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = value.replace(",", " ").split()
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise DataError(f"cannot read the normalisation {value!r} in the encoder metadata", path) from None


class Classifier(nn.Module):
    """A timm encoder (pooled features) followed by a linear layer.

    Args:
        encoder: Module mapping images to ``[N, D]`` pooled features (timm with ``num_classes=0``).
        num_features: ``D``.
        num_classes: Output classes.
    """

    def __init__(self, encoder: nn.Module, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]``."""
        return self.head(self.encoder(x))


def build_model(spec: ModelSpec, encoder_weights: str | os.PathLike[str] | None = None,
                allow_partial: bool = False) -> nn.Module:
    """Build the architecture of ``spec``, with encoder weights from a file (strict unless ``allow_partial``)."""
    from pathseg import models

    if spec.task == "segmentation":
        return models.create_segmentation_model(
            decoder=spec.decoder or "unet", encoder=spec.encoder,  # type: ignore[arg-type]
            num_classes=spec.num_classes, encoder_weights=encoder_weights, allow_partial=allow_partial,
        )
    enc = models.create_encoder(spec.encoder, weights=encoder_weights, allow_partial=allow_partial)
    return Classifier(enc, int(getattr(enc, "num_features")), spec.num_classes)  # noqa: B009


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder part of a segmentation model or :class:`Classifier` (for freezing and learning rates)."""
    enc = getattr(model, "encoder", None)
    if not isinstance(enc, nn.Module):
        raise TypeError(f"{type(model).__name__} has no .encoder module")
    return enc


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Save a state dict as safetensors (tensors only), atomically and byte-reproducibly."""
    from pathseg.train.weights import save_safetensors

    save_safetensors(model.state_dict(), path)


def load_model(run_seed_dir: str | os.PathLike[str], which: str = "best") -> tuple[nn.Module, ModelSpec]:
    """Rebuild a saved model from ``model.json`` and ``model_<which>.safetensors`` (strict key match).

    Raises:
        DataError: Missing files or weights that do not fit the architecture.
    """
    from safetensors.torch import load_file

    folder = Path(run_seed_dir)
    spec = ModelSpec.load(folder / "model.json")
    weights = folder / f"model_{which}.safetensors"
    if not weights.is_file():
        raise DataError(f"model_{which}.safetensors not found", folder)
    model = build_model(spec)
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except (RuntimeError, OSError) as exc:
        raise DataError(f"weights do not fit the architecture in model.json ({str(exc)[:300]})", weights) from None
    return model.eval(), spec


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def aggregate_seeds(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds, keeping the keys of the per-seed metrics.

    For every numeric key ``k``: ``k`` = mean over the seeds where it is defined, ``k_std`` = sample standard
    deviation (n - 1; 0 for one seed). Per-class lists are averaged element-wise (``None`` where no seed defines
    the class). Confusion matrices are summed. ``per_seed`` holds every seed's own metrics.
    """
    out: dict[str, Any] = {}
    seeds = list(per_seed)
    keys: list[str] = []
    for m in per_seed.values():
        keys += [k for k in m if k not in keys]
    for key in keys:
        vals = [per_seed[s].get(key) for s in seeds]
        if key == "confusion_matrix":
            mats = [torch.tensor(v, dtype=torch.float64) for v in vals if v is not None]
            out[key] = torch.stack(mats).sum(0).long().tolist() if mats else None
        elif all(isinstance(v, int | float) or v is None for v in vals) and not all(isinstance(v, int) for v in vals):
            nums = [float(v) for v in vals if v is not None]
            if nums:
                out[key], out[f"{key}_std"] = _mean_std(nums)
            else:
                out[key], out[f"{key}_std"] = None, None
        elif all(isinstance(v, list) for v in vals) and key.endswith("_per_class"):
            columns = list(zip(*vals))
            means: list[float | None] = []
            stds: list[float | None] = []
            for col in columns:
                nums = [float(v) for v in col if v is not None]
                mean_std: tuple[float | None, float | None] = _mean_std(nums) if nums else (None, None)
                means.append(mean_std[0])
                stds.append(mean_std[1])
            out[key], out[f"{key}_std"] = means, stds
        else:
            out[key] = vals[0]
    out["seeds"] = [int(s) for s in seeds]
    out["per_seed"] = per_seed
    return out

