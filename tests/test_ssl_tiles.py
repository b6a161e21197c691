"""Pretraining from a tile index (tiles.csv read on the fly from slides)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathseg.cli.main import main
from pathseg.data.augment import ViewConfig, two_views
from pathseg.slides import write_pyramidal_tiff
from pathseg.ssl.data import TileImages, image_source
from slides_helpers import synthetic_slide
from ssl_helpers import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)


def test_pretrain_from_tile_index(tmp_path: Path) -> None:
    img, _ = synthetic_slide(h=768, w=1024, seed=0)
    write_pyramidal_tiff(tmp_path / "s0.tiff", img, mpp=0.5, compression="deflate")
    assert main(["tile", str(tmp_path), "--out", str(tmp_path / "tiles"), "--mpp", "0.5", "--size", "128",
                 "--min-tissue", "0.3"]) == 0
    index = tmp_path / "tiles" / "tiles.csv"
    ds = image_source(index, (), two_views(ViewConfig(), 32, (0.5,) * 3, (0.2,) * 3))
    assert isinstance(ds, TileImages) and len(ds) >= 8
    item = ds[0]
    assert item["view1"].shape == (3, 32, 32) and {"row", "col"} <= set(item)
    rc = main(["pretrain", "--method", "mocov2", "--data", str(index), "--out", str(tmp_path / "run"),
               "--backbone", "resnet18", "--crop-size", "32", "--batch-size", "4", "--num-workers", "0",
               "trainer.accelerator=cpu", "trainer.max_steps=2", "trainer.progress_bar=false",
               "method_args.queue_size=16"])
    assert rc in (0, None)
    assert (tmp_path / "run" / "encoder.safetensors").is_file()
