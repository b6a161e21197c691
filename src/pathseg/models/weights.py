"""Local weights files: loading with prefix stripping and a report, and encoder files with metadata.

Formats:

- ``.safetensors`` — read with :func:`safetensors.torch.load_file` (metadata via ``safe_open``).
- ``.pth`` / ``.pt`` / ``.ckpt`` / ``.bin`` — read with ``torch.load(path, map_location="cpu", weights_only=True)``;
  nested ``state_dict`` / ``model`` / ``module`` entries are unwrapped. A file holding pickled objects other than
  tensors and plain containers is refused (:class:`~pathseg.errors.PathsegError`), never unpickled.

Encoder files (written by ``pathseg export`` and :func:`save_encoder`) are safetensors files whose keys are exactly
those of ``timm.create_model(timm_name, num_classes=0).state_dict()`` and whose metadata holds ``timm_name``,
``mean``, ``std`` (JSON lists) and ``pathseg_version``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pathseg.errors import PathsegError

log = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
DEFAULT_PREFIXES = ("module.", "backbone.", "encoder.", "model.")


@dataclass
class LoadReport:
    """What :func:`load_weights` did.

    Attributes:
        matched: Module keys loaded from the file.
        missing: Module keys the file did not provide.
        unexpected: File keys (after prefix stripping) the module does not have.
        mismatched: Keys present in both with different shapes (not loaded).
    """

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


@dataclass
class EncoderMeta:
    """Metadata of an encoder file.

    Attributes:
        timm_name: timm model name the weights belong to.
        mean: Input normalisation mean (RGB, 0-1 scale).
        std: Input normalisation std.
        pathseg_version: Version that wrote the file.
        extra: Any further metadata (strings; JSON where the writer gave structures).
    """

    timm_name: str
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    pathseg_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style access to a field or an ``extra`` entry."""
        if key in ("timm_name", "mean", "std", "pathseg_version"):
            return getattr(self, key)
        return self.extra.get(key, default)

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, KeyError)
        if value is KeyError:
            raise KeyError(key)
        return value


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            for key in ("state_dict", "model", "module", "encoder"):
                if key in obj and isinstance(obj[key], Mapping):
                    obj = obj[key]
                    break
            else:
                break
    if not isinstance(obj, Mapping):
        raise PathsegError(f"not a weights file: holds a {type(obj).__name__}, not a mapping of tensors", path)
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise PathsegError("not a weights file: it holds no tensors", path)
    return tensors


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read the tensors of a local weights file (see the module docstring for formats).

    Raises:
        PathsegError: Missing file, unknown suffix, corrupt file, or pickled objects that are not tensors.
    """
    p = Path(path)
    if not p.is_file():
        raise PathsegError("weights file not found", p)
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(p), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise PathsegError(f"not a valid safetensors file ({exc})", p) from None
    if suffix not in TORCH_SUFFIXES:
        raise PathsegError(f"unknown weights format '{suffix}' (use .safetensors, {', '.join(TORCH_SUFFIXES)})", p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unpickling refused"
        raise PathsegError(
            "refusing to load: the checkpoint holds pickled Python objects, not only tensors "
            f"(weights_only=True: {first[:200]})", p
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError) as exc:
        raise PathsegError(f"not a valid PyTorch weights file ({str(exc).splitlines()[0][:200]})", p) from None
    return _unwrap(obj, p)


def _strip(key: str, prefixes: Sequence[str], targets: Mapping[str, Any]) -> str:
    changed = True
    while key not in targets and changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
                changed = True
                break
    return key


#: Unexpected keys tolerated by a strict load: classifier heads (a model built with ``num_classes=0`` has none) and
#: the U-Net decoder an encoder file may carry (URL stage 2, loaded separately by ``load_unet_decoder``).
TOLERATED_PREFIXES = ("fc.", "head.", "classifier.", "head_drop.", "decoder.")


def _match(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
           prefixes: Sequence[str]) -> tuple[LoadReport, dict[str, torch.Tensor], dict[str, str]]:
    """Pair file keys with module keys; returns the report, the tensors to load and ``{module key: file key}``."""
    report = LoadReport()
    chosen: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in source.items():
        name = _strip(key, prefixes, target)
        if name not in target:
            report.unexpected.append(name)
        elif tuple(target[name].shape) != tuple(value.shape):
            report.mismatched.append(name)
            origin[name] = key
        elif name not in chosen:
            chosen[name] = value
    report.matched = sorted(chosen)
    report.missing = [k for k in target if k not in chosen and k not in report.mismatched]
    return report, chosen, origin


def _misfit_message(report: LoadReport, source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                    origin: Mapping[str, str], missing: list[str], unexpected: list[str]) -> str:
    from pathseg.models.arch_guess import guess_architecture

    def first(keys: list[str]) -> str:  # weights before BatchNorm buffers, the more telling names
        return ", ".join(sorted(keys, key=lambda k: ("running_" in k or "num_batches" in k, keys.index(k)))[:3])

    parts = []
    if missing:
        parts.append(f"{len(missing)} model tensors missing from the file (first: {first(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} file tensors the model does not have (first: {first(unexpected)})")
    if report.mismatched:
        shapes = [f"{k} {list(source[origin[k]].shape)} vs {list(target[k].shape)}" for k in report.mismatched[:2]]
        parts.append(f"{len(report.mismatched)} of another shape (first: {'; '.join(shapes)})")
    return (f"this weights file does not fit the model: {', '.join(parts)}; the file looks like "
            f"{guess_architecture(source)}, the model is {guess_architecture(target)}. Choose the matching "
            "--backbone, or pass --allow-partial-weights to load only the tensors that fit")


def load_weights(
    module: nn.Module,
    path: str | os.PathLike[str],
    strip_prefixes: Sequence[str] = DEFAULT_PREFIXES,
    strict: bool = False,
    allow_partial: bool = False,
) -> LoadReport:
    """Load a local weights file into ``module``, stripping key prefixes until keys match; strict by default.

    Leading prefixes from ``strip_prefixes`` are removed one at a time while a key is not a key of ``module``.
    By default the file must fit the module: a module tensor missing from the file, a file tensor the module lacks
    (other than classifier-head and ``decoder.`` tensors, see :data:`TOLERATED_PREFIXES`) or a tensor of another
    shape refuses the file, with a message naming the first keys and the architecture the file looks like (e.g.
    resnet50 weights given for a resnet18). ``allow_partial`` loads the tensors that fit and reports the rest.

    Args:
        module: Target module.
        path: Weights file.
        strip_prefixes: Prefixes to strip (e.g. ``module.`` from DDP, ``backbone.`` from SSL checkpoints).
        strict: Refuse even tolerated head/decoder tensors (an exact fit).
        allow_partial: Load what fits; missing, unexpected and shape-mismatched keys are only reported.

    Returns:
        The :class:`LoadReport` (also logged).

    Raises:
        PathsegError: The file is unreadable or not a weights file, no key matches, or (unless ``allow_partial``)
            the tensors do not fit.
    """
    p = Path(path)
    source = read_state_dict(p)
    target = module.state_dict()
    report, chosen, origin = _match(source, target, strip_prefixes)
    if not chosen:
        from pathseg.models.arch_guess import guess_architecture

        raise PathsegError(
            f"no key of this file matches the model ({len(source)} keys, e.g. {', '.join(list(source)[:3])}; model "
            f"keys e.g. {', '.join(list(target)[:3])}; the file looks like {guess_architecture(source)}, the model is "
            f"{guess_architecture(target)})", p
        )
    missing = [k for k in report.missing if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in report.unexpected if not k.endswith("num_batches_tracked")  # frozen BN has none
                  and (strict or not k.startswith(TOLERATED_PREFIXES))]
    if not allow_partial and (missing or unexpected or report.mismatched):
        raise PathsegError(_misfit_message(report, source, target, origin, missing, unexpected), p)
    module.load_state_dict(chosen, strict=False)
    level = logging.WARNING if (missing or unexpected or report.mismatched) else logging.INFO
    ignored = len(report.missing) + len(report.unexpected) - len(missing) - len(unexpected)
    log.log(level, "loaded %d of %d tensors from %s (%d missing, %d unexpected, %d shape-mismatched%s)",
            len(report.matched), len(target), p, len(missing), len(unexpected), len(report.mismatched),
            f"; {ignored} tolerated: BatchNorm counters, heads" if ignored else "")
    for what, keys in (("missing", missing), ("unexpected", unexpected),
                       ("shape-mismatched (not loaded)", report.mismatched)):
        if keys:
            log.log(level, "%s keys: %s", what, keys[:20])
    return report


def save_encoder(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, torch.Tensor],
    timm_name: str,
    mean: Sequence[float],
    std: Sequence[float],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an encoder file (safetensors, atomically) with its timm name and normalisation in the metadata.

    Args:
        path: Destination (``.safetensors``).
        state_dict: Keys of ``timm.create_model(timm_name, num_classes=0)``.
        timm_name: timm model name.
        mean: Normalisation mean (0-1 scale).
        std: Normalisation std.
        extra: More metadata; non-string values are stored as JSON.
    """
    from pathseg import __version__
    from pathseg.train.weights import save_safetensors

    meta = {"format": "pathseg.encoder", "timm_name": timm_name, "mean": json.dumps([float(v) for v in mean]),
            "std": json.dumps([float(v) for v in std]), "pathseg_version": __version__}
    for key, value in (extra or {}).items():
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value, default=str)
    return save_safetensors(dict(state_dict), path, meta)  # byte-identical for identical weights


