"""Typed configuration of UNIT (``method_args`` of ``pathseg pretrain --method unit``; no torch import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pathseg.errors import ConfigError

Stage = Literal["1", "2"]
GeneratorKind = Literal["comod", "resnet"]
Guidance = Literal["proposal_free", "maskrcnn", "none"]
RenderMode = Literal["multichannel", "2channel", "grey", "binary"]


@dataclass
class MaskSourceConfig:
    """Where the pseudo masks come from.

    Args:
        folder: A ``pathseg synth --kind nuclei-masks`` output (tiles + ``cell_mask``); empty = generate on the fly.
        layout: On-the-fly layout (``structured`` crypts + stroma, or ``random``).
        render: On-the-fly rendering (the ablation formats).
        mpp: µm per pixel of the generated masks; set it to that of the real tiles (MoNuSeg: 0.25).
    """

    folder: str = ""
    layout: Literal["structured", "random"] = "structured"
    render: RenderMode = "multichannel"
    mpp: float = 0.25


@dataclass
class UNITConfig:
    """Hyper-parameters of UNIT (defaults: the paper's final stage-1 setting where known, docs/methods/unit.md).

    Args:
        stage: ``1`` trains G, S, D_G, D_S; ``2`` re-initialises S and trains it (with D_S) against the frozen G.
        generator_file: Stage 2: the stage-1 run directory (its ``checkpoints/last.ckpt``) or a weights file
            holding ``g_ema.*`` (or ``method.g_ema.*``) tensors.
        generator: ``comod`` (co-modulated style G) or ``resnet`` (CycleGAN G, the ablation baseline).
        g_width: Channels of G and D_G at 256 px (they double per halving up to ``g_max_channels``).
        g_max_channels: Channel cap of G and D_G (StyleGAN2 paper256: 512).
        z_dim: Noise code, w and global mask code size.
        mapping_layers: Mapping MLP depth (8).
        skip_resolution: Encoder -> decoder skips at resolutions <= this (final config: 64).
        resnet_blocks: Residual blocks of the ``resnet`` G.
        fpn_dim: S's FPN channels (256).
        decoder_hidden: S's mask decoder channels (128, 64).
        ds_width: D_S PatchGAN base width (64).
        ds_layers: D_S stride-2 layers (4).
        guidance: ``maskrcnn`` (the original ISG: Mask R-CNN heads on S's FPN, against the pseudo instances),
            ``proposal_free`` (ISG-lite: foreground + distance maps on G(x)) or ``none``.
        mrcnn_anchor_sizes: ``maskrcnn``: anchor size (px) per FPN level P2-P6 (nuclei: 8-128).
        mrcnn_roi_batch: ``maskrcnn``: RoIs sampled per image (512; fewer is faster on a CPU).
        adv_weight: λ_adv (1).
        cycle_weight: λ_cyc (10).
        seg_weight: λ_seg (6).
        seg_interval: Apply L_seg every this many steps (the original's MRCNN_INTERVAL; 1 = every step).
        s_adversarial: Loss of the S/D_S pair: ``lsgan`` (the legacy loop) or ``logistic``.
        r1_gamma: R1 weight of D_G (STYLEGAN.R1_GAMMA = 1).
        r1_gamma_s: R1 weight of D_S (the legacy loop's penalty; 0 = off).
        r1_interval: Lazy R1 every this many steps (StyleGAN2: 16), weighted by the interval.
        ada: Adaptive augmentation of D_G's inputs.
        ada_target: Target of E[sign(D_G(real))] (0.6).
        ada_kimg: Images for p to move by 1 (ADA: 500).
        ema_kimg: Half-life of G's EMA in thousands of images (paper256: 20).
        lr_g: Adam lr of G (StyleGAN2: 0.0025, betas 0, 0.99).
        lr_d: Adam lr of D_G (0.0025) ; D_S uses ``lr_ds``.
        lr_ds: Adam lr of D_S (betas 0.5, 0.999; S uses the engine's ``optim.lr``).
        real_downsample: Real crops of ``crop_size * real_downsample`` px resized to ``crop_size`` (e.g. 2 for
            0.25 µm/px tiles trained at 0.5 µm/px; set ``masks.mpp`` to match).
        picture_every: Write a picture grid into ``RUN/pictures`` every this many steps (0 = never).
        masks: Source of the pseudo masks.
    """

    stage: str = "1"  # str, not Literal: ``method_args.stage=2`` on the command line arrives as a number
    generator_file: str = ""
    generator: GeneratorKind = "comod"
    g_width: int = 32
    g_max_channels: int = 512
    z_dim: int = 512
    mapping_layers: int = 8
    skip_resolution: int = 64
    resnet_blocks: int = 9
    fpn_dim: int = 256
    decoder_hidden: tuple[int, int] = (128, 64)
    ds_width: int = 64
    ds_layers: int = 4
    guidance: Guidance = "proposal_free"
    mrcnn_anchor_sizes: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128])
    mrcnn_roi_batch: int = 512
    adv_weight: float = 1.0
    cycle_weight: float = 10.0
    seg_weight: float = 6.0
    seg_interval: int = 1
    s_adversarial: Literal["lsgan", "logistic"] = "lsgan"
    r1_gamma: float = 1.0
    r1_gamma_s: float = 1.0
    r1_interval: int = 16
    ada: bool = True
    ada_target: float = 0.6
    ada_kimg: float = 500.0
    ema_kimg: float = 20.0
    lr_g: float = 0.0025
    lr_d: float = 0.0025
    lr_ds: float = 0.0002
    real_downsample: float = 1.0
    picture_every: int = 500
    masks: MaskSourceConfig = field(default_factory=MaskSourceConfig)

    def validate(self) -> None:
        """Check stage inputs and sizes."""
        self.stage = str(self.stage)
        if self.stage not in ("1", "2"):
            raise ConfigError(f"method_args.stage must be 1 or 2, got {self.stage!r}")
        if self.stage == "2" and not self.generator_file:
            raise ConfigError("method_args.generator_file is required for stage 2 (the stage-1 run or G weights)")
        if min(self.g_width, self.z_dim, self.fpn_dim, self.ds_width, self.ds_layers, self.mapping_layers) < 1:
            raise ConfigError("unit: widths, z_dim and layer counts must be >= 1")
        if self.seg_interval < 1 or self.r1_interval < 1:
            raise ConfigError("unit: seg_interval and r1_interval must be >= 1")
        if len(self.mrcnn_anchor_sizes) != 5 or min(self.mrcnn_anchor_sizes) < 1 or self.mrcnn_roi_batch < 1:
            raise ConfigError("method_args.mrcnn_anchor_sizes needs 5 positive sizes (P2-P6) and "
                              "mrcnn_roi_batch must be >= 1")
        if not self.real_downsample > 0:
            raise ConfigError(f"method_args.real_downsample must be positive, got {self.real_downsample}")
        if not self.masks.mpp > 0:
            raise ConfigError(f"method_args.masks.mpp must be positive, got {self.masks.mpp}")
