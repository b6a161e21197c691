"""Registers URL as pretraining method ``url`` (imported by :func:`pathseg.ssl.load_methods`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from pathseg.errors import ConfigError
from pathseg.ssl.api import METHODS, BuildContext, MethodSpec
from pathseg.ssl.url.config import Stage, URLConfig


def build_model(cfg: URLConfig, ctx: BuildContext) -> Any:
    """The :class:`~pathseg.ssl.url.method.URLMethod` of ``cfg.stage`` (stage 2 loads the stage-1 encoder)."""
    from pathseg.ssl.url.method import URLMethod, stage1_weights

    cfg.check_start()
    if ctx.crop_size % 32:
        raise ConfigError(f"url: crop_size must be a multiple of 32 (the U-Net's stride), got {ctx.crop_size}")
    method = URLMethod(
        ctx.backbone,
        stage=cast(Stage, cfg.stage),
        freeze_bn=not cfg.parity,
        global_dim=cfg.global_dim,
        dense_dim=cfg.dense_dim,
        dense_hidden=cfg.dense_hidden,
        dense_stride=cfg.views.dense_stride,
        temperature=cfg.temperature,
        pixel_negatives=cfg.pixel_negatives,
        superpixel_negatives=cfg.superpixel_negatives,
        weights=cfg.weights,
        decoder=cfg.decoder,
        views=_renderer(cfg, ctx),
    )
    start = stage1_weights(cfg)
    if start is not None:  # weights are loaded by the factory, never inside the module's constructor
        method.load_encoder(start)
    return method


def _renderer(cfg: URLConfig, ctx: BuildContext) -> Any:
    """The batched view renderer of ``views.batched`` (plain values only), else ``None``."""
    from pathseg.ssl.url.batched import BatchedViews
    from pathseg.ssl.url.method import effective_views

    views = effective_views(cfg)
    if not views.batched:
        return None
    return BatchedViews(cast(Stage, cfg.stage), views.scales, ctx.crop_size, views.dense_stride, ctx.mean, ctx.std,
                        views.parity)


def _no_transform(image: Any) -> dict[str, Any]:
    raise NotImplementedError("url builds its own views in its dataset (image and superpixels together)")


def build_transform(cfg: URLConfig, ctx: BuildContext) -> Callable[[Any], dict[str, Any]]:
    """Unused: URL's dataset warps the image and its superpixel map together."""
    return _no_transform


def build_dataset(cfg: URLConfig, ctx: BuildContext, transform: Any) -> Any:
    """Two views per image of a canonical data set or per tile of a tile index (read at its µm/px), with cached
    superpixels (computed before training)."""
    from pathseg.ssl.url.data import URLDataset
    from pathseg.ssl.url.method import effective_views

    stage = cast(Stage, cfg.stage)
    views = effective_views(cfg)
    return URLDataset(ctx.data, ctx.splits, stage, views, cfg.superpixels, ctx.crop_size, ctx.mean, ctx.std)


METHODS.add(
    "url",
    MethodSpec(
        URLConfig,
        build_model,
        build_transform,
        build_dataset,
        description="URL: image-, superpixel- and pixel-level contrast for tissue segmentation (two stages)",
    ),
)
