"""H&E augmentations (pathseg.data.augment) and the unlabeled image dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.color import hed2rgb, rgb2hed

from pathseg.data.augment import HEDJitter, RandomRot90, ViewConfig, hed_to_rgb, rgb_to_hed, two_views
from pathseg.data.unlabeled import UnlabeledImages, random_region
from pathseg.errors import DataError
from ssl_helpers import make_unlabeled, one_thread

_threads = pytest.fixture(autouse=True)(one_thread)


def test_hed_conversion_matches_skimage() -> None:
    rgb = np.random.default_rng(0).random((6, 7, 3))
    ours = rgb_to_hed(torch.from_numpy(rgb).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    assert np.allclose(ours, rgb2hed(rgb), atol=1e-10)
    back = hed_to_rgb(torch.from_numpy(rgb2hed(rgb)).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    assert np.allclose(back, hed2rgb(rgb2hed(rgb)), atol=1e-10)


def test_hed_jitter_follows_tellez_formula() -> None:
    img = torch.rand(3, 5, 5) * 0.8 + 0.1
    torch.manual_seed(4)
    out = HEDJitter(sigma=0.1, p=1.0)(img)
    torch.manual_seed(4)
    torch.rand(())  # the apply/skip draw
    alpha = 1 + (torch.rand(3, dtype=torch.float64) * 2 - 1) * 0.1
    beta = (torch.rand(3, dtype=torch.float64) * 2 - 1) * 0.1
    hed = rgb2hed(img.permute(1, 2, 0).double().numpy())
    expected = hed2rgb(hed * alpha.numpy() + beta.numpy())
    assert np.allclose(out.permute(1, 2, 0).numpy(), expected, atol=1e-5)
    assert torch.equal(HEDJitter(sigma=0.1, p=0.0)(img), img)


def test_rot90_is_a_rotation() -> None:
    img = torch.arange(12.0).view(1, 3, 4)
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = RandomRot90()(img)
        seen.add(tuple(out.shape))
        assert sorted(out.flatten().tolist()) == sorted(img.flatten().tolist())
    assert seen == {(1, 3, 4), (1, 4, 3)}


def test_two_views_shapes_and_seeding() -> None:
    image = (np.random.default_rng(1).random((80, 90, 3)) * 255).astype(np.uint8)
    t = two_views(ViewConfig(), 48, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    torch.manual_seed(0)
    a = t(image)
    torch.manual_seed(0)
    b = t(image)
    assert set(a) == {"view1", "view2"} and a["view1"].shape == (3, 48, 48) and a["view1"].dtype == torch.float32
    assert torch.equal(a["view1"], b["view1"]) and torch.equal(a["view2"], b["view2"])
    assert not torch.equal(a["view1"], a["view2"])


def test_unlabeled_images_all_splits_and_regions(tmp_path: Path) -> None:
    root = make_unlabeled(tmp_path / "d", n=3, size=40, splits=("train", "test"))
    ds = UnlabeledImages(root)
    assert len(ds) == 6 and ds[0]["image"].shape == (40, 40, 3)
    assert len(UnlabeledImages(root, splits=["test"])) == 3
    assert UnlabeledImages(root, crop_size=24)[1]["image"].shape == (24, 24, 3)
    assert random_region(np.zeros((10, 12, 3), np.uint8), 16).shape == (16, 16, 3)
    with pytest.raises(DataError):
        UnlabeledImages(root, splits=["val"])
