"""URL views: the same geometry for image and ids, padding ids, photometric parity, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathseg.ssl.url.config import HE_MEAN, HE_STD, ViewConfig
from pathseg.ssl.url.views import (
    Geometry,
    Photometric,
    apply_photometric,
    sample_center,
    sample_geometry,
    warp_ids,
    warp_image,
)


def _grid_ids(h: int = 96, w: int = 120, block: int = 8) -> torch.Tensor:
    rr, cc = torch.meshgrid(torch.arange(h) // block, torch.arange(w) // block, indexing="ij")
    return rr * 100 + cc


def test_identity_warp_is_a_central_crop() -> None:
    img = torch.rand(3, 96, 120) * 255
    ids = _grid_ids()
    out = warp_image(img, (60.0, 48.0), Geometry(), 1.0, 32)
    assert torch.allclose(out, img[:, 32:64, 44:76], atol=1e-3)
    assert torch.equal(warp_ids(ids, (60.0, 48.0), Geometry(), 32, 1), ids[32:64, 44:76])
    assert torch.equal(warp_ids(ids, (60.0, 48.0), Geometry(), 32, 2), ids[32:64:2, 44:76:2])


@pytest.mark.parametrize("geom", [Geometry(angle=90), Geometry(flip_h=True), Geometry(flip_v=True, angle=-90)])
def test_right_angles_and_flips_are_exact(geom: Geometry) -> None:
    ids = _grid_ids()
    crop = ids[32:64, 44:76]
    out = warp_ids(ids, (60.0, 48.0), geom, 32, 1)
    expected = crop
    if geom.angle:
        expected = torch.rot90(expected, -1 if geom.angle > 0 else 1, (0, 1))
    if geom.flip_h:
        expected = expected.flip(1)
    if geom.flip_v:
        expected = expected.flip(0)
    assert torch.equal(out, expected)


def test_ids_follow_the_image_under_random_geometry() -> None:
    """An image painted with its superpixel ids, warped with nearest (parity), carries exactly the warped ids."""
    cfg = ViewConfig(parity=True)
    ids = _grid_ids(200, 200, 10)
    painted = ids.float().unsqueeze(0).repeat(3, 1, 1) + 1  # +1: parity pads the image with 0 and the ids with 0
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        geom = sample_geometry(cfg, gen, max_shift=20)
        img = warp_image(painted, (100.0, 100.0), geom, 1.0, 64, parity=True)
        sp = warp_ids(ids + 1, (100.0, 100.0), geom, 64, 1, parity=True)
        assert torch.equal(img[0].round().long(), sp)


def test_bilinear_views_keep_ids_aligned_inside_superpixels() -> None:
    ids = _grid_ids(200, 200, 20)
    painted = (ids % 7).float().unsqueeze(0).repeat(3, 1, 1) * 30
    geom = Geometry(angle=33, shear=4, shift=(5.0, -7.0), flip_h=True)
    img = warp_image(painted, (100.0, 100.0), geom, 1.0, 64)
    sp = warp_ids(ids, (100.0, 100.0), geom, 64, 1)
    agree = (img[0] - (sp % 7).float() * 30).abs() < 1
    assert agree.float().mean() > 0.8  # disagreements only on superpixel borders (interpolation)


def test_padding_ids() -> None:
    ids = _grid_ids(40, 40, 10)
    geom = Geometry(angle=45)
    sp = warp_ids(ids, (20.0, 20.0), geom, 64, 1)
    assert (sp == -1).any() and set(sp[sp >= 0].unique().tolist()) <= set(ids.unique().tolist())
    assert warp_ids(ids, (20.0, 20.0), geom, 64, 1, parity=True).min() == 0  # the original filled ids with 0


def test_contrast_parity_is_a_noop() -> None:
    img = torch.rand(3, 16, 16) * 200 + 20
    p = Photometric(order=(3,), contrast=1.2)
    assert torch.equal(apply_photometric(img, p, parity=True), img)
    changed = apply_photometric(img, p)
    assert changed.std() > img.std()
    assert torch.allclose(changed.mean(dim=(1, 2)), img.mean(dim=(1, 2)), atol=0.5)


def test_zoom_out_is_antialiased_unless_parity() -> None:
    stripes = torch.zeros(3, 128, 128)
    stripes[:, :, ::2] = 255
    smooth = warp_image(stripes, (64.0, 64.0), Geometry(), 0.5, 32)
    nearest = warp_image(stripes, (64.0, 64.0), Geometry(), 0.5, 32, parity=True)
    assert torch.allclose(smooth, torch.full_like(smooth, 127.5), atol=1.0)  # averaged
    assert set(nearest.unique().tolist()) <= {0.0, 255.0}  # aliased: every second column


def test_rendered_item_shapes_and_normalisation() -> None:
    from pathseg.ssl.url.canvas import build_item

    cfg = ViewConfig(patch_size=64, batched=False)
    img = torch.full((3, 80, 80), 128, dtype=torch.uint8)
    gen = torch.Generator().manual_seed(1)
    out = build_item(img, _grid_ids(80, 80), (40.0, 40.0), cfg, "joint", gen, 32, HE_MEAN, HE_STD)
    assert out["scales1"].shape == (5, 3, 32, 32) and out["sp1"].shape == (16, 16)
    assert torch.equal(out["image2"], out["scales2"][0])
    assert out["scales1"].abs().max() < 10
    with pytest.raises(ValueError, match="divisible"):
        build_item(img, None, (40.0, 40.0), cfg, "1", gen, 33, HE_MEAN, HE_STD)
    with pytest.raises(ValueError, match="superpixel ids"):
        build_item(img, None, (40.0, 40.0), cfg, "2", gen, 32, HE_MEAN, HE_STD)


def test_sample_center_stays_inside() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        x, y = sample_center((200, 1000), 256, gen)
        assert y == 100 and 128 <= x <= 1000 - 128
    assert sample_center((100, 100), 256, gen) == (50, 50)


def test_views_are_seeded_from_the_global_rng_not_a_constant(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathseg.ssl.url.config import SuperpixelConfig
    from pathseg.ssl.url.data import URLDataset
    from ssl_helpers import make_unlabeled

    root = make_unlabeled(tmp_path / "data", n=2, size=72)
    views = ViewConfig(patch_size=64, scales=[1.0, 0.5], batched=False)
    ds = URLDataset(root, [], "2", views, SuperpixelConfig(region_size=12), crop_size=32, progress=False)
    torch.manual_seed(0)
    a = ds[0]
    b = ds[0]
    torch.manual_seed(0)
    c = ds[0]
    assert not torch.equal(a["image1"], b["image1"])  # a fresh draw every time
    assert torch.equal(a["image1"], c["image1"]) and torch.equal(a["sp2"], c["sp2"])  # reproducible from the seed
    shared = np.intersect1d(a["sp1"][a["sp1"] >= 0].numpy(), a["sp2"][a["sp2"] >= 0].numpy())
    assert shared.size > 0
