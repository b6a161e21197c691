"""Registers SGCL as pretraining method ``sgcl`` (imported by :func:`pathseg.ssl.load_methods`)."""

from __future__ import annotations

from typing import Any

from pathseg.ssl.api import METHODS, BuildContext, MethodSpec
from pathseg.ssl.sgcl.config import SGCLConfig, check_sizes


def build_model(cfg: SGCLConfig, ctx: BuildContext) -> Any:
    """The :class:`~pathseg.ssl.sgcl.method.SGCL` model; its memory banks get one row per tile of ``ctx.data``."""
    import torch

    from pathseg.ssl.sgcl.data import load_tile_table
    from pathseg.ssl.sgcl.method import SGCL

    table = load_tile_table(ctx.data, ctx.splits)
    check_sizes(cfg, len(table))
    slides = torch.tensor(table.slide_indices(), dtype=torch.long)
    xy = torch.tensor([table.rows, table.cols], dtype=torch.float32).T
    return SGCL(ctx.backbone, slides, xy, seed=ctx.seed, proj_dim=cfg.proj_dim, hidden_dim=cfg.hidden_dim,
                bank_momentum=cfg.bank_momentum, num_negatives=cfg.num_negatives, temperature=cfg.temperature,
                head_temperature=cfg.head_temperature, dis_threshold=cfg.dis_threshold, semantic=cfg.semantic,
                aux_num=cfg.aux_num, nei_k=cfg.nei_k, kmeans_k=cfg.kmeans_k, kmeans_runs=cfg.kmeans_runs,
                kmeans_iters=cfg.kmeans_iters, hard_fraction=cfg.hard_fraction, beta=tuple(cfg.beta),  # type: ignore[arg-type]
                rampup_epochs=cfg.rampup_epochs, parity=cfg.parity, detach_hard_negatives=cfg.detach_hard_negatives)


def build_transform(cfg: SGCLConfig, ctx: BuildContext) -> Any:
    """Global view (``crop_size``) + four quadrant views (``local_size``): :class:`~pathseg.ssl.sgcl.data.SGCLViews`."""
    from torchvision.transforms import v2

    from pathseg.data.augment import view_transform
    from pathseg.ssl.sgcl.data import SGCLViews

    def pipeline(view: Any, size: int) -> Any:
        kwargs = {f: getattr(view, f) for f in view.__dataclass_fields__}
        tf = view_transform(size, ctx.mean, ctx.std, **kwargs)
        return v2.Compose([v2.RandomHorizontalFlip(), tf]) if cfg.hflip else tf

    return SGCLViews(pipeline(cfg.views, ctx.crop_size), pipeline(cfg.local_views, cfg.local_size))


def build_dataset(cfg: SGCLConfig, ctx: BuildContext, transform: Any) -> Any:
    """Tiles of a tile index / coordinates CSV / data set with ``tiles.csv`` (row i = memory-bank row i)."""
    from pathseg.ssl.sgcl.data import SGCLDataset, load_tile_table

    return SGCLDataset(load_tile_table(ctx.data, ctx.splits), transform)


METHODS.add("sgcl", MethodSpec(
    SGCLConfig, build_model, build_transform, build_dataset,
    description="SGCL: spatial (tile-grid) and semantic positives, Beta-sampled negatives, quadrant multi-crop"))
