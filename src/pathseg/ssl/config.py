"""Typed configuration of ``pathseg pretrain`` and ``pathseg export`` (light: no torch import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pathseg.errors import ConfigError
from pathseg.train.config import ScheduleName, TrainerConfig

__all__ = ["CheckpointConfig", "ExportConfig", "MonitorConfig", "OptimConfig", "PretrainConfig", "TrainerConfig"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule.

    Args:
        name: ``sgd`` (MoCo/DenseCL: momentum 0.9) or ``adamw``.
        lr: Peak learning rate (MoCo v2: 0.03 for a batch of 256).
        weight_decay: Weight decay (1e-4).
        momentum: SGD momentum.
        warmup_epochs: Linear warm-up length in epochs (fractions allowed).
        cosine: Cosine decay to 0 after the warm-up (``false``: constant; kept for older configs).
        schedule: ``cosine``, ``constant``, ``poly``, ``step`` or ``plateau`` (``ReduceLROnPlateau`` on the
            epoch's training loss, as the URL code); ``cosine: false`` turns ``cosine`` into ``constant``.
        power: Exponent of ``poly``.
        milestones: Steps of ``step``.
        gamma: Factor of ``step`` / ``plateau``.
        patience: Epochs without improvement before ``plateau`` lowers the rate.
    """

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.03
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 0.0
    cosine: bool = True
    schedule: ScheduleName = "cosine"
    power: float = 0.9
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    patience: int = 10

    def schedule_name(self) -> str:
        """The effective schedule (``cosine: false`` means constant)."""
        return "constant" if self.schedule == "cosine" and not self.cosine else self.schedule


@dataclass
class CheckpointConfig:
    """Checkpointing: ``RUN/checkpoints/last.ckpt`` every ``every_n_steps`` and at the end of each epoch.

    Args:
        every_n_steps: Steps between updates of ``last.ckpt`` (0: end of epochs only).
        keep_every_n_epochs: Also keep ``epoch=E.ckpt`` every that many epochs (0: none).
    """

    every_n_steps: int = 500
    keep_every_n_epochs: int = 0


@dataclass
class MonitorConfig:
    """Optional online kNN monitor on a small labelled classification data set (canonical layout).

    Args:
        data: Data set directory with ``labels.csv`` per split ("" disables the monitor).
        train_split: Split whose features form the kNN memory.
        val_split: Split that is classified.
        k: Neighbours.
        temperature: Weighting temperature of the votes (as in InstDisc / DINO kNN).
        every_n_epochs: Evaluation interval.
        max_images: At most this many images per split.
        image_size: Images are resized to this size.
    """

    data: str = ""
    train_split: str = "train"
    val_split: str = "test"
    k: int = 20
    temperature: float = 0.07
    every_n_epochs: int = 1
    max_images: int = 1000
    image_size: int = 224


@dataclass
class PretrainConfig:
    """Self-supervised pretraining of a backbone with a registered method.

    Args:
        data: Canonical data set directory (images of all splits) or a tile index ``tiles.csv``.
        out: Run directory.
        method: Method name, one of the registry (``pathseg pretrain --help`` lists them).
        backbone: timm name of the backbone.
        splits: Splits of the data set to use (empty: all).
        seed: Seed of everything (weights, data order, augmentation).
        crop_size: Side of the training views.
        region_size: Cut a random region of this size from each image before the views (0: whole image).
        batch_size: Batch size per device.
        num_workers: DataLoader workers per device.
        mean: Normalisation mean written into the exported encoder.
        std: Normalisation std.
        resume: Continue from ``OUT/checkpoints/last.ckpt`` when it exists.
        resume_from: Continue from this checkpoint.
        overwrite: Allow an existing ``OUT`` without ``--resume`` (its checkpoints are replaced).
        method_args: The method's own hyper-parameters (validated against its config dataclass).
        optim: Optimiser and schedule.
        trainer: Lightning trainer settings.
        checkpoint: Checkpoint frequency.
        monitor: Optional kNN monitor.
    """

    data: str = field(metadata={"help": "data set directory or tiles.csv"})
    out: str = field(metadata={"help": "run directory"})
    method: str = field(default="mocov2", metadata={"help": "pretraining method (see 'pathseg pretrain --help')"})
    backbone: str = field(default="resnet50", metadata={"help": "timm backbone name"})
    splits: list[str] = field(default_factory=list, metadata={"help": "splits to use (default: all)"})
    seed: int = field(default=0, metadata={"help": "seed of weights, data order and augmentation"})
    crop_size: int = field(default=224, metadata={"help": "side of the training views in pixels"})
    region_size: int = field(default=0, metadata={"help": "random region cut before the views (0: whole image)"})
    batch_size: int = field(default=256, metadata={"help": "batch size per device"})
    num_workers: int = field(default=4, metadata={"help": "DataLoader workers per device"})
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resume: bool = field(default=False, metadata={"help": "continue from OUT/checkpoints/last.ckpt"})
    resume_from: str = field(default="", metadata={"help": "continue from this checkpoint"})
    overwrite: bool = field(default=False, metadata={"help": "reuse an OUT that holds checkpoints"})
    method_args: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "set as method_args.KEY=VALUE overrides or in the YAML file"})
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    @classmethod
    def cli_help(cls) -> str:
        """The registered methods, for ``pathseg pretrain --help`` (from the registry, never a hand-kept list)."""
        from pathseg.ssl.api import load_methods

        methods = load_methods()
        width = max(len(n) for n in methods.names())
        lines = [f"  {n.ljust(width)}  {methods.get(n).description}" for n in methods.names()]
        return "methods (--method NAME; hyper-parameters as method_args.KEY=VALUE):\n" + "\n".join(lines)

    def validate(self) -> None:
        """Check sizes (the method's arguments are checked when the run starts)."""
        if self.crop_size < 8 or self.batch_size < 1 or self.num_workers < 0:
            raise ConfigError("need crop_size >= 8, batch_size >= 1, num_workers >= 0")
        if self.trainer.max_steps <= 0 and self.trainer.max_epochs <= 0:
            raise ConfigError("set trainer.max_epochs or trainer.max_steps")


@dataclass
class ExportConfig:
    """Write the backbone of a pretraining run as an encoder file (safetensors + timm name and normalisation).

    Args:
        run: The pretraining run directory.
        out: Output ``.safetensors`` file.
        checkpoint: Checkpoint to export (default: ``RUN/checkpoints/last.ckpt``).
    """

    run: str = field(default="", metadata={"positional": True, "help": "pretraining run directory"})
    out: str = field(default="", metadata={"help": "output encoder file (.safetensors)"})
    checkpoint: str = field(default="", metadata={"help": "checkpoint (default: RUN/checkpoints/last.ckpt)"})

    def validate(self) -> None:
        """``out`` must be a .safetensors path."""
        if self.out and not self.out.endswith(".safetensors"):
            raise ConfigError("--out must end with .safetensors")
