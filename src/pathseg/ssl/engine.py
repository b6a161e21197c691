"""The pretraining engine: ``pathseg pretrain`` and ``pathseg export``.

``pretrain(cfg)`` builds the method registered as ``cfg.method``, its data, and a Lightning ``Trainer`` (CPU, GPU,
DDP, multi-node, AMP, gradient accumulation), trains with checkpoints and exact mid-epoch resume, and writes::

    RUN/config.yaml, RUN/run.json, RUN/metrics.json     # pathseg.runs.RunDir
    RUN/checkpoints/last.ckpt (+ epoch=E.ckpt)          # Lightning checkpoints
    RUN/logs/version_N/metrics.csv, RUN/tb/version_N/   # CSV and TensorBoard logs, one version per (re)start
    RUN/encoder.safetensors                             # the trained backbone (as 'pathseg export' writes it)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from pathseg.config import from_dict, load_config
from pathseg.errors import ConfigError, PathsegError
from pathseg.ssl.api import BuildContext, MethodSpec, load_methods
from pathseg.ssl.base import SSLMethod
from pathseg.ssl.config import ExportConfig, PretrainConfig
from pathseg.ssl.data import ResumableLoader, ResumableSampler, image_source
from pathseg.ssl.module import SSLModule

log = logging.getLogger(__name__)
ENCODER_FILE = "encoder.safetensors"


def method_config(cfg: PretrainConfig) -> tuple[MethodSpec, Any]:
    """The method's spec and its typed config from ``cfg.method_args`` (unknown keys are errors)."""
    spec = load_methods().get(cfg.method)
    return spec, from_dict(spec.config, cfg.method_args, prefix="method_args.")


def build_context(cfg: PretrainConfig, max_steps: int = 1) -> BuildContext:
    """The :class:`BuildContext` of a config."""
    return BuildContext(backbone=cfg.backbone, crop_size=cfg.crop_size, mean=tuple(cfg.mean),  # type: ignore[arg-type]
                        std=tuple(cfg.std), data=Path(cfg.data), splits=tuple(cfg.splits),  # type: ignore[arg-type]
                        seed=cfg.seed, max_steps=max_steps, extra={"out": cfg.out})


class SSLData(L.LightningDataModule):
    """Wraps the method's dataset in a seeded, rank-sharded, resumable loader."""

    def __init__(self, dataset: Any, batch_size: int, num_workers: int, seed: int) -> None:
        super().__init__()
        self.dataset, self.batch_size, self.num_workers, self.seed = dataset, batch_size, num_workers, seed

    def train_dataloader(self) -> ResumableLoader:
        """Loader of this rank."""
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = ResumableSampler(len(self.dataset), self.batch_size, self.seed, rank, world)
        return ResumableLoader(self.dataset, sampler, num_workers=self.num_workers,
                               persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())


def _resume_path(cfg: PretrainConfig, ckpt_dir: Path) -> Path | None:
    from pathseg.train.weights import check_resume_checkpoint

    if cfg.resume_from:
        return check_resume_checkpoint(cfg.resume_from)
    last = ckpt_dir / "last.ckpt"
    if cfg.resume:
        if last.is_file():
            return check_resume_checkpoint(last)
        log.warning("--resume: no %s yet, starting from scratch", last)
        return None
    if last.exists() and not cfg.overwrite:
        raise PathsegError("run directory holds checkpoints already (pass --resume to continue, or --overwrite)",
                           Path(cfg.out))
    return None


def _checkpoint_callbacks(cfg: PretrainConfig, ckpt_dir: Path) -> list[L.Callback]:
    from lightning.pytorch.callbacks import ModelCheckpoint

    cbs: list[L.Callback] = [ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                             every_n_train_steps=cfg.checkpoint.every_n_steps or None,
                                             save_on_train_epoch_end=True)]
    if cfg.checkpoint.keep_every_n_epochs > 0:
        cbs.append(ModelCheckpoint(dirpath=ckpt_dir, filename="epoch={epoch}", save_top_k=-1,
                                   every_n_epochs=cfg.checkpoint.keep_every_n_epochs, save_on_train_epoch_end=True))
    return cbs


