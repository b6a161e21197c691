"""The one Lightning ``Trainer`` factory of pathseg, and device parsing."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pathseg.errors import ConfigError
from pathseg.train.config import TrainerConfig

log = logging.getLogger(__name__)

#: Lightning messages that are expected in pathseg's runs and would bury a user's one ``error:`` line.
HARMLESS_WARNINGS = (
    r".*does not have many workers.*",
    r".*Found \d+ module\(s\) in eval mode.*",
    r".*number of training batches.*is smaller than the logging interval.*",
    r".*GPU available but not used.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*You are using `torch.load` with `weights_only=False`.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*precision.*is not supported by the model summary.*",
    r".*The `srun` command is available.*",
    r".*Trying to infer the `batch_size`.*",
    r".*You defined a `validation_step` but have no `val_dataloader`.*",
)


def quiet_lightning() -> None:
    """Silence Lightning's tips and the known harmless warnings (pathseg logs what matters itself)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed", "lightning.pytorch.utilities.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropTips())
    # said on every checkpoint *save*: pathseg saves complete checkpoints (callbacks included) for exact resume and
    # reads them back with weights_only=True (pathseg.train.lifecycle.fit)
    logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector").addFilter(_DropTips())
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith(("💡", "`weights_only` was not set")) or "litlogger" in msg or "Tip:" in msg
                    or msg.startswith(("GPU available", "TPU available", "HPU available")))


def parse_devices(value: str | int | Sequence[int]) -> int | list[int] | str:
    """``"auto"`` → ``"auto"``; ``"2"`` → 2 devices; ``"0,1"`` or ``"[0,1]"`` → devices 0 and 1.

    A single index must be written as a list (``"3,"`` or ``"[3]"``): a bare number is a count, as in Lightning.

    Raises:
        ConfigError: Anything else.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return [int(v) for v in value]  # type: ignore[union-attr]
    text = value.strip()
    if text == "auto":
        return "auto"
    try:
        if "," in text or text.startswith("["):
            return [int(v) for v in text.strip("[]").split(",") if v.strip()]
        count = int(text)
    except ValueError:
        raise ConfigError(f"trainer.devices: expected auto, a count or a list such as 0,1, got {value!r}") from None
    if count < 1 and count != -1:
        raise ConfigError(f"trainer.devices: need at least one device, got {value!r}")
    return count


def build_trainer(
    cfg: TrainerConfig,
    root: str | Path | None = None,
    callbacks: Sequence[Any] = (),
    loggers: bool | str | Sequence[str] = ("csv",),
    validate: bool = False,
    log_version: str | None = None,
    **overrides: Any,
) -> Any:
    """A ``lightning.Trainer`` from ``cfg``: the only place pathseg constructs one.

    Args:
        cfg: Trainer settings.
        root: Run directory (logs go to ``ROOT/logs/version_N``, TensorBoard to ``ROOT/tb``).
        callbacks: Lightning callbacks.
        loggers: ``False`` for none, or names among ``csv`` and ``tensorboard``.
        validate: Whether the fit loop runs validation (``False``: none, no sanity check).
        log_version: CSV log folder name (``None``: ``version_N`` per start; ``""``: ``ROOT/logs`` itself).
        **overrides: Other ``Trainer`` arguments (e.g. ``val_check_interval``, ``use_distributed_sampler``).

    Raises:
        ConfigError: Lightning refused the accelerator, strategy, precision or devices.
    """
    import lightning as L

    quiet_lightning()
    kwargs: dict[str, Any] = dict(
        accelerator=cfg.accelerator, devices=parse_devices(cfg.devices), num_nodes=cfg.num_nodes,
        strategy=cfg.strategy, precision=cfg.precision,
        max_epochs=cfg.max_epochs if cfg.max_steps <= 0 else -1, max_steps=cfg.max_steps,
        accumulate_grad_batches=cfg.accumulate_grad_batches, log_every_n_steps=cfg.log_every_n_steps,
        deterministic=cfg.deterministic, sync_batchnorm=cfg.sync_batchnorm,
        gradient_clip_val=cfg.gradient_clip_val or None, enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=list(callbacks),
        default_root_dir=str(root) if root is not None else None, logger=_loggers(loggers, root, log_version),
        enable_checkpointing=any(_is_checkpoint(c) for c in callbacks),
    )
    if not validate:
        kwargs["limit_val_batches"] = 0
    kwargs.update(overrides)
    try:
        return L.Trainer(**kwargs)
    except (ValueError, TypeError, RuntimeError) as exc:  # bad accelerator/strategy/precision/devices
        raise ConfigError(f"trainer: {str(exc).splitlines()[0]}") from None


def _is_checkpoint(callback: Any) -> bool:
    from lightning.pytorch.callbacks import ModelCheckpoint

    return isinstance(callback, ModelCheckpoint)


def _loggers(names: bool | str | Sequence[str], root: str | Path | None, version: str | None) -> Any:
    if names is False or root is None:
        return False
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    chosen = [names] if isinstance(names, str) else (["csv"] if names is True else list(names))
    out: list[Any] = []
    for name in chosen:
        if name == "csv":
            out.append(CSVLogger(str(root), name="logs", version=version))
        elif name == "tensorboard":
            out.append(TensorBoardLogger(str(root), name="tb"))
        else:
            raise ConfigError(f"unknown logger '{name}' (csv or tensorboard)")
    return out
