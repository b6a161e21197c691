"""The model side of slide inference: find and rebuild a trained model, its µm/px, and batched probabilities.

A model is given as a ``pathseg finetune`` run (its first seed, or ``--seed``), a ``seed_<s>`` folder, or a
``model_<which>.safetensors`` file beside its ``model.json`` (:class:`~pathseg.tasks.common.ModelSpec`).

The model's µm/px is looked up in this order: ``--mpp``; ``"mpp"`` in ``model.json``; the ``mpp`` of the
training data set (``dataset.yaml`` of the run's ``config.yaml`` ``data``); else an error naming ``--mpp``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pathseg.errors import ConfigError, DataError
from pathseg.tasks.common import ModelSpec, build_model

log = logging.getLogger("pathseg.inference")


@dataclass
class LoadedModel:
    """A rebuilt model and what inference needs to know about it.

    Args:
        module: The network in eval mode (CPU).
        spec: Its :class:`ModelSpec`.
        mpp: Resolution (µm/px) it runs at.
        mpp_source: Where ``mpp`` came from.
        folder: The folder holding ``model.json``.
        weights: The weights file.
    """

    module: nn.Module
    spec: ModelSpec
    mpp: float
    mpp_source: str
    folder: Path
    weights: Path


def _model_folder(model: str, which: str, seed: int | None) -> tuple[Path, Path]:
    p = Path(model)
    if p.is_file():
        if p.suffix != ".safetensors":
            raise DataError("expected a run folder or a model_*.safetensors file", p)
        return p.parent, p
    if not p.is_dir():
        raise DataError("model not found (give a finetune run, its seed_<s> folder or a .safetensors file)", p)
    if not (p / "model.json").is_file():
        seeds = sorted((q for q in p.glob("seed_*") if (q / "model.json").is_file()),
                       key=lambda q: int(q.name[5:]) if q.name[5:].isdigit() else 0)
        if seed is not None:
            seeds = [q for q in seeds if q.name == f"seed_{seed}"]
        if not seeds:
            raise DataError(f"no model.json here or in a seed_{seed if seed is not None else '<s>'} folder", p)
        p = seeds[0]
    return p, p / f"model_{which}.safetensors"


def _dataset_mpp(folder: Path) -> float | None:
    """µm/px of the training data set named in the run's ``config.yaml`` (run = folder or its parent)."""
    import yaml

    from pathseg.data.layout import read_dataset_info

    for run in (folder, folder.parent):
        cfg_path = run / "config.yaml"
        if not cfg_path.is_file():
            continue
        try:
            data = (yaml.safe_load(cfg_path.read_text()) or {}).get("data")
            return None if not data else read_dataset_info(data).mpp
        except Exception:  # the data set moved or the config is foreign: no µm/px from it
            return None
    return None


def read_spec(folder: Path) -> tuple[ModelSpec, float | None]:
    """``model.json`` as a :class:`ModelSpec` plus its ``mpp`` entry (which ModelSpec may not have)."""
    path = folder / "model.json"
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read model.json ({exc})", path) from None
    known = {f.name for f in fields(ModelSpec)}
    mpp = raw.get("mpp")
    try:
        spec = ModelSpec(**{k: v for k, v in raw.items() if k in known})
    except TypeError as exc:
        raise DataError(f"invalid model.json ({exc})", path) from None
    return spec, float(mpp) if mpp else None


def load_for_inference(model: str, which: str = "best", seed: int | None = None,
                       mpp: float | None = None) -> LoadedModel:
    """Find, rebuild and check a segmentation model for slide inference.

    Raises:
        ConfigError: A model of another task, or no known µm/px.
        DataError: Missing or mismatching files.
    """
    from safetensors.torch import load_file

    folder, weights = _model_folder(model, which, seed)
    spec, spec_mpp = read_spec(folder)
    if spec.task != "segmentation":
        raise ConfigError(f"the model is a '{spec.task}' model; slide inference needs a segmentation model", folder)
    if not weights.is_file():
        raise DataError(f"{weights.name} not found", folder)
    source = "--mpp"
    if mpp is None:
        mpp, source = spec_mpp, "model.json"
    if mpp is None:
        mpp, source = _dataset_mpp(folder), "the training data set's dataset.yaml"
    if mpp is None:
        raise ConfigError("the model records no µm/px (model.json has no 'mpp' and the training data set none); "
                          "pass the resolution it was trained at with --mpp", folder)
    if spec_mpp is not None and abs(mpp - spec_mpp) > 0.1 * spec_mpp:
        log.warning("running at %.4g µm/px, but the model was trained at %.4g µm/px", mpp, spec_mpp)
    net = build_model(spec)
    try:
        net.load_state_dict(load_file(str(weights)), strict=True)
    except (RuntimeError, OSError) as exc:
        raise DataError(f"weights do not fit the architecture in model.json ({str(exc)[:200]})", weights) from None
    return LoadedModel(net.eval(), spec, float(mpp), source, folder, weights)


class Predictor:
    """Window batches to softmax probabilities, as :func:`~pathseg.tasks.sliding.sliding_window_predict` computes
    them (float32 softmax of the logits, resized to the window when the model's output is smaller).

    Runs under :func:`torch.inference_mode`. With ``channels_last`` the network and its input use channels-last
    memory (faster convolutions on CPU and GPU); on CUDA with ``amp`` the forward pass runs in bfloat16/float16
    autocast.

    Args:
        module: Segmentation network (eval mode).
        device: Where to run.
        amp: Mixed precision on CUDA.
        channels_last: Channels-last memory format.
    """

    def __init__(self, module: nn.Module, device: torch.device, amp: bool = True, channels_last: bool = True) -> None:
        self.device = device
        self.amp = amp and device.type == "cuda"
        self.channels_last = channels_last
        self.module = module.to(device).eval()
        if channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.dtype = torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported() else torch.float16

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, h, w]`` normalised windows -> ``[N, K, h, w]`` float32 probabilities on the device."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.amp:
            with torch.autocast("cuda", dtype=self.dtype):
                logits = self.module(x)
        else:
            logits = self.module(x)
        logits = logits.float()
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits.softmax(dim=1).contiguous()