def _knn_monitor(cfg: PretrainConfig) -> Any:
    if not cfg.monitor.data:
        return None
    from pathseg.ssl.monitor import KNNMonitor

    m = cfg.monitor
    return KNNMonitor(m.data, m.train_split, m.val_split, m.k, m.temperature, m.every_n_epochs, m.max_images,
                      m.image_size, cfg.mean, cfg.std)


def build_dataset(spec: MethodSpec, mcfg: Any, cfg: PretrainConfig) -> Any:
    """The method's dataset (its own, or the default unlabeled images / tile index) with its transform."""
    ctx = build_context(cfg)
    transform = spec.build_transform(mcfg, ctx)
    if spec.build_dataset is not None:
        return spec.build_dataset(mcfg, ctx, transform)
    return image_source(cfg.data, ctx.splits, transform, cfg.region_size)


def steps_of(cfg: PretrainConfig, num_samples: int, world_size: int) -> tuple[int, int]:
    """``(steps per epoch, total optimiser steps)`` of a run over ``num_samples`` samples.

    Raises:
        PathsegError: Fewer samples than one global batch.
    """
    global_batch = cfg.batch_size * world_size
    if num_samples < global_batch:
        raise PathsegError(f"{num_samples} images are fewer than one global batch ({global_batch})", cfg.data)
    per_epoch = max(1, num_samples // global_batch // cfg.trainer.accumulate_grad_batches)
    total = cfg.trainer.max_steps if cfg.trainer.max_steps > 0 else cfg.trainer.max_epochs * per_epoch
    return per_epoch, total


def build_module(method: SSLMethod, cfg: PretrainConfig, steps_per_epoch: int, max_steps: int) -> SSLModule:
    """The :class:`SSLModule` of ``method`` with the config's optimiser and schedule (plain values)."""
    o = cfg.optim
    return SSLModule(method, o.name, o.lr, o.weight_decay, o.momentum,
                     warmup_steps=round(o.warmup_epochs * steps_per_epoch), max_steps=max_steps,
                     schedule=o.schedule_name(),
                     schedule_args={"power": o.power, "milestones": o.milestones, "gamma": o.gamma,
                                    "patience": o.patience})


def pretrain(cfg: PretrainConfig, callbacks: list[L.Callback] | None = None) -> dict[str, Any]:
    """Train ``cfg.method`` and export the backbone; returns the metrics written to ``metrics.json``.

    Args:
        cfg: The resolved config.
        callbacks: Extra Lightning callbacks (tests, monitors).

    Raises:
        ConfigError: Unknown method, bad method arguments or trainer settings.
        PathsegError: Missing data, existing run without ``--resume``, a checkpoint that cannot be resumed.
        Interrupted: Ctrl-C / SIGTERM (``run.json`` says ``interrupted``; ``--resume`` continues).
    """
    from pathseg.train.factory import build_trainer
    from pathseg.train.lifecycle import fit, run_lifecycle

    spec, mcfg = method_config(cfg)
    _check_images(cfg)
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    resume = _resume_path(cfg, ckpt_dir)
    with run_lifecycle(out, cfg, seed=cfg.seed, enabled=_rank_zero()) as run:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        monitor = _knn_monitor(cfg)
        cbs = _checkpoint_callbacks(cfg, ckpt_dir) + ([monitor] if monitor is not None else []) + list(callbacks or [])
        trainer = build_trainer(cfg.trainer, out, cbs, loggers=("csv", "tensorboard"), use_distributed_sampler=False)
        dataset = build_dataset(spec, mcfg, cfg)
        steps_per_epoch, max_steps = steps_of(cfg, len(dataset), trainer.world_size)
        method: SSLMethod = spec.build_model(mcfg, build_context(cfg, max_steps))
        module = build_module(method, cfg, steps_per_epoch, max_steps)
        start = time.time()
        fit(trainer, module, datamodule=SSLData(dataset, cfg.batch_size, cfg.num_workers, cfg.seed),
            ckpt_path=str(resume) if resume else None)
        trainer.save_checkpoint(ckpt_dir / "last.ckpt")
        metrics = _metrics(cfg, trainer, time.time() - start, monitor)
        if run is not None:
            _export(out / ENCODER_FILE, method, cfg, extra={"method": cfg.method, "steps": int(trainer.global_step)})
            run.finish(metrics)
    return metrics


def _check_images(cfg: PretrainConfig) -> None:
    """Every image of a canonical data set decodes (fast, cached ``data check`` pass), before any output."""
    data = Path(cfg.data)
    if not (data / "dataset.yaml").is_file():
        return  # a tile index: the slides were checked when they were tiled
    from pathseg.data.check import validate_for_training
    from pathseg.data.layout import list_splits

    validate_for_training(data, list(cfg.splits) or list_splits(data), task="unlabeled")


def _metrics(cfg: PretrainConfig, trainer: Any, seconds: float, monitor: Any) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "method": cfg.method, "backbone": cfg.backbone, "steps": int(trainer.global_step),
        "epochs": int(trainer.current_epoch), "seconds": round(seconds, 2),
        "final_loss": _scalar(trainer.callback_metrics.get("train/loss")),
    }
    if monitor is not None and monitor.history:
        metrics["knn_acc"] = monitor.history[-1]
        metrics["knn_acc_history"] = monitor.history
    return metrics


