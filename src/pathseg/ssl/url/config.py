"""Typed configuration of URL (kept free of torch so that the CLI stays fast)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pathseg.errors import ConfigError

STAGES = ("1", "2", "joint")
Stage = Literal["1", "2", "joint"]

#: H&E statistics of the spec (§2.4): img/255, then per-channel mean/std.
HE_MEAN = (0.689, 0.504, 0.653)
HE_STD = (0.200, 0.228, 0.177)


@dataclass
class SuperpixelConfig:
    """How superpixels are made (spec §1.3). Computed once per image and cached beside the data.

    Args:
        backend: ``slic`` (scikit-image), ``opencv_slico`` (OpenCV ``ximgproc`` SLICO, the original; needs
            opencv-contrib) or ``grid`` (fixed square blocks, the spec's ``fixed_sp`` ablation; not cached).
        region_size: Superpixel side in pixels; SLIC gets ``n_segments = H·W / region_size²``.
        compactness: SLIC compactness (the OpenCV ``ruler``; the spec's 10).
        slic_zero: scikit-image's SLICO mode (adaptive compactness), the analogue of the original OpenCV SLICO.
        iterations: SLIC iterations (10 in the original).
        sigma: Gaussian smoothing before SLIC (0 in the original).
        cache_dir: Where to cache the maps; empty = ``DIR/<split>/superpixels``.
    """

    backend: Literal["slic", "opencv_slico", "grid"] = "slic"
    region_size: int = 32
    compactness: float = 10.0
    slic_zero: bool = True
    iterations: int = 10
    sigma: float = 0.0
    cache_dir: str = ""

    def validate(self) -> None:
        """Check the numbers are usable."""
        if self.region_size < 2:
            raise ConfigError(f"superpixels.region_size must be >= 2, got {self.region_size}")
        if self.iterations < 1:
            raise ConfigError(f"superpixels.iterations must be >= 1, got {self.iterations}")


@dataclass
class ViewConfig:
    """Paired views of an image and its superpixel ids (spec §1.2, §1.4, §2.3).

    The side of each view is the engine's ``crop_size`` (256 in the spec) and the normalisation its ``mean``/``std``
    (the URL configs set the spec's H&E statistics, :data:`HE_MEAN`, :data:`HE_STD`).

    Args:
        patch_size: Side of the stored patch the views are cut from (768 in the spec); larger images give a
            random patch centre per sample, smaller ones are used whole (padding is ignored by the losses).
        dense_stride: Downsampling of the id map to the dense head's resolution (2: 256 → 128).
        scales: Zoom factors of the image-level scales, native first (the spec's 384..1536 of a 768 patch).
        rotate: Rotation range in degrees (±179).
        shear: Shear range in degrees (±5).
        translate: Translation of the first affine, fraction of the transformed canvas (±1 %).
        dense_translate: Extra translation of the dense views, fraction of ``patch_size`` (±10 %).
        flip: Horizontal and vertical flips with p = 0.5 each.
        hue: Hue shift, in OpenCV hue units out of 180 (±8).
        saturation: Saturation factor range ``1 ± saturation``.
        brightness: Additive brightness range (±26 of 255).
        contrast: Contrast factor range ``(low, high)``.
        noise_std: Maximal Gaussian noise σ as a fraction of 255 (0.05).
        blur_kernels: Kernel sides for Gaussian and median blur.
        parity: Reproduce the original's quirks where they change the inputs: nearest-neighbour RGB
            interpolation (scales and rotations), zero padding, superpixel padding labelled id 0, no-op contrast.
        batched: Render the views batched in the training step, on the training device (the data workers only
            decode, cut the canvas and draw the random parameters); ``false``: render them per sample in the
            workers (the same views, for hosts with many CPU cores and no GPU).
    """

    patch_size: int = 768
    dense_stride: int = 2
    scales: list[float] = field(default_factory=lambda: [1.0, 0.5, 2 / 3, 4 / 3, 2.0])
    rotate: float = 179.0
    shear: float = 5.0
    translate: float = 0.01
    dense_translate: float = 0.10
    flip: bool = True
    hue: float = 8.0
    saturation: float = 0.2
    brightness: float = 26.0
    contrast: tuple[float, float] = (0.75, 1.25)
    noise_std: float = 0.05
    blur_kernels: list[int] = field(default_factory=lambda: [1, 3, 5])
    parity: bool = False
    batched: bool = True

    def validate(self) -> None:
        """Check sizes and scales."""
        if self.dense_stride < 1:
            raise ConfigError(f"views.dense_stride must be >= 1, got {self.dense_stride}")
        if not self.scales or any(s <= 0 for s in self.scales) or self.scales[0] != 1.0:
            raise ConfigError(f"views.scales must be positive zoom factors, the native 1.0 first; got {self.scales}")
        if any(k < 1 or k % 2 == 0 for k in self.blur_kernels):
            raise ConfigError(f"views.blur_kernels must be odd positive sides, got {self.blur_kernels}")


@dataclass
class URLConfig:
    """The ``url`` section of a pretraining config.

    Args:
        stage: ``"1"`` (encoder, image-level task), ``"2"`` (decoder + dense head on the superpixel and pixel
            tasks, encoder frozen) or ``"joint"`` (all three tasks at once).
        stage1_checkpoint: Stage 2: the stage-1 run directory (its ``encoder.safetensors`` is loaded).
        encoder_file: Stage 2 (alternative): any encoder or weights file to start from.
        temperature: τ of the three tasks.
        pixel_negatives: ``prototype`` (the original) or ``pixel`` (the paper figure's per-pixel negatives).
        superpixel_negatives: ``both_views`` (the method) or ``other_view`` (the older ablation).
        weights: Weights of the image-, superpixel- and pixel-level terms.
        global_dim: Size of the image-level embedding.
        dense_dim: Channels of the dense embedding.
        dense_hidden: Channels of the dense head's first 1×1 convolution.
        decoder: ``smp`` (smp's U-Net, what ``pathseg finetune --decoder unet`` loads; the dense head reads its
            32-channel H/2 block) or ``paper`` (the original's transposed-conv decoder 512-256-128-64; its export
            loads into the ``url_unet`` segmentation model).
        parity: Reproduce every quirk of the original that changes a loss value: encoder BatchNorm statistics
            updated in stage 2 and everything ``views.parity`` does.
        views: View settings.
        superpixels: Superpixel settings.
    """

    stage: str = "1"
    stage1_checkpoint: str = ""
    encoder_file: str = ""
    temperature: float = 0.3
    pixel_negatives: Literal["prototype", "pixel"] = "prototype"
    superpixel_negatives: Literal["both_views", "other_view"] = "both_views"
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    global_dim: int = 128
    dense_dim: int = 32
    dense_hidden: int = 64
    decoder: Literal["smp", "paper"] = "smp"
    parity: bool = False
    views: ViewConfig = field(default_factory=ViewConfig)
    superpixels: SuperpixelConfig = field(default_factory=SuperpixelConfig)

    def validate(self) -> None:
        """Check values (the stage-2 starting point is checked by :meth:`check_start`, at run time)."""
        if self.stage not in STAGES:
            raise ConfigError(f"url stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.stage1_checkpoint and self.encoder_file:
            raise ConfigError("set only one of method_args.stage1_checkpoint and method_args.encoder_file")
        if self.temperature <= 0:
            raise ConfigError(f"url.temperature must be positive, got {self.temperature}")
        self.views.validate()
        self.superpixels.validate()

    def check_start(self) -> None:
        """Stage 2 needs a stage-1 encoder (the original's shipped config trained on a frozen random one)."""
        if self.stage == "2" and not (self.stage1_checkpoint or self.encoder_file):
            raise ConfigError(
                "url stage 2 trains on a frozen encoder: set method_args.stage1_checkpoint=RUN_DIR (a stage-1 run) "
                "or method_args.encoder_file=FILE.safetensors"
            )
