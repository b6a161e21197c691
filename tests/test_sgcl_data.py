"""SGCL data (tile index, coordinates CSV, exported data set) and the CPU smoke run of ``pathseg pretrain``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pathseg.cli.main import main
from pathseg.data.tiles import TileDataset, read_tile_index
from pathseg.errors import DataError
from pathseg.io import write_png
from pathseg.slides import write_pyramidal_tiff
from pathseg.ssl.sgcl.data import SGCLDataset, SGCLViews, load_tile_table
from slides_helpers import synthetic_slide
from ssl_helpers import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sgcl_tiles")
    for i in (1, 0):
        img, _ = synthetic_slide(h=768, w=1024, seed=i)
        write_pyramidal_tiff(root / f"slide{i}.tiff", img, mpp=0.5, compression="deflate")
    assert main(["tile", str(root), "--out", str(root / "out"), "--mpp", "0.5", "--size", "64",
                 "--min-tissue", "0.3"]) == 0
    return root / "out" / "tiles.csv"


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def test_tile_index_items(tiles: Path) -> None:
    records = read_tile_index(tiles)
    table = load_tile_table(tiles)
    assert len(table) == len(records) > 100
    assert table.slide_names == ["slide0", "slide1"]
    ds = SGCLDataset(table, SGCLViews(_identity, _identity))
    raw = TileDataset(tiles)
    for i in (0, len(ds) // 2, len(ds) - 1):
        item, rec, img = ds[i], records[i], torch.from_numpy(raw.read(i)).permute(2, 0, 1)
        assert item["index"] == i and item["slide"] == ["slide0", "slide1"].index(rec.slide_id)
        assert item["pos"].tolist() == [rec.row, rec.col]
        assert torch.equal(item["global"], img)
        h = img.shape[1] // 2
        quads = [img[:, :h, :h], img[:, :h, h:], img[:, h:, :h], img[:, h:, h:]]
        for q, expect in zip(item["local"], quads):
            assert torch.equal(q, expect)


def test_exported_data_set_and_coordinates_csv(tiles: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    assert main(["tiles", "export", str(tiles), "--out", str(out)]) == 0
    a, b = load_tile_table(tiles), load_tile_table(out)
    key = sorted(zip(a.slide_ids, a.rows, a.cols))
    assert key == sorted(zip(b.slide_ids, b.rows, b.cols))
    j = b.slide_ids.index("slide1")
    i = list(zip(a.slide_ids, a.rows, a.cols)).index((b.slide_ids[j], b.rows[j], b.cols[j]))
    views = SGCLViews(_identity, _identity)
    assert torch.equal(SGCLDataset(b, views)[j]["global"], SGCLDataset(a, views)[i]["global"])
    # a plain coordinates CSV with file paths (slide ids are ranked by name, not by order of appearance)
    rng = np.random.default_rng(0)
    lines = ["path,slide_id,row,col"]
    for k, (s, r, c) in enumerate([("b", 0, 0), ("a", 3, 4), ("b", 0, 1)]):
        write_png(tmp_path / "imgs" / f"t{k}.png", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
        lines.append(f"imgs/t{k}.png,{s},{r},{c}")
    (tmp_path / "coords.csv").write_text("\n".join(lines) + "\n")
    ds = SGCLDataset(load_tile_table(tmp_path / "coords.csv"), views)
    assert [ds[k]["slide"] for k in range(3)] == [1, 0, 1] and ds[1]["pos"].tolist() == [3.0, 4.0]
    (tmp_path / "bad.csv").write_text("file,slide\nx.png,a\n")
    with pytest.raises(DataError, match="slide_id, row, col"):
        load_tile_table(tmp_path / "bad.csv")


def test_views_are_seeded_by_torch(tiles: Path) -> None:
    from pathseg.config import from_dict
    from pathseg.ssl.api import BuildContext, load_methods

    spec = load_methods().get("sgcl")
    cfg = from_dict(spec.config, {"local_size": 24})
    ds = spec.build_dataset(cfg, BuildContext("resnet18", 40, data=tiles), spec.build_transform(
        cfg, BuildContext("resnet18", 40, data=tiles)))
    torch.manual_seed(3)
    a = ds[5]
    torch.manual_seed(3)
    b = ds[5]
    assert a["global"].shape == (3, 40, 40) and a["local"].shape == (4, 3, 24, 24)
    assert torch.equal(a["global"], b["global"]) and torch.equal(a["local"], b["local"])
    assert not torch.equal(a["local"][0], a["local"][1])


def test_cpu_smoke_run(tiles: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc = main(["pretrain", "--config", str(ROOT / "configs/pretrain/sgcl_cpu_tiny.yaml"), "--data", str(tiles),
               "--out", str(out), "trainer.max_steps=2", "checkpoint.every_n_steps=0"])
    assert rc in (0, None)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["method"] == "sgcl"
    from pathseg.models import create_encoder, read_state_dict

    state = read_state_dict(out / "encoder.safetensors")
    assert set(state) == set(create_encoder("resnet18").state_dict())
    assert main(["pretrain", "--config", str(ROOT / "configs/pretrain/sgcl_cpu_tiny.yaml"), "--data", str(tiles),
                 "--out", str(tmp_path / "big"), "method_args.nei_k=500"]) == 2  # sizes checked: one error line
