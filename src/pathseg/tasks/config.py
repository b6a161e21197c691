"""Typed configs of ``pathseg finetune``, ``pathseg probe`` and ``pathseg evaluate`` (no heavy imports here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pathseg.config.checks import check_seeds
from pathseg.errors import ConfigError
from pathseg.tasks.instance.config import InstanceSection
from pathseg.train.config import TrainerConfig


@dataclass
class TrainerSection(TrainerConfig):
    """Lightning trainer settings of fine-tuning (the engine's :class:`~pathseg.train.config.TrainerConfig`).

    Training draws crops with replacement; an "epoch" is ``val_every_steps`` steps, after which the validation
    split is scored and the best weights are kept. Set ``max_steps`` (default) or ``max_epochs`` (with
    ``max_steps: -1``).

    Args:
        val_every_steps: Steps between validations (one "epoch").
        batch_size: Training batch size.
        num_workers: Data loader worker processes.
    """

    max_epochs: int = -1
    max_steps: int = 2000
    devices: str = "1"
    log_every_n_steps: int = 10
    val_every_steps: int = 200
    batch_size: int = 8
    num_workers: int = 2

    def total_steps(self) -> int:
        """Optimiser steps of one seed."""
        return self.max_steps if self.max_steps > 0 else self.max_epochs * self.val_every_steps


@dataclass
class OptimSection:
    """Optimiser and schedule (by default linear warm-up, then cosine decay to zero, stepped per batch).

    Args:
        name: ``adamw``, ``adam`` or ``sgd`` (momentum 0.9).
        lr: Learning rate of the decoder/head.
        encoder_lr_mult: Encoder learning rate = ``lr`` x this.
        weight_decay: Weight decay.
        warmup_steps: Linear warm-up steps.
        schedule: ``cosine``, ``constant``, ``poly``, ``step`` or ``plateau`` (:mod:`pathseg.train.schedules`;
            ``plateau``: ``ReduceLROnPlateau`` ×0.1 on the epoch-mean training loss, the URL paper protocol).
        patience: Epochs without improvement before ``plateau`` lowers the rate (the URL original: 10).
    """

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    encoder_lr_mult: float = 1.0
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    schedule: Literal["cosine", "constant", "poly", "step", "plateau"] = "cosine"
    patience: int = 10


@dataclass
class PatchesSection:
    """Train on fixed windows of the training images instead of random crops (the URL paper protocol).

    The images are mirror-padded by ``(size - stride) / 2`` and cut into ``size`` windows every ``stride`` pixels
    (a flush last row/column), as the original's ``PatchExtractor``; ``label_fraction`` then picks a seeded share
    of these **patches** (the original's ``_5p`` / ``_15p`` patch folders), not of the images. An epoch is one
    pass over the chosen patches; every item is the original's affine/flip/colour augmentation of a window, then
    its central ``crop_size``.

    Args:
        size: Window side (the original: 512); 0 = off (pathseg's random crops of whole images).
        stride: Window step (the original: 256).
    """

    size: int = 0
    stride: int = 256


@dataclass
class InferenceSection:
    """Sliding-window inference for images larger than the crop.

    Args:
        overlap: Fraction of a window shared with its neighbour.
        blend: ``gaussian`` or ``mean`` blending of window probabilities.
        batch_size: Windows per forward pass.
        num_examples: Test images shown in the prediction-overlay picture.
    """

    overlap: float = 0.25
    blend: Literal["gaussian", "mean"] = "gaussian"
    batch_size: int = 4
    num_examples: int = 4


@dataclass
class FinetuneConfig:
    """Fine-tune an encoder (a pathseg encoder file or random init) on labelled data, then test it."""

    data: Path = field(metadata={"help": "data set directory (canonical layout)"})
    out: Path = field(metadata={"help": "run directory to create"})
    task: Literal["segmentation", "classification", "instance"] = field(
        default="segmentation", metadata={"help": "what to train (instance: glands or nuclei as objects)"})
    model: Literal["", "maskrcnn", "hover", "contour"] = field(
        default="", metadata={"help": "instance model (default: hover for nuclei, contour for glands)"})
    encoder: str = field(default="random", metadata={"help": "encoder file ('pathseg export') or 'random'"})
    backbone: str = field(default="", metadata={"help": "timm name (default resnet18); must agree with the file"})
    decoder: Literal["unet", "deeplabv3plus", "fpn", "url_unet", "plm_unet", "dpt"] = field(
        default="unet", metadata={"help": "segmentation decoder (url_unet: URL's ResNetUNet, plm_unet: PLM's "
                                          "shallow U-Net, the papers' protocols; dpt: ViT encoders)"})
    label_fraction: float = field(default=1.0, metadata={"help": "fraction of labelled training images, in (0, 1]"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "seeds, e.g. 0,1,2"})
    freeze_encoder: bool = field(default=False, metadata={"help": "train the decoder/head only"})
    allow_partial_weights: bool = field(
        default=False, metadata={"help": "load only the encoder tensors that fit; report the rest"})
    train_split: str = field(default="train", metadata={"help": "split folder or id list to train on"})
    val_split: str = field(default="val", metadata={"help": "model-selection split; skipped if absent ('' = none)"})
    test_split: str = field(default="test", metadata={"help": "split evaluated at the end (GlaS: testA)"})
    crop_size: int = field(default=256, metadata={"help": "training crop and sliding window (multiple of 32)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out"})
    legacy_metrics: bool = field(default=False, metadata={
        "help": "also report the URL original's per-batch Dice/IoU (legacy_per_batch_*; inflated, comparison only)"})
    trainer: TrainerSection = field(default_factory=TrainerSection)
    optim: OptimSection = field(default_factory=OptimSection)
    patches: PatchesSection = field(default_factory=PatchesSection)
    inference: InferenceSection = field(default_factory=InferenceSection)
    instance: InstanceSection = field(default_factory=InstanceSection)

    def validate(self) -> None:
        """Check ranges that would otherwise fail deep inside training."""
        if not 0.0 < self.label_fraction <= 1.0:
            raise ConfigError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        if self.task not in ("segmentation", "classification", "instance"):
            raise ConfigError(f"unknown task '{self.task}'")
        check_seeds(self.seeds)
        if self.crop_size <= 0 or self.crop_size % 32:
            raise ConfigError(f"crop_size must be a positive multiple of 32, got {self.crop_size}")
        if not 0.0 <= self.inference.overlap < 1.0:
            raise ConfigError(f"inference.overlap must be in [0, 1), got {self.inference.overlap}")
        size, stride = self.patches.size, self.patches.stride
        if size and (size < self.crop_size or not 0 < stride <= size):
            raise ConfigError(f"patches: need size >= crop_size ({self.crop_size}) and 0 < stride <= size, got "
                              f"size {size}, stride {stride}")
        if self.optim.patience < 0:
            raise ConfigError(f"optim.patience must be >= 0, got {self.optim.patience}")
        if self.trainer.total_steps() < 1 or self.trainer.val_every_steps < 1 or self.trainer.batch_size < 1:
            raise ConfigError("trainer.max_steps (or trainer.max_epochs), trainer.val_every_steps and "
                              "trainer.batch_size must be >= 1")


@dataclass
class ProbeConfig:
    """Linear or kNN probe of a frozen encoder on image-level labels (features extracted once)."""

    data: Path = field(metadata={"help": "classification data set directory"})
    out: Path = field(metadata={"help": "run directory to create"})
    kind: Literal["linear", "knn"] = field(default="linear", metadata={"help": "probe type"})
    encoder: str = field(default="random", metadata={"help": "encoder file or 'random'"})
    backbone: str = field(default="", metadata={"help": "timm name for 'random'; must agree with the file"})
    label_fraction: float = field(default=1.0, metadata={"help": "fraction of labelled training images"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "seeds (label subsets, probe init)"})
    train_split: str = field(default="train", metadata={"help": "split (or id list) to fit on"})
    test_split: str = field(default="test", metadata={"help": "split to score"})
    image_size: int = field(default=0, metadata={"help": "centre-crop/pad images to this size (0 = as they are)"})
    k: int = field(default=20, metadata={"help": "neighbours of the kNN probe"})
    temperature: float = field(default=0.07, metadata={"help": "kNN vote weight exp(similarity / T)"})
    epochs: int = field(default=100, metadata={"help": "linear probe: full-batch epochs"})
    lr: float = field(default=0.1, metadata={"help": "linear probe learning rate (Adam)"})
    weight_decay: float = field(default=1e-4, metadata={"help": "linear probe L2 penalty"})
    batch_size: int = field(default=32, metadata={"help": "feature extraction batch size"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda or auto"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out"})

    def validate(self) -> None:
        """Check ranges."""
        if not 0.0 < self.label_fraction <= 1.0:
            raise ConfigError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        check_seeds(self.seeds)
        if self.k < 1 or self.temperature <= 0:
            raise ConfigError("k must be >= 1 and temperature > 0")


@dataclass
class EvaluateConfig:
    """Re-evaluate the models of a fine-tuning run on a split; writes RUN/eval_<data set>_<split>.json."""

    run: Path = field(metadata={"help": "fine-tuning run directory"})
    data: Path = field(metadata={"help": "data set directory"})
    split: str = field(default="test", metadata={"help": "split folder or id list to evaluate"})
    weights: Literal["best", "last"] = field(default="best", metadata={"help": "which saved weights"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda or auto"})
    overlap: float = field(default=-1.0, metadata={"help": "sliding-window overlap (-1 = as trained)"})
    pictures: bool = field(default=True, metadata={"help": "write overlay and confusion-matrix pictures"})
    legacy_metrics: bool = field(default=False, metadata={
        "help": "also report the URL original's per-batch Dice/IoU (legacy_per_batch_*; inflated, comparison only)"})
