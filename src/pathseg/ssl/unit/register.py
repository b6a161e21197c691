"""Registers UNIT as pretraining method ``unit`` (imported by :func:`pathseg.ssl.load_methods`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from pathseg.errors import ConfigError
from pathseg.ssl.api import METHODS, BuildContext, MethodSpec
from pathseg.ssl.unit.config import Stage, UNITConfig


def build_model(cfg: UNITConfig, ctx: BuildContext) -> Any:
    """The :class:`~pathseg.ssl.unit.method.UNITMethod` of ``cfg.stage``; stage 2 loads the stage-1 G (EMA).

    Pictures go to ``<ctx.extra["out"]>/pictures`` when the engine passes the run directory as ``extra["out"]``.
    """
    from pathseg.errors import PathsegError
    from pathseg.ssl.unit.discriminators import AdaptiveAugment, PatchDiscriminator, StyleDiscriminator
    from pathseg.ssl.unit.generator import CoModGenerator, ResNetGenerator
    from pathseg.ssl.unit.losses import LossWeights
    from pathseg.ssl.unit.method import UNITMethod, generator_state
    from pathseg.ssl.unit.segmenter import Segmenter

    cfg.validate()
    size = ctx.crop_size
    if size < 32 or size & (size - 1):
        raise ConfigError(f"unit: crop_size must be a power of two >= 32 (G's resolution), got {size}")
    g: Any = (CoModGenerator(size, cfg.g_width, cfg.g_max_channels, cfg.z_dim, cfg.mapping_layers,
                             cfg.skip_resolution) if cfg.generator == "comod" else
              ResNetGenerator(cfg.g_width, cfg.resnet_blocks))
    if cfg.stage == "2":
        try:
            g.load_state_dict(generator_state(cfg.generator_file), strict=True)
        except RuntimeError as exc:
            raise PathsegError(f"stage-1 G does not fit method_args (same generator settings needed): "
                               f"{str(exc).splitlines()[0]}", Path(cfg.generator_file)) from None
    branch = None
    if cfg.guidance == "maskrcnn":
        from pathseg.ssl.unit.guidance import MaskRCNNBranch

        branch = MaskRCNNBranch(cfg.fpn_dim, cfg.mrcnn_anchor_sizes, roi_batch=cfg.mrcnn_roi_batch)
    s = Segmenter(ctx.backbone, cfg.fpn_dim, cfg.decoder_hidden, instance_head=cfg.guidance != "none",
                  instance_branch=branch)
    d_g = StyleDiscriminator(size, cfg.g_width, cfg.g_max_channels) if cfg.stage == "1" else None
    ada = AdaptiveAugment(cfg.ada_target) if cfg.ada and cfg.stage == "1" else None
    out = ctx.extra.get("out")
    return UNITMethod(
        ctx.backbone, cast(Stage, cfg.stage), g, s, d_g, PatchDiscriminator(cfg.ds_width, cfg.ds_layers),
        LossWeights(cfg.adv_weight, cfg.cycle_weight, cfg.seg_weight), guidance=cfg.guidance,
        s_adversarial=cfg.s_adversarial, r1=(cfg.r1_gamma, cfg.r1_gamma_s, cfg.r1_interval), ada=ada,
        ada_kimg=cfg.ada_kimg, ema_kimg=cfg.ema_kimg, lrs=(cfg.lr_g, cfg.lr_d, cfg.lr_ds),
        seg_interval=cfg.seg_interval, picture_every=cfg.picture_every,
        picture_dir=Path(out) / "pictures" if out else None, seed=ctx.seed)


def _no_transform(image: Any) -> dict[str, Any]:
    raise NotImplementedError("unit builds its items in its own dataset (real tile + pseudo mask)")


def build_transform(cfg: UNITConfig, ctx: BuildContext) -> Callable[[Any], dict[str, Any]]:
    """Unused: UNIT's dataset pairs each real crop with an independent pseudo mask."""
    return _no_transform


def build_dataset(cfg: UNITConfig, ctx: BuildContext, transform: Any) -> Any:
    """Real H&E crops (data set, tile index or image folder) + pseudo masks (on the fly or ``masks.folder``)."""
    from pathseg.ssl.unit.data import UNITDataset, real_source

    return UNITDataset(real_source(ctx.data, ctx.splits), ctx.crop_size, cfg.masks, ctx.mean, ctx.std,
                       cfg.real_downsample)


METHODS.add("unit", MethodSpec(UNITConfig, build_model, build_transform, build_dataset,
                               description="UNIT: unpaired mask <-> H&E translation with instance guidance (2 stages)"))
