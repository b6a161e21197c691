"""URL from a slide tile index: the pixels URL trains on are the slide region read at the index's µm/px."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from pathseg.cli.main import main
from pathseg.data.tiles import read_tile_index
from pathseg.ssl.url.config import HE_MEAN, HE_STD, SuperpixelConfig, ViewConfig
from pathseg.ssl.url.data import URLDataset
from pathseg.ssl.url.sources import TileSource, is_tile_index
from pathseg.ssl.url.superpixels import compute_superpixels
from ssl_helpers import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)

SLIDE = Path("/work/shared/data/slides/cmu-1-small-region.svs")  # Aperio, 0.499 µm/px, one level
needs_slide = pytest.mark.skipif(not SLIDE.is_file(), reason=f"real slide {SLIDE} not available")

#: No geometry and no colour change: a view is the normalised central crop of the patch.
IDENTITY = ViewConfig(patch_size=256, scales=[1.0], rotate=0.0, shear=0.0, translate=0.0, dense_translate=0.0,
                      flip=False, hue=0.0, saturation=0.0, brightness=0.0, contrast=(1.0, 1.0), noise_std=0.0,
                      blur_kernels=[1])


def _independent_read(path: Path, x: int, y: int, size0: int, size: int) -> np.ndarray:
    """The level-0 region read with OpenSlide and resized with PIL (not pathseg's reader)."""
    import openslide
    from PIL import Image

    with openslide.OpenSlide(str(path)) as s:
        region = s.read_region((x, y), 0, (size0, size0)).convert("RGB")
    return np.asarray(region.resize((size, size), Image.Resampling.BILINEAR))


def _views(ds: URLDataset, i: int) -> dict[str, torch.Tensor]:
    """Item ``i`` as the loss sees it: rendered in the worker, or by the training step's batched renderer."""
    if not ds.views.batched:
        return ds[i]
    from pathseg.ssl.url.batched import BatchedViews

    render = BatchedViews(ds.stage, ds.views.scales, ds.crop_size, ds.views.dense_stride, ds.mean, ds.std,
                          ds.views.parity)
    return {k: v[0] for k, v in render(default_collate([ds[i]])).items()}


def _normalised(rgb: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1) / 255.0
    return (x - torch.tensor(HE_MEAN).view(3, 1, 1)) / torch.tensor(HE_STD).view(3, 1, 1)


@pytest.fixture(scope="module")
def tile_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SLIDE.is_file():
        pytest.skip(f"real slide {SLIDE} not available")
    out = tmp_path_factory.mktemp("url_tiles") / "tiles"
    assert main(["tile", str(SLIDE), "--out", str(out), "--mpp", "1.0", "--size", "256", "--min-tissue", "0.3"]) == 0
    return out / "tiles.csv"


@needs_slide
@pytest.mark.parametrize("batched", [True, False])
def test_url_receives_the_slide_region_at_the_index_mpp(tile_index: Path, batched: bool) -> None:
    records = read_tile_index(tile_index)
    assert records and all(r.mpp == 1.0 and abs(r.slide_mpp - 0.499) < 1e-6 for r in records)
    views = dataclasses.replace(IDENTITY, batched=batched)
    ds = URLDataset(tile_index, (), "2", views, SuperpixelConfig(), crop_size=256, progress=False)
    assert len(ds) == len(records)
    for i in (0, len(ds) - 1):
        r = records[i]
        assert r.size0 == round(256 / 0.499)  # about 513 level-0 pixels per 256-px tile at 1 µm/px
        expected = _independent_read(SLIDE, r.x, r.y, r.size0, r.size)
        item = _views(ds, i)
        got, want = item["image1"], _normalised(expected)
        # the same region and scale; only the resampler's sub-pixel box differs (< 0.5 grey level on average)
        assert (got - want).abs().mean() < 0.5 / 255 / min(HE_STD)
        native = _normalised(_independent_read(SLIDE, r.x, r.y, 256, 256))  # the same corner at 0.499 µm/px
        assert (got - native).abs().mean() > 10 * (got - want).abs().mean()
        assert torch.allclose(item["image1"], item["image2"], atol=1e-4)  # identity views
        # the superpixels were computed on the tile as read at 1 µm/px, cached, and warped with the image
        rgb = ds.source.read(i)
        ids = compute_superpixels(rgb, SuperpixelConfig())
        # at stride 2 an output id samples the centre of a 2x2 block: it must be one of that block's four ids
        blocks = torch.from_numpy(ids.astype(np.int64)).unfold(0, 2, 2).unfold(1, 2, 2).reshape(128, 128, 4)
        assert bool((blocks == item["sp1"][..., None]).any(-1).all())
        assert (item["sp1"] == torch.from_numpy(ids[0::2, 0::2].astype(np.int64))).float().mean() > 0.9


@needs_slide
def test_stage1_and_joint_read_tiles(tile_index: Path) -> None:
    assert is_tile_index(tile_index) and is_tile_index(tile_index.parent)
    views = ViewConfig(patch_size=256, scales=[1.0, 0.5, 2.0])
    s1 = URLDataset(tile_index.parent, (), "1", views, SuperpixelConfig(), crop_size=64, progress=False)
    item = _views(s1, 0)
    assert set(item) == {"scales1", "scales2"} and item["scales1"].shape == (3, 3, 64, 64)
    joint = URLDataset(tile_index, (), "joint", views, SuperpixelConfig(), crop_size=64, progress=False)
    j = _views(joint, 1)
    assert {"scales1", "image1", "sp1"} <= set(j) and j["sp1"].shape == (32, 32)
    assert torch.equal(j["image1"], j["scales1"][0])


@needs_slide
def test_superpixel_cache_is_keyed_by_resolution(tile_index: Path, tmp_path: Path) -> None:
    src = TileSource(tile_index, SuperpixelConfig(cache_dir=str(tmp_path / "cache")))
    assert src.ensure(progress=False) == len(src)
    assert src.ensure(progress=False) == 0  # cached
    names = sorted(p.name for p in (tmp_path / "cache").glob("*.png"))
    assert len(names) == len(src) and all("_256px_1mpp_" in n for n in names)


@needs_slide
def test_pretrain_url_from_tile_index(tile_index: Path, tmp_path: Path) -> None:
    """``pathseg pretrain --method url --data tiles.csv`` (stage 1, then stage 2 on its encoder)."""
    common = ["--backbone", "resnet18", "--crop-size", "64", "--batch-size", "2", "--num-workers", "0",
              "trainer.accelerator=cpu", "trainer.max_steps=1", "trainer.progress_bar=false",
              "method_args.views.patch_size=128"]
    s1 = tmp_path / "s1"
    assert main(["pretrain", "--method", "url", "--data", str(tile_index), "--out", str(s1), *common,
                 "method_args.stage=1", "method_args.views.scales=[1.0,0.5]"]) in (0, None)
    assert (s1 / "encoder.safetensors").is_file()
    s2 = tmp_path / "s2"
    assert main(["pretrain", "--method", "url", "--data", str(tile_index), "--out", str(s2), *common,
                 "method_args.stage=2", f"method_args.stage1_checkpoint={s1}",
                 f"method_args.superpixels.cache_dir={tmp_path / 'sp'}"]) in (0, None)
    assert (s2 / "encoder.safetensors").is_file()
