"""Typed hyper-parameters of SGCL (light: no torch import). Defaults are the reference ``npidsslpmcrop.py``."""

from __future__ import annotations

from dataclasses import dataclass, field

from pathseg.data.augment import ViewConfig
from pathseg.errors import ConfigError


def _global_view() -> ViewConfig:
    # RRC 224 (0.2, 1), grey p 0.2, ColorJitter(0.4, 0.4, 0.4, 0.4) always, (horizontal flip: SGCLConfig.hflip).
    return ViewConfig(scale=(0.2, 1.0), color_jitter=(0.4, 0.4, 0.4, 0.4), color_jitter_p=1.0, hed_sigma=0.0,
                      hed_p=0.0, grayscale_p=0.2, blur_p=0.0, flips=False, rot90=False)


def _local_view() -> ViewConfig:
    view = _global_view()
    view.scale = (0.2, 0.56)
    return view


@dataclass
class SGCLConfig:
    """Hyper-parameters of SGCL (``method_args``); see ``docs/methods/sgcl.md``.

    Args:
        proj_dim: Embedding size of the projector (128).
        hidden_dim: Hidden width of the projector (0: the backbone's feature size; 512 for ResNet-18).
        bank_momentum: Weight of the old row in the NPID bank update (0.5).
        num_negatives: Random negatives per global row for L_IR; each local row draws a quarter of them and looks
            them up in all four quadrant banks (65,536).
        temperature: τ of the merged spatial/semantic loss (0.07).
        head_temperature: τ_h of the instance-discrimination and multi-crop losses (0.2).
        dis_threshold: δ in tile units: spatial neighbours satisfy ``0 < distance < δ`` (3).
        semantic: Use semantic positives (aux anchor + kNN + k-means); False: spatial positives only.
        aux_num: Auxiliary anchors per query (1).
        nei_k: kNN background size and number of mined negatives (4096).
        kmeans_k: Centroids of each k-means run (1000).
        kmeans_runs: Number of k-means labellings whose intersection defines "close" (3).
        kmeans_iters: Lloyd iterations (20).
        hard_fraction: Negatives are drawn from the top ``⌊fraction · N⌋`` ranks (0.2).
        beta: (a, b) of the Beta distribution of the sampled ranks ((5, 15)).
        rampup_epochs: R of the ramp-up ``w(e) = exp(−5(1 − min(e, R)/R)²)`` of L_SP (10).
        parity: Compute L_SP exactly as the reference (quirk Q1: +1 per non-positive bank column, +1e-7 in the log).
        detach_hard_negatives: Quirk Q2 of the reference: no gradient through the mined negatives in L_SP (True).
        local_size: Side of the four local (quadrant) crops (96).
        hflip: Random horizontal flip of every view (the reference's only flip).
        views: Augmentation of the global view (size: ``crop_size``).
        local_views: Augmentation of each quadrant crop.
    """

    proj_dim: int = 128
    hidden_dim: int = 0
    bank_momentum: float = 0.5
    num_negatives: int = 65536
    temperature: float = 0.07
    head_temperature: float = 0.2
    dis_threshold: float = 3.0
    semantic: bool = True
    aux_num: int = 1
    nei_k: int = 4096
    kmeans_k: int = 1000
    kmeans_runs: int = 3
    kmeans_iters: int = 20
    hard_fraction: float = 0.2
    beta: tuple[float, float] = (5.0, 15.0)
    rampup_epochs: int = 10
    parity: bool = False
    detach_hard_negatives: bool = True
    local_size: int = 96
    hflip: bool = True
    views: ViewConfig = field(default_factory=_global_view)
    local_views: ViewConfig = field(default_factory=_local_view)

    def validate(self) -> None:
        """Check ranges that do not depend on the data (sizes against N are checked by :func:`check_sizes`)."""
        if self.num_negatives < 4 or self.num_negatives % 4:
            raise ConfigError(f"sgcl: num_negatives must be a positive multiple of 4, got {self.num_negatives}")
        if self.temperature <= 0 or self.head_temperature <= 0 or not 0 <= self.bank_momentum < 1:
            raise ConfigError("sgcl: need temperature > 0, head_temperature > 0, 0 <= bank_momentum < 1")
        if self.dis_threshold <= 0 or self.aux_num < 0 or self.nei_k < 1 or self.local_size < 8:
            raise ConfigError("sgcl: need dis_threshold > 0, aux_num >= 0, nei_k >= 1, local_size >= 8")
        if self.kmeans_k < 1 or self.kmeans_runs < 1 or self.kmeans_iters < 1:
            raise ConfigError("sgcl: need kmeans_k, kmeans_runs, kmeans_iters >= 1")
        if not 0 < self.hard_fraction <= 1 or min(self.beta) <= 0:
            raise ConfigError("sgcl: need 0 < hard_fraction <= 1 and beta parameters > 0")


def check_sizes(cfg: SGCLConfig, n: int) -> None:
    """Sizes that must fit the number of tiles ``n`` (memory-bank length).

    Raises:
        ConfigError: Naming the argument to lower and the size it needs.
    """
    if n < 2:
        raise ConfigError(f"sgcl: the data has {n} tile(s); the memory bank needs at least 2")
    top = int(cfg.hard_fraction * n)
    if cfg.nei_k > top:
        raise ConfigError(
            f"sgcl: method_args.nei_k = {cfg.nei_k} negatives are drawn without replacement from the top "
            f"⌊hard_fraction·N⌋ = ⌊{cfg.hard_fraction}·{n}⌋ = {top} ranks; lower nei_k to <= {top} "
            f"or use at least {int(cfg.nei_k / cfg.hard_fraction) + 1} tiles")
    if cfg.nei_k > n - 1:
        raise ConfigError(f"sgcl: method_args.nei_k = {cfg.nei_k} nearest neighbours need N > nei_k tiles, N = {n}")
    if cfg.semantic and cfg.kmeans_k > n:
        raise ConfigError(f"sgcl: method_args.kmeans_k = {cfg.kmeans_k} centroids for N = {n} tiles; "
                          f"lower kmeans_k to <= {n}")
