"""Registers PLM as pretraining method ``plm`` (imported by :func:`pathseg.ssl.load_methods`)."""

from __future__ import annotations

from typing import Any

from pathseg.ssl.api import METHODS, BuildContext, MethodSpec
from pathseg.ssl.plm.config import PLMConfig


def build_model(cfg: PLMConfig, ctx: BuildContext) -> Any:
    """The :class:`~pathseg.ssl.plm.model.PLM` model, with ``cfg`` unpacked into constructor arguments."""
    from pathseg.ssl.plm.model import PLM

    return PLM(ctx.backbone, queue_size=cfg.queue_size, momentum=cfg.momentum, temperature=cfg.temperature,
               loss_lambda=cfg.loss_lambda, proj_dim=cfg.proj_dim, hidden_dim=cfg.hidden_dim,
               grid_size=cfg.grid_size, dense_normalize=cfg.dense_normalize, matching_layer=cfg.matching_layer,
               shuffle_bn=cfg.shuffle_bn, shuffle_groups=cfg.shuffle_groups, head_init=cfg.head_init,
               backbone_init=cfg.backbone_init)


def build_transform(cfg: PLMConfig, ctx: BuildContext) -> Any:
    """Two views with geometry records: ``{"view1", "view2", "crop1", "crop2"}``."""
    from pathseg.ssl.plm.views import RecordedViews, photometric_transform

    v = cfg.views
    colour = photometric_transform(ctx.crop_size, ctx.mean, ctx.std, v.color_jitter, v.color_jitter_p, v.hed_sigma,
                                   v.hed_p, v.grayscale_p, v.blur_p, v.blur_sigma)
    return RecordedViews(ctx.crop_size, colour, v.scale, v.ratio, v.hflip, v.vflip, v.rot90)


METHODS.add("plm", MethodSpec(PLMConfig, build_model, build_transform,
                              description="PLM: MoCo v2 + dense term with exact-overlap matching, λ 0.5, τ 0.2"))
