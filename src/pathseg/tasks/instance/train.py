"""Fitting an :class:`InstanceModule` with the training engine: data loaders and one seed's fit.

Training draws ``val_every_steps * batch_size`` crops with replacement per "epoch", as the semantic task; validation
runs whole images with batch size 1. The trainer is :func:`pathseg.train.factory.build_trainer`; the best weights
(by ``module.monitor``) are kept by :class:`~pathseg.train.best.BestWeights` and saved beside the last ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, RandomSampler

from pathseg.tasks.instance.dataset import InstanceDataset, collate_instances


def loaders(
    train: InstanceDataset, val: InstanceDataset | None, batch_size: int, val_every_steps: int,
    num_workers: int = 0,
) -> tuple[DataLoader[Any], DataLoader[Any] | None]:
    """Training loader (random crops drawn with replacement) and whole-image validation loader."""
    sampler = RandomSampler(train, replacement=True, num_samples=val_every_steps * batch_size)
    train_loader: DataLoader[Any] = DataLoader(
        train, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=True,
        collate_fn=collate_instances, persistent_workers=num_workers > 0,
    )
    val_loader: DataLoader[Any] | None = None
    if val is not None:
        val_loader = DataLoader(val, batch_size=1, num_workers=min(num_workers, 1), collate_fn=collate_instances)
    return train_loader, val_loader


def fit_instance(
    module: Any, train_loader: DataLoader[Any], val_loader: DataLoader[Any] | None, trainer_cfg: Any,
    folder: str | os.PathLike[str],
) -> Any:
    """Fit ``module`` (an :class:`InstanceModule`) into ``folder``; writes ``model_last.safetensors`` and
    ``model_best.safetensors`` (the last weights when no validation ran) and returns the ``BestWeights`` keeper.

    Args:
        module: The Lightning module.
        train_loader: From :func:`loaders`.
        val_loader: From :func:`loaders`, or ``None``.
        trainer_cfg: A :class:`pathseg.train.config.TrainerConfig` (e.g. the fine-tuning ``trainer`` section).
        folder: The seed's folder (CSV log in ``folder/logs``).
    """
    from pathseg.tasks.common import save_weights
    from pathseg.train.best import BestWeights
    from pathseg.train.factory import build_trainer
    from pathseg.train.lifecycle import fit

    best = BestWeights(module.monitor, module.monitor_mode)
    trainer = build_trainer(trainer_cfg, Path(folder), [best], loggers="csv", validate=val_loader is not None,
                            log_version="")
    fit(trainer, module, train_dataloaders=train_loader, val_dataloaders=val_loader)
    save_weights(module.model, Path(folder) / "model_last.safetensors")
    best.restore(module.model)
    save_weights(module.model, Path(folder) / "model_best.safetensors")
    return best
