"""Benchmark (not a test): whole-slide inference end to end against the model's forward pass alone.

1. Writes a synthetic pyramidal slide (JPEG tiles, 256 px, levels by 2, 0.62 µm/px) that is a mosaic of real GlaS
   images (768 x 512 crops of ../shared/data/glas/train) streamed tile by tile, so even 60,000² slides need no
   slide-sized array.
2. End to end: ``predict_slides`` (tissue detection, data-loader workers, model, blending, writer thread: pyramidal
   TIFF, GeoJSON, areas) on the largest size; seconds and windows per second.
3. Forward alone: the same model on the same windows, read beforehand into memory (the first ``--forward-windows``,
   timed; extrapolated to every window). Ratio = forward time / end-to-end time (1.0 = no overhead).
4. Peak RSS (VmHWM) of ``predict`` in a fresh process for each ``--sizes`` value.

Usage: ``.venv/bin/python benchmarks/slide_inference.py --sizes 2048,4096 [--device cpu] [--model RUN]``
(without ``--model``: an untrained ResNet-18 U-Net, 2 classes, 256-px windows; the speed is the same).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GLAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "glas" / "train" / "images"
CELL = (512, 768)  # (h, w) of one mosaic cell at level 0
MPP = 0.62


def _cells(levels: int) -> list[list[np.ndarray]]:
    """GlaS crops at every pyramid level (box-filtered by PIL)."""
    from PIL import Image

    out = []
    for p in sorted(GLAS.glob("*.png")):
        img = Image.open(p).convert("RGB")
        if img.width < CELL[1] or img.height < CELL[0] or len(out) == 24:
            continue
        img = img.crop((0, 0, CELL[1], CELL[0]))
        out.append([np.asarray(img.reduce(2**k)) if k else np.asarray(img) for k in range(levels)])
    if not out:
        raise SystemExit(f"no GlaS images in {GLAS}")
    return out


def write_mosaic(path: Path, size: int, tile: int = 256) -> None:
    """A ``size`` x ``size`` pyramidal TIFF mosaic of GlaS cells, written tile by tile."""
    import tifffile

    from pathseg.slides.write import pyramid_shapes

    shapes = pyramid_shapes(size, size, 512)
    cells = _cells(len(shapes))

    def tiles(k: int, h: int, w: int):
        ch, cw = CELL[0] >> k, CELL[1] >> k
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                yy, xx = np.arange(y, y + tile), np.arange(x, x + tile)
                ci = ((yy // ch)[:, None] * 7 + (xx // cw)[None, :] * 3) % len(cells)
                out = np.empty((tile, tile, 3), np.uint8)
                rows, cols = (yy % ch)[:, None].repeat(tile, 1), (xx % cw)[None, :].repeat(tile, 0)
                for i in np.unique(ci):
                    sel = ci == i
                    out[sel] = cells[i][k][rows[sel], cols[sel]]
                yield out

    with tifffile.TiffWriter(path, bigtiff=size * size * 3 > 2**31) as tif:
        for k, (h, w) in enumerate(shapes):
            res = 1e4 / (MPP * size / w)
            tif.write(tiles(k, h, w), shape=(h, w, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb",
                      compression="jpeg", resolution=(res, res), resolutionunit="CENTIMETER",
                      subfiletype=1 if k else 0, metadata=None)


def make_model(folder: Path) -> str:
    """An untrained 2-class ResNet-18 U-Net run folder (``mpp`` in model.json)."""
    from pathseg.tasks.common import ModelSpec, build_model, save_weights

    seed = folder / "seed_0"
    seed.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec(task="segmentation", encoder="resnet18", decoder="unet", num_classes=2, window=256,
                     class_names=["background", "gland"], colors=[[0, 0, 0], [230, 60, 60]])
    spec.save(seed / "model.json")
    raw = json.loads((seed / "model.json").read_text())
    (seed / "model.json").write_text(json.dumps({**raw, "mpp": MPP}))
    save_weights(build_model(spec), seed / "model_best.safetensors")
    return str(folder)


def forward_alone(model_arg: str, slide: Path, batch: int, n: int, device: str) -> tuple[float, int]:
    """Seconds per window of the model alone on the slide's first ``n`` tissue windows (read beforehand)."""
    import torch

    from pathseg.inference import run as R
    from pathseg.inference.config import PredictConfig
    from pathseg.inference.loader import WindowBatches

    cfg = PredictConfig(slides=[str(slide)], model=model_arg, out="-", batch=batch, device=device)
    run = R._Run(cfg, None)
    plan, slide_mpp, _ = R._plan(run, slide)
    spec = run.model.spec
    chunks = [plan.chunk(c) for c in range(min(plan.num_chunks, max(1, n // batch)))]
    ds = WindowBatches(str(slide), "auto", slide_mpp, chunks, 0, plan.window, plan.ds, spec.mean, spec.std)
    batches = [ds[i]["x"] for i in range(len(ds))]
    run.predictor(batches[0])  # warm-up
    if run.predictor.device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for x in batches:
        (run.predictor(x) * run.weight.to(run.predictor.device)).cpu()
    if run.predictor.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / sum(len(x) for x in batches), len(plan.windows)


def end_to_end(model_arg: str, slide: Path, out: Path, batch: int, workers: int, device: str) -> dict:
    """Time ``predict_slides`` (model loaded beforehand) in a fresh process; returns seconds and peak RSS."""
    code = f"""
import time, json
from pathseg.inference.config import PredictConfig
from pathseg.inference.model import load_for_inference
from pathseg.inference.run import predict_slides
cfg = PredictConfig(slides=[{str(slide)!r}], model={model_arg!r}, out={str(out)!r}, batch={batch},
                    workers={workers}, device={device!r}, overwrite=True)
model = load_for_inference(cfg.model)  # loading the model is not part of the timing
t = time.perf_counter(); (r,) = predict_slides(cfg, model=model); dt = time.perf_counter() - t
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(json.dumps({{"seconds": dt, "status": r.status, "message": r.message, "peak_rss_mb": int(hwm) / 1024}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2048,4096", help="slide sides in pixels; the last is timed")
    ap.add_argument("--model", default="", help="finetune run (default: an untrained ResNet-18 U-Net)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--forward-windows", type=int, default=64)
    ap.add_argument("--dir", default="", help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="pathseg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model_arg = args.model or make_model(work / "model")
    results = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        slide = work / f"mosaic_{size}.tiff"
        if not slide.exists():
            t = time.perf_counter()
            write_mosaic(slide, size)
            print(f"wrote {slide} ({size}²) in {time.perf_counter() - t:.1f} s", flush=True)
        results[size] = end_to_end(model_arg, slide, work / f"out_{size}", args.batch, args.workers, args.device)
        print(f"{size}²: end to end {results[size]['seconds']:.1f} s ({results[size]['message']}), "
              f"peak RSS {results[size]['peak_rss_mb']:.0f} MB", flush=True)
    size = max(results)
    per_window, n = forward_alone(model_arg, work / f"mosaic_{size}.tiff", args.batch, args.forward_windows,
                                  args.device)
    e2e = results[size]["seconds"]
    print(f"{size}²: {n} windows; forward alone {per_window * n:.1f} s ({1 / per_window:.1f} windows/s), "
          f"end to end {e2e:.1f} s ({n / e2e:.1f} windows/s); ratio {per_window * n / e2e:.2f}")
    rss = [results[s]["peak_rss_mb"] for s in sorted(results)]
    print("peak RSS: " + ", ".join(f"{s}²: {results[s]['peak_rss_mb']:.0f} MB" for s in sorted(results))
          + f" (largest / smallest {max(rss) / min(rss):.3f})")


if __name__ == "__main__":
    main()
