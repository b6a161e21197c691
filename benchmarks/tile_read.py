"""Benchmark (not a test): tile reads through pathseg's TileDataset vs a plain OpenSlide read_region loop.

Reads the same 2,000 tiles (256 px at native resolution, shuffled across slides) from the real slides in
../shared/data/slides and a larger synthetic pyramidal slide written with write_pyramidal_tiff, in one run:

1. a plain loop: ``openslide.OpenSlide.read_region(...).convert("RGB")`` -> numpy, handles opened up front;
2. ``pathseg.data.tiles.TileDataset`` item by item in one process (same order);
3. a ``torch.utils.data.DataLoader`` over the TileDataset with 0, 1 and 2 workers.

Usage: ``.venv/bin/python benchmarks/tile_read.py [--tiles 2000] [--repeats 3] [--workers 0,1,2]``.
Workers open slides in their own processes; worker start-up is inside the timing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from pathseg.data.tiles import TileDataset, TileRecord
from pathseg.slides import open_slide, write_pyramidal_tiff

SLIDES = Path(__file__).resolve().parents[2] / "shared" / "data" / "slides"
NO_MPP_FALLBACK = 0.5  # the TCGA slide has no µm/px; any value works for native-resolution reads


def synthetic_slide(path: Path, size: int = 6144) -> None:
    """A size x size pink/white pyramidal slide at 0.25 µm/px (written once, reused)."""
    if path.exists():
        return
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = 0.5 + 0.5 * np.sin(12 * xx + 5 * np.sin(7 * yy)) * np.cos(9 * yy)
    img = np.empty((size, size, 3), np.uint8)
    for c, (lo, hi) in enumerate([(150, 245), (60, 240), (120, 245)]):
        img[..., c] = (lo + (hi - lo) * base + rng.normal(0, 6, (size, size))).clip(0, 255).astype(np.uint8)
    write_pyramidal_tiff(path, img, mpp=0.25)


def make_records(paths: list[Path], n: int, size: int = 256, stride: int = 128, seed: int = 0) -> list[TileRecord]:
    """``n`` native-resolution tiles from a stride grid over every slide, shuffled."""
    records = []
    for p in paths:
        with open_slide(p) as s:
            w, h = s.dimensions
            mpp = s.mpp if s.mpp is not None else NO_MPP_FALLBACK
        for y in range(0, h - size + 1, stride):
            for x in range(0, w - size + 1, stride):
                records.append(TileRecord(p.stem, str(p), x, y, size, size, mpp, mpp, "", y // stride, x // stride,
                                          1.0))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(records))
    picked = [records[i] for i in order[:n]]
    while len(picked) < n:  # fewer grid tiles than asked: repeat
        picked += picked[: n - len(picked)]
    return picked


def plain_loop(records: list[TileRecord]) -> float:
    """Seconds for the plain OpenSlide loop."""
    import openslide

    handles = {p: openslide.OpenSlide(p) for p in sorted({r.slide_path for r in records})}
    t0 = time.perf_counter()
    for r in records:
        arr = np.asarray(handles[r.slide_path].read_region((r.x, r.y), 0, (r.size, r.size)).convert("RGB"))
        assert arr.shape == (r.size, r.size, 3)
    dt = time.perf_counter() - t0
    for h in handles.values():
        h.close()
    return dt


def dataset_loop(records: list[TileRecord]) -> float:
    """Seconds for TileDataset items in one process (slides opened lazily, inside the timing)."""
    ds = TileDataset(records, backend="openslide")
    t0 = time.perf_counter()
    for i in range(len(ds)):
        assert ds[i]["image"].shape == (records[i].size, records[i].size, 3)
    dt = time.perf_counter() - t0
    ds.close()
    return dt


def dataloader_loop(records: list[TileRecord], workers: int, batch_size: int = 32) -> float:
    """Seconds to iterate a DataLoader over the TileDataset (worker start-up included)."""
    from torch.utils.data import DataLoader

    ds = TileDataset(records, backend="openslide")
    t0 = time.perf_counter()
    n = 0
    for batch in DataLoader(ds, batch_size=batch_size, num_workers=workers):  # type: ignore[arg-type]
        n += len(batch["image"])
    assert n == len(records)
    return time.perf_counter() - t0


def main() -> None:
    """Run the benchmark and print throughputs."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiles", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "pathseg-bench"))
    args = ap.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    synth = work / "synthetic-6144.tiff"
    t0 = time.perf_counter()
    synthetic_slide(synth)
    paths = [*sorted(SLIDES.glob("*.svs")), synth]
    records = make_records(paths, args.tiles)
    print(f"slides: {', '.join(p.name for p in paths)} (setup {time.perf_counter() - t0:.1f} s)")
    per_slide = {p.stem: sum(r.slide_id == p.stem for r in records) for p in paths}
    print(f"tiles: {len(records)} x 256 px at native resolution, shuffled; per slide {per_slide}")
    print(f"cpus: {os.cpu_count()}")
    plain_loop(records[:200])  # warm the page cache
    dataset_loop(records[:200])
    plain, dset = [], []
    for _ in range(args.repeats):  # interleaved to share machine noise
        plain.append(plain_loop(records))
        dset.append(dataset_loop(records))
    n = len(records)
    p_best, d_best = min(plain), min(dset)
    print(f"plain openslide loop : {n / p_best:8.1f} tiles/s (best of {args.repeats}; all: "
          + ", ".join(f"{n / t:.0f}" for t in plain) + ")")
    print(f"TileDataset          : {n / d_best:8.1f} tiles/s (best of {args.repeats}; all: "
          + ", ".join(f"{n / t:.0f}" for t in dset) + ")")
    print(f"ratio TileDataset / plain: {p_best / d_best:.3f} (best), "
          f"{float(np.median(plain)) / float(np.median(dset)):.3f} (median)")
    import torch

    threads = torch.get_num_threads()
    for w in [int(v) for v in args.workers.split(",")]:
        dt = dataloader_loop(records, w)
        print(f"DataLoader workers={w}: {n / dt:8.1f} tiles/s (batch 32, torch threads {threads})")
    torch.set_num_threads(1)  # torch's idle intra-op threads compete with decoding in the main process
    dt = dataloader_loop(records, 0)
    print(f"DataLoader workers=0: {n / dt:8.1f} tiles/s (batch 32, torch.set_num_threads(1))")


if __name__ == "__main__":
    main()
