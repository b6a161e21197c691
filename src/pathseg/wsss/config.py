"""Typed configuration of ``pathseg wsss`` (MLPS: multi-layer pseudo-supervision).

One :class:`WsssConfig` nests a section per stage (``stage1``, ``pseudo``, ``stage2``); every field can be set
with a dotted override, e.g. ``stage1.epochs=2`` or ``stage2.gate.mode=parity``. This module imports nothing
heavy so ``pathseg --help`` stays fast.

``parity`` switches reproduce the original code's behaviour where our fix changes numbers (see
``docs/methods/mlps.md``); the top-level ``parity`` turns all of them on at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pathseg.errors import ConfigError

LAYERS = ("deep", "mid", "shallow")
"""Grad-CAM depths: ``deep`` = last stage (ResNet-38 ``bn7``), ``mid`` = the stage before (``b5_2``),
``shallow`` = the last stride-8 stage before that (``b4_5``)."""

Stage = Literal["", "stage1", "pseudo", "stage2"]
STAGES = ("stage1", "pseudo", "stage2")


@dataclass
class Stage1Config:
    """Stage 1: multi-label patch classifier with progressive dropout attention (spec §1).

    Args:
        backbone: ``resnet38d`` (the original's wide ResNet-38d, :mod:`pathseg.models.resnet38d`) or a timm model
            name, built with output stride 8.
        weights: Local weights file for the backbone (``None``: random init; never downloaded).
        epochs: Training epochs E (original 20).
        batch_size: Batch size B (original 20).
        max_steps: Stop after this many optimiser steps (``-1``: no limit); for smoke runs.
        lr: Base learning rate lr0 (backbone weights; biases 2x, classifier 10x).
        weight_decay: Weight decay of weights (biases and norm layers: 0).
        momentum: SGD momentum of the fixed version (the original passes 5e-4 by mistake: ``parity``).
        poly_power: Poly decay power.
        pda: Use progressive dropout attention.
        pda_start_epoch: First epoch (0-based) with PDA on (original: 3).
        pda_gamma0: Initial drop ratio gamma.
        pda_decay: gamma <- decay * gamma after each epoch while gamma > pda_floor.
        pda_floor: Decay stops once gamma is at or below this value.
        dropout: Dropout2d probability before the pooling.
        freeze_pretrained: With ``weights``, freeze the stem + first stage and every norm layer (as the original).
        normalize: Input normalisation of the fixed version (``parity`` divides by 255 only).
        parity: Reproduce the original: momentum 5e-4, PDA divided by the constant 4, no mean/std normalisation.
        num_workers: Data loader workers.
    """

    backbone: str = "resnet18"
    weights: Path | None = None
    epochs: int = 20
    batch_size: int = 20
    max_steps: int = -1
    lr: float = 0.01
    weight_decay: float = 5e-4
    momentum: float = 0.9
    poly_power: float = 0.9
    pda: bool = True
    pda_start_epoch: int = 3
    pda_gamma0: float = 1.0
    pda_decay: float = 0.98
    pda_floor: float = 0.65
    dropout: float = 0.5
    freeze_pretrained: bool = True
    normalize: Literal["imagenet", "none"] = "imagenet"
    parity: bool = False
    num_workers: int = 0

    def validate(self) -> None:
        """Check ranges."""
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("stage1.epochs and stage1.batch_size must be >= 1")
        if not 0.0 < self.pda_gamma0 <= 1.0 or not 0.0 < self.pda_decay <= 1.0:
            raise ConfigError("stage1.pda_gamma0 and stage1.pda_decay must be in (0, 1]")


@dataclass
class PseudoConfig:
    """Pseudo-mask generation: Grad-CAM at three depths and the combination rule (spec §2).

    Args:
        layers: Depths whose Grad-CAMs give one pseudo mask each.
        background: ``auto``: the data set decides (``white_background`` in its ``dataset.yaml``: LUAD-HistoSeg
            yes, BCSS-WSSS no; see :func:`pathseg.wsss.pseudo_masks.background_rule`); ``white``: always;
            ``none``: never (BCSS-style).
        white_threshold: A pixel is white when its gray value (cv2 RGB2GRAY) is above this.
        white_min_size: White 4-connected components smaller than this many pixels are not background.
        crf: Refine each pseudo mask with a dense CRF (needs the optional ``pydensecrf2`` package).
        crf_iterations: Mean-field iterations of the CRF.
        batch_size: Images per Grad-CAM batch.
        max_images: Only N training patches, spread evenly over the sorted ids (``0``: all); for short runs.
        parity: Reproduce the original argmax exactly: absent classes are multiplied by 0 (so they can win a
            tie at the global minimum) and unlabelled patches go to class 0 instead of ``ignore``.
    """

    layers: list[str] = field(default_factory=lambda: list(LAYERS))
    background: Literal["auto", "white", "none"] = "auto"
    white_threshold: int = 200
    white_min_size: int = 50
    crf: bool = False
    crf_iterations: int = 10
    batch_size: int = 8
    max_images: int = 0
    parity: bool = False

    def validate(self) -> None:
        """Check the layer names."""
        bad = [name for name in self.layers if name not in LAYERS]
        if bad or not self.layers:
            raise ConfigError(f"pseudo.layers: unknown layer {bad}; choose among {list(LAYERS)}")


@dataclass
class GateConfig:
    """The classification gate at stage-2 inference (spec §3.5).

    Args:
        enabled: Gate the segmentation with the stage-1 class probabilities.
        threshold: A class is kept when its stage-1 probability is above this.
        mode: ``fixed``: gated classes get -inf (and no gate when every class is gated); ``parity``: the original
            rule, logits multiplied by 0/1, so a gated class with logit 0 can still win.
    """

    enabled: bool = True
    threshold: float = 0.1
    mode: Literal["fixed", "parity"] = "fixed"


@dataclass
class Stage2Config:
    """Stage 2: DeepLabV3+ trained on the three pseudo masks (spec §3).

    Args:
        encoder: Encoder name for :func:`pathseg.models.create_segmentation_model` (timm; the original: resnet101).
        decoder: ``deeplabv3plus_paper``: the original's DeepLabV3+ (:mod:`pathseg.models.deeplab`: ASPP rates
            6/12/18 at output stride 16, 12/24/36 at 8; two 3×3 decoder convolutions with dropout 0.5 / 0.1);
            ``deeplabv3plus``: smp's (ASPP rates 12/24/36 at every stride).
        encoder_weights: Local weights file of the encoder, if any.
        output_stride: Encoder output stride (original 16).
        layer_weights: Loss weight of each pseudo-mask layer (original 0.6/0.2/0.2).
        epochs: Training epochs (original 30).
        batch_size: Batch size (original 20).
        max_steps: Stop after this many optimiser steps (``-1``: no limit).
        lr: Encoder learning rate (decoder and head: ``head_lr_mult`` times this).
        head_lr_mult: Learning-rate factor of the decoder and head.
        momentum: SGD momentum.
        weight_decay: Weight decay (all parameters, as the original).
        poly_power: Poly decay power.
        blur: Probability of a Gaussian blur (radius ~ U(0, 1)) of the training image.
        normalize: Input normalisation of the fixed version (``parity``: divide by 255 only).
        val_split: Split used to select the best epoch by mIoU when it exists with masks.
        max_eval_images: Evaluate only the first N images of each split (0: all); for short budgets.
        parity: Reproduce the original loss: background by a 5th logit of 100, the mean divided again by the
            batch size, and no mean/std normalisation.
        gate: The classification gate at inference.
        num_workers: Data loader workers.
        supervision: ``pseudo``: the multi-layer pseudo masks (the method). ``full``: the data set's true training
            masks with weight 1 (a fully supervised reference with the same patches, model, budget and
            evaluation; needs ``train/masks``, e.g. from ``pathseg data patchify --keep-train-masks``).
    """

    encoder: str = "resnet18"
    decoder: Literal["deeplabv3plus_paper", "deeplabv3plus"] = "deeplabv3plus_paper"
    encoder_weights: Path | None = None
    output_stride: int = 16
    layer_weights: dict[str, float] = field(default_factory=lambda: {"deep": 0.6, "mid": 0.2, "shallow": 0.2})
    epochs: int = 30
    batch_size: int = 20
    max_steps: int = -1
    lr: float = 0.01
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    blur: float = 0.5
    normalize: Literal["imagenet", "none"] = "imagenet"
    val_split: str = "val"
    max_eval_images: int = 0
    parity: bool = False
    gate: GateConfig = field(default_factory=GateConfig)
    num_workers: int = 0
    supervision: Literal["pseudo", "full"] = "pseudo"

    def validate(self) -> None:
        """Check the layer weights."""
        bad = [name for name in self.layer_weights if name not in LAYERS]
        if bad:
            raise ConfigError(f"stage2.layer_weights: unknown layer {bad}; choose among {list(LAYERS)}")
        if any(w < 0 for w in self.layer_weights.values()) or sum(self.layer_weights.values()) <= 0:
            raise ConfigError("stage2.layer_weights must be >= 0 with a positive sum")


@dataclass
class WsssConfig:
    """Weakly supervised tissue segmentation from patch-level labels (MLPS, Han et al. 2022).

    Runs stage 1 (classifier), pseudo-mask generation and stage 2 (segmentation) into one run directory and
    skips the stages that finished already.

    Args:
        data: A ``patch_labels`` data set (train split with labels.csv; other splits with masks for evaluation).
        out: The run directory.
        seed: Random seed.
        device: ``cpu``, ``cuda`` or ``auto``.
        rerun: Run this stage and the ones after it again even when they finished.
        parity: Turn on every parity switch (original behaviour, bugs included).
        stage1: Classifier stage.
        pseudo: Pseudo-mask stage.
        stage2: Segmentation stage.
    """

    data: Path = field(metadata={"help": "patch-label data set directory"})
    out: Path = field(metadata={"help": "run directory (created; finished stages are skipped)"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    device: Literal["cpu", "cuda", "auto"] = field(default="auto", metadata={"help": "where to train"})
    rerun: Stage = field(default="", metadata={"help": "rerun this stage and the later ones"})
    parity: bool = field(default=False, metadata={"help": "reproduce the original code, bugs included"})
    stage1: Stage1Config = field(default_factory=Stage1Config)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)

    def validate(self) -> None:
        """Propagate the global parity switch to every section; check stage 2 only uses generated layers."""
        used = [k for k, w in self.stage2.layer_weights.items() if w > 0]
        missing = [k for k in used if k not in self.pseudo.layers]
        if missing:
            raise ConfigError(f"stage2.layer_weights uses layers {missing} that pseudo.layers does not generate")
        if self.parity:
            self.stage1.parity = True
            self.pseudo.parity = True
            self.stage2.parity = True
            self.stage2.gate.mode = "parity"