def _export(path: Path, method: SSLMethod, cfg: PretrainConfig, extra: dict[str, Any]) -> Path:
    from pathseg.models import save_encoder

    own = getattr(method, "export_extra", None)  # a method's own metadata (e.g. UNIT's guidance and stage)
    extra = {**(own() if callable(own) else {}), **extra}
    return save_encoder(path, method.export_state(), method.timm_name, cfg.mean, cfg.std, extra=extra)


def _rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _scalar(value: Any) -> float | None:
    return None if value is None else float(value)


def load_method_from_run(run: Path, checkpoint: Path) -> tuple[SSLMethod, PretrainConfig]:
    """Rebuild a run's method from ``RUN/config.yaml`` and load its weights from a checkpoint (weights only)."""
    from pathseg.models import read_state_dict

    cfg = load_config(PretrainConfig, run / "config.yaml")
    spec, mcfg = method_config(cfg)
    method: SSLMethod = spec.build_model(mcfg, build_context(cfg))
    state = read_state_dict(checkpoint)
    inner = {k[len("method."):]: v for k, v in state.items() if k.startswith("method.")}
    if not inner:
        raise PathsegError("checkpoint holds no 'method.' weights (not a pathseg pretraining checkpoint)", checkpoint)
    try:
        method.load_state_dict(inner, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise PathsegError(f"checkpoint does not fit the run's method ({first})", checkpoint) from None
    return method, cfg


def export_command(cfg: ExportConfig) -> int:
    """``pathseg export RUN --out encoder.safetensors``: the backbone alone, with timm name and normalisation."""
    run = Path(cfg.run)
    if not (run / "config.yaml").is_file():
        raise PathsegError("not a pretraining run (config.yaml missing)", run)
    if not cfg.out:
        raise ConfigError("--out is required")
    ckpt = Path(cfg.checkpoint) if cfg.checkpoint else run / "checkpoints" / "last.ckpt"
    method, pcfg = load_method_from_run(run, ckpt)
    path = _export(Path(cfg.out), method, pcfg, extra={"method": pcfg.method, "checkpoint": str(ckpt)})
    print(f"wrote {path} ({pcfg.backbone}, {len(method.export_state())} tensors)")
    return 0


def pretrain_command(cfg: PretrainConfig) -> int:
    """``pathseg pretrain``."""
    metrics = pretrain(cfg)
    if _rank_zero():
        print(f"pretrained {metrics['method']} for {metrics['steps']} steps in {metrics['seconds']} s: "
              f"final loss {metrics['final_loss']}, encoder {Path(cfg.out) / ENCODER_FILE}")
    return 0
