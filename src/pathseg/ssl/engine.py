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
                        seed=cfg.seed, max_steps=max_steps)


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


def _devices(value: str) -> Any:
    value = value.strip()
    if value == "auto":
        return "auto"
    if "," in value or value.startswith("["):
        return [int(v) for v in value.strip("[]").split(",") if v.strip()]
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"trainer.devices: expected auto, a count or a list, got {value!r}") from None


def _resume_path(cfg: PretrainConfig, ckpt_dir: Path) -> Path | None:
    if cfg.resume_from:
        path = Path(cfg.resume_from)
        if not path.is_file():
            raise PathsegError("checkpoint to resume from not found", path)
        return path
    last = ckpt_dir / "last.ckpt"
    if cfg.resume:
        if last.is_file():
            return last
        log.warning("--resume: no %s yet, starting from scratch", last)
        return None
    if last.exists() and not cfg.overwrite:
        raise PathsegError("run directory holds checkpoints already (pass --resume to continue, or --overwrite)",
                           Path(cfg.out))
    return None


def pretrain(cfg: PretrainConfig, callbacks: list[L.Callback] | None = None) -> dict[str, Any]:
    """Train ``cfg.method`` and export the backbone; returns the metrics written to ``metrics.json``.

    Args:
        cfg: The resolved config.
        callbacks: Extra Lightning callbacks (tests, monitors).

    Raises:
        ConfigError: Unknown method, bad method arguments or trainer settings.
        PathsegError: Missing data, existing run without ``--resume``.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from pathseg.models import save_encoder
    from pathseg.runs import RunDir

    if not cfg.out:
        raise ConfigError("--out is required")
    if not cfg.data:
        raise ConfigError("--data is required")
    spec, mcfg = method_config(cfg)
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    resume = _resume_path(cfg, ckpt_dir)
    run = RunDir(out, cfg, seed=cfg.seed) if _rank_zero() else None
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    tcfg = cfg.trainer
    cbs: list[L.Callback] = [ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                             every_n_train_steps=cfg.checkpoint.every_n_steps or None,
                                             save_on_train_epoch_end=True)]
    if cfg.checkpoint.keep_every_n_epochs > 0:
        cbs.append(ModelCheckpoint(dirpath=ckpt_dir, filename="epoch={epoch}", save_top_k=-1,
                                   every_n_epochs=cfg.checkpoint.keep_every_n_epochs, save_on_train_epoch_end=True))
    monitor = None
    if cfg.monitor.data:
        from pathseg.ssl.monitor import KNNMonitor

        m = cfg.monitor
        monitor = KNNMonitor(m.data, m.train_split, m.val_split, m.k, m.temperature, m.every_n_epochs,
                             m.max_images, m.image_size, cfg.mean, cfg.std)
        cbs.append(monitor)
    cbs += list(callbacks or [])
    try:
        trainer = L.Trainer(
            accelerator=tcfg.accelerator, devices=_devices(tcfg.devices), num_nodes=tcfg.num_nodes,
            strategy=tcfg.strategy, precision=tcfg.precision,  # type: ignore[arg-type]
            max_epochs=tcfg.max_epochs if tcfg.max_steps <= 0 else -1, max_steps=tcfg.max_steps,
            accumulate_grad_batches=tcfg.accumulate_grad_batches, log_every_n_steps=tcfg.log_every_n_steps,
            deterministic=tcfg.deterministic, sync_batchnorm=tcfg.sync_batchnorm,
            gradient_clip_val=tcfg.gradient_clip_val or None, enable_progress_bar=tcfg.progress_bar,
            use_distributed_sampler=False, limit_val_batches=0, num_sanity_val_steps=0,
            enable_model_summary=False, callbacks=cbs, default_root_dir=str(out),
            logger=[CSVLogger(str(out), name="logs"), TensorBoardLogger(str(out), name="tb")],  # version_N each start
        )
    except (ValueError, TypeError, RuntimeError) as exc:  # Lightning: bad accelerator/strategy/precision
        raise ConfigError(f"trainer: {str(exc).splitlines()[0]}") from None
    ctx0 = build_context(cfg)
    transform = spec.build_transform(mcfg, ctx0)
    dataset = (spec.build_dataset(mcfg, ctx0, transform) if spec.build_dataset is not None
               else image_source(cfg.data, ctx0.splits, transform, cfg.region_size))
    global_batch = cfg.batch_size * trainer.world_size
    if len(dataset) < global_batch:
        raise PathsegError(f"{len(dataset)} images are fewer than one global batch ({global_batch})", cfg.data)
    steps_per_epoch = max(1, len(dataset) // global_batch // tcfg.accumulate_grad_batches)
    max_steps = tcfg.max_steps if tcfg.max_steps > 0 else tcfg.max_epochs * steps_per_epoch
    ctx = build_context(cfg, max_steps)
    method: SSLMethod = spec.build_model(mcfg, ctx)
    module = SSLModule(method, cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.momentum,
                       warmup_steps=round(cfg.optim.warmup_epochs * steps_per_epoch), max_steps=max_steps,
                       cosine=cfg.optim.cosine)
    data = SSLData(dataset, cfg.batch_size, cfg.num_workers, cfg.seed)
    start = time.time()
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None)
    seconds = time.time() - start
    trainer.save_checkpoint(ckpt_dir / "last.ckpt")
    metrics: dict[str, Any] = {
        "method": cfg.method, "backbone": cfg.backbone, "steps": int(trainer.global_step),
        "epochs": int(trainer.current_epoch), "seconds": round(seconds, 2),
        "final_loss": _scalar(trainer.callback_metrics.get("train/loss")),
        "interrupted": bool(trainer.interrupted),
    }
    if monitor is not None and monitor.history:
        metrics["knn_acc"] = monitor.history[-1]
        metrics["knn_acc_history"] = monitor.history
    if _rank_zero():
        save_encoder(out / ENCODER_FILE, method.export_state(), method.timm_name, cfg.mean, cfg.std,
                     extra={"method": cfg.method, "steps": int(trainer.global_step)})
        if run is not None:
            run.finish(metrics, status="interrupted" if trainer.interrupted else "completed")
    return metrics


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
    from pathseg.models import save_encoder

    run = Path(cfg.run)
    if not (run / "config.yaml").is_file():
        raise PathsegError("not a pretraining run (config.yaml missing)", run)
    if not cfg.out:
        raise ConfigError("--out is required")
    ckpt = Path(cfg.checkpoint) if cfg.checkpoint else run / "checkpoints" / "last.ckpt"
    method, pcfg = load_method_from_run(run, ckpt)
    path = save_encoder(cfg.out, method.export_state(), method.timm_name, pcfg.mean, pcfg.std,
                        extra={"method": pcfg.method, "checkpoint": str(ckpt)})
    print(f"wrote {path} ({pcfg.backbone}, {len(method.export_state())} tensors)")
    return 0


def pretrain_command(cfg: PretrainConfig) -> int:
    """``pathseg pretrain``."""
    metrics = pretrain(cfg)
    if _rank_zero():
            print(f"pretrained {metrics['method']} for {metrics['steps']} steps in {metrics['seconds']} s: "
              f"final loss {metrics['final_loss']}, encoder {Path(cfg.out) / ENCODER_FILE}")
    return 0
