"""The ``paper`` view preset: the official MoCo v2 / DenseCL augmentation, beside the H&E recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from pathseg.config import from_dict
from pathseg.data.augment import ViewConfig, two_views
from pathseg.errors import ConfigError
from pathseg.ssl.densecl import DenseCLConfig
from ssl_helpers import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)


def test_paper_preset_is_the_official_recipe_in_order() -> None:
    t = two_views(ViewConfig(preset="paper"), 64, (0.5,) * 3, (0.25,) * 3).transforms[0]
    ops = list(t.transforms)
    kinds = [type(op).__name__ for op in ops]
    assert kinds == ["ToImage", "RandomResizedCrop", "RandomApply", "RandomGrayscale", "RandomApply",
                     "RandomHorizontalFlip", "ToDtype", "Normalize"]
    crop, jitter, grey, blur, flip = ops[1], ops[2], ops[3], ops[4], ops[5]
    assert tuple(crop.size) == (64, 64) and tuple(crop.scale) == (0.2, 1.0)
    assert crop.ratio == pytest.approx((3 / 4, 4 / 3))  # torchvision's default, as main_moco.py
    cj = jitter.transforms[0]
    assert isinstance(cj, v2.ColorJitter) and jitter.p == 0.8
    assert cj.brightness == pytest.approx((0.6, 1.4)) and cj.contrast == pytest.approx((0.6, 1.4))
    assert cj.saturation == pytest.approx((0.6, 1.4)) and cj.hue == pytest.approx((-0.1, 0.1))
    assert grey.p == 0.2 and flip.p == 0.5
    gb = blur.transforms[0]
    assert isinstance(gb, v2.GaussianBlur) and blur.p == 0.5 and list(gb.sigma) == pytest.approx([0.1, 2.0])
    assert gb.kernel_size[0] >= 2 * 3 * 2 + 1  # covers ±3 σ_max, like PIL's radius-σ blur


def _orientation(view: torch.Tensor) -> tuple[bool, bool]:
    """(top darker than bottom, left darker than right) of a view (channel mean)."""
    g = view.mean(dim=0)
    return bool(g[:8].mean() < g[-8:].mean()), bool(g[:, :8].mean() < g[:, -8:].mean())


def test_paper_preset_flips_horizontally_only_and_he_preset_also_vertically() -> None:
    yy, xx = np.mgrid[:96, :96]
    image = np.repeat(((yy + xx) * 255 / 190)[..., None], 3, axis=2).astype(np.uint8)  # grey ramp ↘
    counts = {}
    for preset in ("paper", "he"):
        t = two_views(ViewConfig(preset=preset), 48, (0.5,) * 3, (0.25,) * 3)  # type: ignore[arg-type]
        seen = []
        for seed in range(60):
            torch.manual_seed(seed)
            seen.append(_orientation(t(image)["view1"]))
        counts[preset] = (sum(v for v, _ in seen), sum(h for _, h in seen))
    vertical, horizontal = counts["paper"]
    assert vertical == 60  # never flipped upside down nor rotated (the photometric steps are monotone)
    assert 15 <= horizontal <= 45  # flipped left-right about half of the time
    assert counts["he"][0] < 50  # the H&E recipe flips vertically / rotates


def test_paper_preset_refuses_recipe_fields_and_parses_from_config() -> None:
    cfg = from_dict(DenseCLConfig, {"views": {"preset": "paper"}})
    assert cfg.views.preset == "paper"
    with pytest.raises(ConfigError, match=r"views\.hed_sigma"):
        from_dict(DenseCLConfig, {"views": {"preset": "paper", "hed_sigma": 0.2}})
    with pytest.raises(ConfigError):
        from_dict(DenseCLConfig, {"views": {"preset": "imagenet"}})
