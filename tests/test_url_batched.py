"""URL's batched views: equal to the per-view reference, ids aligned with the image, the loss unchanged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from pathseg.ssl.url.batched import BatchedViews
from pathseg.ssl.url.batched_color import rgb_hue_shift, saturate
from pathseg.ssl.url.canvas import cut_canvas, raw_item, render_item, stage_scales
from pathseg.ssl.url.config import HE_MEAN, HE_STD, ViewConfig
from pathseg.ssl.url.median import median_blur, median_network
from pathseg.ssl.url.views import Geometry, warp_image
from ssl_helpers import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)
CROP = 32


def _ids(h: int, w: int, block: int) -> torch.Tensor:
    rr, cc = torch.meshgrid(torch.arange(h) // block, torch.arange(w) // block, indexing="ij")
    return rr * 100 + cc


def _items(cfg: ViewConfig, stage: str, n: int = 6, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Raw samples of random images; every blur/noise op appears (op of view v of item i: (2i + v) mod 3)."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        img = (torch.rand(3, 90, 120, generator=gen) * 255).to(torch.uint8)
        item = raw_item(img, _ids(90, 120, 7), (20.0 + 13 * i, 45.5), cfg, stage, gen, CROP)  # type: ignore[arg-type]
        item["photo"][:, 0] = torch.tensor([(2 * i) % 3, (2 * i + 1) % 3], dtype=torch.float64)
        item["photo"][:, 1:3] = torch.tensor([[5.0, 3.0], [3.0, 3.0]]) if i % 2 else item["photo"][:, 1:3]
        items.append(item)
    return items


def _reference(items: list[dict[str, torch.Tensor]], cfg: ViewConfig, stage: str) -> dict[str, torch.Tensor]:
    outs = [render_item(it, stage, stage_scales(cfg, stage), CROP, cfg.dense_stride, cfg.parity,  # type: ignore[arg-type]
                        HE_MEAN, HE_STD) for it in items]
    return {k: torch.stack([o[k] for o in outs]) for k in outs[0]}


@pytest.mark.parametrize("k", [3, 5])
def test_median_network_is_the_exact_median(k: int) -> None:
    x = torch.randint(0, 6, (2, 3, 17, 19)).float()  # many ties
    pad = F.pad(x, (k // 2,) * 4, mode="reflect")
    expected = pad.unfold(2, k, 1).unfold(3, k, 1).reshape(2, 3, 17, 19, -1).median(dim=-1).values
    assert torch.equal(median_blur(x, k), expected)
    assert len(median_network(k * k)) < {3: 25, 5: 120}[k]  # pruned (Batcher's 16/32-line sorts: 63/191 steps)


def test_hue_and_saturation_match_torchvision() -> None:
    from torchvision.transforms.v2 import functional as TF

    x = torch.rand(3, 2, 3, 9, 9)
    factors = [0.04, -0.03, 0.2]
    shift = torch.tensor(factors).view(-1, 1, 1, 1, 1)
    expected = torch.stack([TF.adjust_hue(x[i], f) for i, f in enumerate(factors)])
    assert torch.allclose(rgb_hue_shift(x, shift), expected, atol=2e-6)
    sat = torch.tensor([0.8, 1.0, 1.2]).view(-1, 1, 1, 1, 1)
    expected = torch.stack([TF.adjust_saturation(x[i], float(f)) for i, f in enumerate(sat.flatten())])
    assert torch.allclose(saturate(x, sat), expected, atol=1e-6)


@pytest.mark.parametrize("parity", [False, True])
@pytest.mark.parametrize("stage", ["1", "2", "joint"])
def test_batched_views_equal_the_per_view_reference(stage: str, parity: bool) -> None:
    cfg = ViewConfig(patch_size=64, parity=parity)
    items = _items(cfg, stage)
    ref = _reference(items, cfg, stage)
    out = BatchedViews(stage, cfg.scales, CROP, cfg.dense_stride, HE_MEAN, HE_STD, parity)(  # type: ignore[arg-type]
        default_collate(items))
    assert sorted(out) == sorted(ref)
    for key, value in ref.items():
        if key.startswith("sp"):
            assert torch.equal(out[key], value)  # nearest: the very same labels
            assert set(value.unique().tolist()) <= set(_ids(90, 120, 7).unique().tolist()) | {0 if parity else -1}
        else:
            assert out[key].shape == value.shape
            assert torch.allclose(out[key], value, atol=1e-4), (key, (out[key] - value).abs().max())
    assert not torch.allclose(ref[next(iter(ref))][0], ref[next(iter(ref))][1])  # the samples differ


def test_the_canvas_reads_what_the_whole_image_gives() -> None:
    """Warping the canvas equals warping the whole image (reflection at its borders, or zeros with parity)."""
    img = torch.rand(3, 50, 70) * 255
    geom = Geometry(angle=37, shear=4, shift=(3.0, -5.0), flip_v=True)
    cases = [((10.3, 8.7), 80, False), ((60.5, 45.2), 80, False), ((10.3, 8.7), 80, True), ((35.2, 25.9), 40, False)]
    for center, side, parity in cases:  # the last canvas lies inside the image
        canvas, local = cut_canvas(img, center, side, reflect=not parity)
        for zoom in (1.0, 1.5) if side == 80 else (2.0,):
            whole = warp_image(img, center, geom, zoom, CROP, parity)
            assert torch.allclose(warp_image(canvas, local, geom, zoom, CROP, parity), whole, atol=1e-2)  # of 255


def _id_painted(ids: torch.Tensor) -> torch.Tensor:
    return torch.stack([ids % 251, ids // 251, torch.zeros_like(ids)]).to(torch.uint8)


@pytest.mark.parametrize("parity", [True, False])
def test_batched_ids_stay_aligned_with_the_image(parity: bool) -> None:
    """An image whose pixels encode their superpixel id, warped jointly with the ids, still carries them."""
    cfg = ViewConfig(patch_size=64, parity=parity, dense_stride=1, hue=0, saturation=0, brightness=0,
                     contrast=(1.0, 1.0), noise_std=0, blur_kernels=[1])
    ids = _ids(100, 100, 9) + 1  # parity pads ids with 0 and the image with 0: keep real ids above 0
    gen = torch.Generator().manual_seed(3)
    items = [raw_item(_id_painted(ids), ids, (50.0 + i, 48.0), cfg, "joint", gen, CROP) for i in range(4)]
    mean, std = (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)  # the views keep the pixel values
    out = BatchedViews("joint", cfg.scales, CROP, 1, mean, std, parity)(default_collate(items))
    assert out["scales1"].shape == (4, 5, 3, CROP, CROP)
    for v in (1, 2):
        img, sp = out[f"image{v}"].round().long(), out[f"sp{v}"]
        decoded = img[:, 0] + 251 * img[:, 1]
        inside = sp > 0
        agree = (decoded == sp)[inside].float().mean()
        if parity:
            assert torch.equal(decoded, sp)  # nearest everywhere: exact
        else:
            assert agree > 0.85  # bilinear: mixed values only on superpixel borders
        assert sp.unique().numel() > 4


def test_url_loss_is_unchanged_for_the_same_views() -> None:
    from pathseg.ssl.url.method import URLMethod

    cfg = ViewConfig(patch_size=64, scales=[1.0, 0.5])
    items = _items(cfg, "joint", n=2)
    rendered = _reference(items, cfg, "joint")
    torch.manual_seed(0)
    plain = URLMethod("resnet18", "joint")
    torch.manual_seed(0)
    batched = URLMethod("resnet18", "joint", views=BatchedViews("joint", cfg.scales, CROP, 2, HE_MEAN, HE_STD))
    expected = plain.training_loss(rendered)
    got = batched.training_loss(default_collate(items))
    for key in ("loss", "loss_img", "loss_sp", "loss_px"):
        assert torch.allclose(got[key], expected[key], atol=1e-4, rtol=1e-4), key
    with pytest.raises(Exception, match="renderer"):
        plain.training_loss(default_collate(items))


def test_dataset_items_raw_or_rendered_from_the_same_draw(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathseg.ssl.url.config import SuperpixelConfig
    from pathseg.ssl.url.data import URLDataset
    from ssl_helpers import make_unlabeled

    root = make_unlabeled(tmp_path / "data", n=2, size=72)
    sp = SuperpixelConfig(region_size=12)
    views = ViewConfig(patch_size=64, scales=[1.0, 0.5])
    raw_ds = URLDataset(root, [], "joint", views, sp, crop_size=CROP, progress=False)
    flat = ViewConfig(patch_size=64, scales=[1.0, 0.5], batched=False)
    flat_ds = URLDataset(root, [], "joint", flat, sp, crop_size=CROP, progress=False)
    torch.manual_seed(5)
    raw = raw_ds[1]
    torch.manual_seed(5)
    again_raw = raw_ds[1]  # the same sample seed (what a resumed run gives): the same draw
    assert all(torch.equal(raw[k], again_raw[k]) for k in raw)
    torch.manual_seed(5)
    rendered = flat_ds[1]
    assert {"canvas", "geom", "photo", "order", "noise_seed", "canvas_ids"} <= set(raw)
    assert raw["canvas"].dtype == torch.uint8
    again = render_item(raw, "joint", [1.0, 0.5], CROP, 2, False, HE_MEAN, HE_STD)
    assert sorted(again) == sorted(rendered)
    for key, value in rendered.items():
        assert torch.equal(again[key], value), key


def test_rendering_ignores_autocast() -> None:
    cfg = ViewConfig(patch_size=64, scales=[1.0, 0.5])
    items = _items(cfg, "1", n=2)
    views = BatchedViews("1", cfg.scales, CROP, 2, HE_MEAN, HE_STD)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = views(default_collate(items))
    assert out["scales1"].dtype == torch.float32
    assert torch.allclose(out["scales1"], _reference(items, cfg, "1")["scales1"], atol=1e-4)
