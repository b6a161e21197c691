"""TileDataset (on-the-fly reads, bounded per-process slide cache, DataLoader workers) and export."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from pathseg.cli.main import main
from pathseg.data.layout import list_ids, read_dataset_info
from pathseg.data.tiles import TileDataset, read_tile_index
from pathseg.io import read_rgb
from pathseg.slides import write_pyramidal_tiff
from slides_helpers import synthetic_slide


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("tiles")
    images = {}
    for i in range(3):
        img, _ = synthetic_slide(h=768, w=1024, seed=i)
        write_pyramidal_tiff(root / f"s{i}.tiff", img, mpp=0.5, compression="deflate")  # lossless: exact pixels
        images[f"s{i}"] = img
    assert main(["tile", str(root), "--out", str(root / "out"), "--mpp", "0.5", "--size", "128",
                 "--min-tissue", "0.3"]) == 0
    return root / "out" / "tiles.csv", images


def test_items_hold_the_right_pixels(index: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, images = index
    ds = TileDataset(path, cache_size=2)
    assert len(ds) == len(read_tile_index(path)) > 20
    for i in range(0, len(ds), 3):
        item = ds[i]
        x, y = item["x"], item["y"]
        np.testing.assert_array_equal(item["image"], images[item["slide_id"]][y : y + 128, x : x + 128])
        assert len(ds._cache.slides) <= 2
    ds.close()


def test_dataloader_with_two_workers(index: tuple[Path, dict[str, np.ndarray]]) -> None:
    import torch
    from torch.utils.data import DataLoader

    path, images = index
    ds = TileDataset(path, transform=lambda a: torch.from_numpy(a.copy()), cache_size=1)
    pickle.dumps(ds.__getstate__()["_cache"])  # picklable for spawn workers
    ds[0]  # the parent opens a slide before forking: workers must not use that handle
    assert len(ds._cache.slides) == 1
    seen = 0
    for batch in DataLoader(ds, batch_size=4, num_workers=2, shuffle=True):  # type: ignore[arg-type]
        for img, sid, x, y in zip(batch["image"], batch["slide_id"], batch["x"], batch["y"]):
            np.testing.assert_array_equal(img.numpy(), images[sid][int(y) : int(y) + 128, int(x) : int(x) + 128])
            seen += 1
    assert seen == len(ds)
    assert len(ds._cache.slides) == 1  # the parent's cache is untouched by the workers


def test_export_to_unlabeled_layout(index: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    path, images = index
    out = tmp_path / "unlabeled"
    assert main(["tiles", "export", str(path), "--out", str(out)]) == 0
    info = read_dataset_info(out)
    assert info.task == "unlabeled" and info.mpp == 0.5
    ids = list_ids(out, "train")
    records = read_tile_index(path)
    assert sorted(ids) == sorted(r.tile_id for r in records)
    r = records[0]
    np.testing.assert_array_equal(read_rgb(out / "train" / "images" / f"{r.tile_id}.png"),
                                  images[r.slide_id][r.y : r.y + 128, r.x : r.x + 128])
    assert (out / "train" / "tiles.csv").read_text().startswith("id,slide_id,row,col,x,y")
    assert main(["tiles", "export", str(path), "--out", str(out)]) == 2  # exists: refused


def test_bad_index_is_a_data_error(tmp_path: Path) -> None:
    from pathseg.errors import DataError

    bad = tmp_path / "tiles.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="missing columns"):
        read_tile_index(bad)