def _floats(value: str | None, default: tuple[float, ...], path: Path) -> tuple[float, ...]:
    if not value:
        return default
    try:
        return tuple(float(v) for v in json.loads(value))
    except (json.JSONDecodeError, TypeError, ValueError):
        raise PathsegError(f"cannot read normalisation {value!r} in the metadata", path) from None


def read_encoder(path: str | os.PathLike[str], timm_name: str = "") -> tuple[dict[str, torch.Tensor], EncoderMeta]:
    """Read an encoder file: its tensors and :class:`EncoderMeta`.

    A file without ``timm_name`` in its metadata (e.g. a foundation model's plain timm state dict) takes
    ``timm_name`` when given, else the name :func:`pathseg.models.vit.detect_timm_name` reads from its tensors
    (plain ViTs, standard ResNets), with ImageNet normalisation.

    Raises:
        PathsegError: Not a safetensors file, or no ``timm_name`` in its metadata, none given and none detected.
    """
    p = Path(path)
    if p.suffix.lower() != ".safetensors":
        raise PathsegError("an encoder file must be .safetensors (see 'pathseg export')", p)
    state = read_state_dict(p)
    from safetensors import safe_open

    with safe_open(str(p), framework="pt") as fh:
        raw = dict(fh.metadata() or {})
    name = raw.pop("timm_name", "") or timm_name
    if not name:
        from pathseg.models.vit import detect_timm_name

        name = detect_timm_name(state) or ""
        if not name:
            raise PathsegError("encoder file has no 'timm_name' in its metadata and its layout is not a standard "
                               "timm ViT or ResNet: give the timm name as backbone=<name>", p)
        log.info("encoder file without timm_name: its tensors look like %s", name)
    meta = EncoderMeta(
        timm_name=name,
        mean=_floats(raw.pop("mean", None), EncoderMeta.mean, p),
        std=_floats(raw.pop("std", None), EncoderMeta.std, p),
        pathseg_version=raw.pop("pathseg_version", ""),
        extra=raw,
    )
    return state, meta
