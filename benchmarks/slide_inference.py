"""Benchmark (not a test): whole-slide inference end to end against the model's forward pass alone.

1. Writes synthetic pyramidal slides (JPEG tiles, 256 px, levels by 2, 0.62 µm/px): mosaics of real GlaS images
   (768 x 512 crops of ../shared/data/glas/train) streamed tile by tile, so even 60,000² slides need no
   slide-sized array; ``--band H`` (``--speed-band H`` for the throughput slide) puts tissue in a horizontal band
   ``H`` px high only (glass elsewhere, as on most of a real slide).
2. Throughput (``--speed-size``, default 2048): in ONE fresh process, the model's forward pass alone on every
   tissue window of the slide (read into memory beforehand, the same batches, the same torch threads and the same
   ``Predictor``: channels-last, inference mode, probabilities x blend weights copied to the CPU), then
   ``predict_slides`` end to end (tissue detection, data-loader workers, blending, writer thread: progress files,
   pyramidal TIFF, GeoJSON, areas), then the forward pass alone again. Ratio = mean forward time / end-to-end time
   (1.0 = no overhead). The model is a ResNet-18 U-Net briefly trained on GlaS (``--train-steps`` Adam steps on
   256-px crops, seed 0, cached in ``--dir``), so its maps look like a real model's (glands, not speckle).
3. Peak RSS (VmHWM of the process) of ``predict_slides`` in a fresh process for each ``--rss-sizes`` value, with
   ``--rss-model`` (``cheap``: a fixed-seed 2-class FPN on a ResNet-10t encoder, so that 40,000² runs in minutes).

Usage: ``.venv/bin/python benchmarks/slide_inference.py [--speed-size 2048] [--rss-sizes 10000,40000 --band 1024]``
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


def write_mosaic(path: Path, size: int, tile: int = 256, band: int = 0) -> None:
    """A ``size`` x ``size`` pyramidal TIFF mosaic of GlaS cells, written tile by tile; with ``band`` > 0 only rows
    ``[size/2 - band/2, size/2 + band/2)`` hold tissue (glass elsewhere)."""
    import tifffile

    from pathseg.slides.write import pyramid_shapes

    shapes = pyramid_shapes(size, size, 512)
    cells = _cells(len(shapes))
    lo, hi = (size // 2 - band // 2, size // 2 + band // 2) if band else (0, size)
    glass = np.empty((tile, tile, 3), np.uint8)
    glass[:] = (242, 240, 244)

    def tiles(k: int, h: int, w: int):
        ch, cw = CELL[0] >> k, CELL[1] >> k
        for y in range(0, h, tile):
            yy = np.arange(y, y + tile)
            inside = (yy << k >= lo) & (yy << k < hi)
            for x in range(0, w, tile):
                if not inside.any():
                    yield glass
                    continue
                xx = np.arange(x, x + tile)
                ci = ((yy // ch)[:, None] * 7 + (xx // cw)[None, :] * 3) % len(cells)
                out = glass.copy()
                rows, cols = (yy % ch)[:, None].repeat(tile, 1), (xx % cw)[None, :].repeat(tile, 0)
                for i in np.unique(ci):
                    sel = (ci == i) & inside[:, None]
                    out[sel] = cells[i][k][rows[sel], cols[sel]]
                yield out

    with tifffile.TiffWriter(path, bigtiff=size * size * 3 > 2**31) as tif:
        for k, (h, w) in enumerate(shapes):
            res = 1e4 / (MPP * size / w)
            tif.write(tiles(k, h, w), shape=(h, w, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb",
                      compression="jpeg", resolution=(res, res), resolutionunit="CENTIMETER",
                      subfiletype=1 if k else 0, metadata=None)


def _save_run(folder: Path, spec: object, net: object) -> str:
    from pathseg.tasks.common import save_weights

    seed = folder / "seed_0"
    seed.mkdir(parents=True, exist_ok=True)
    spec.save(seed / "model.json")  # type: ignore[attr-defined]
    raw = json.loads((seed / "model.json").read_text())
    (seed / "model.json").write_text(json.dumps({**raw, "mpp": MPP}))
    save_weights(net, seed / "model_best.safetensors")  # type: ignore[arg-type]
    return str(folder)


def make_model(folder: Path, steps: int) -> str:
    """A 2-class ResNet-18 U-Net trained for ``steps`` Adam steps (lr 1e-3, batch 4, random 256-px crops of GlaS
    train with their gland masks, seed 0): a brief training, but its maps are smooth like a real model's."""
    import torch
    from PIL import Image

    from pathseg.tasks.common import ModelSpec, build_model

    if (folder / "seed_0" / "model_best.safetensors").is_file():
        return str(folder)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    spec = ModelSpec(task="segmentation", encoder="resnet18", decoder="unet", num_classes=2, window=256,
                     class_names=["background", "gland"], colors=[[0, 0, 0], [230, 60, 60]])
    net = build_model(spec).train()
    pairs = [(np.asarray(Image.open(p).convert("RGB")), np.asarray(Image.open(GLAS.parent / "masks" / p.name)) > 0)
             for p in sorted(GLAS.glob("*.png"))[:40]]
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t = time.perf_counter()
    for _ in range(steps):
        xs, ys = [], []
        for i in rng.integers(0, len(pairs), 4):
            img, mask = pairs[i]
            y0, x0 = rng.integers(0, img.shape[0] - 256), rng.integers(0, img.shape[1] - 256)
            xs.append(img[y0 : y0 + 256, x0 : x0 + 256])
            ys.append(mask[y0 : y0 + 256, x0 : x0 + 256])
        x = (torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255 - mean) / std
        loss = torch.nn.functional.cross_entropy(net(x), torch.from_numpy(np.stack(ys)).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"trained the ResNet-18 U-Net for {steps} steps in {time.perf_counter() - t:.0f} s "
          f"(last loss {loss.item():.3f})", flush=True)
    return _save_run(folder, spec, net.eval())


def make_cheap_model(folder: Path) -> str:
    """A fixed-seed (untrained) 2-class FPN on a ResNet-10t encoder: cheap, for the RSS runs only."""
    import torch

    from pathseg.tasks.common import ModelSpec, build_model

    if (folder / "seed_0" / "model_best.safetensors").is_file():
        return str(folder)
    torch.manual_seed(0)
    spec = ModelSpec(task="segmentation", encoder="resnet10t", decoder="fpn", num_classes=2, window=256,
                     class_names=["background", "gland"], colors=[[0, 0, 0], [230, 60, 60]])
    return _save_run(folder, spec, build_model(spec).eval())


SPEED = """
import json, sys, time
import numpy as np, torch
from pathseg.inference import run as R
from pathseg.inference.config import PredictConfig
from pathseg.inference.loader import WindowBatches
from pathseg.inference.model import load_for_inference
slide, model_arg, out, batch, workers, device, limit = sys.argv[1:8]
cfg = PredictConfig(slides=[slide], model=model_arg, out=out, batch=int(batch), workers=int(workers),
                    device=device, overwrite=True)
R.fix_mmap_threshold()  # as predict_slides does, so that both passes run with the same allocator settings
model = load_for_inference(cfg.model)
run = R._Run(cfg, None, model)
plan, slide_mpp, _ = R._plan(run, R.Path(slide))
spec = run.model.spec
n = min(plan.num_chunks, max(1, int(limit) // int(batch)))
ds = WindowBatches(slide, "auto", slide_mpp, [plan.chunk(c) for c in range(n)], 0, plan.window, plan.ds,
                   spec.mean, spec.std)
batches = [ds[i]["x"] for i in range(len(ds))]
weight = run.weight.to(run.predictor.device)
def forward():
    run.predictor(batches[0])  # warm-up
    t = time.perf_counter()
    for x in batches:
        (run.predictor(x) * weight).cpu().numpy()
    if run.predictor.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / sum(len(x) for x in batches)
f1 = forward()
t = time.perf_counter(); (r,) = R.predict_slides(cfg, model=model); e2e = time.perf_counter() - t
f2 = forward()
print(json.dumps({"windows": len(plan.windows), "timed_windows": sum(len(x) for x in batches), "fwd_per_window":
                  [f1, f2], "e2e": e2e, "status": r.status, "message": r.message, "threads": torch.get_num_threads(),
                  "polygons": len(json.load(open(r.outputs["annotations"]))["features"])}))
"""

RSS = """
import json, sys, time
from pathseg.inference.config import PredictConfig
from pathseg.inference.model import load_for_inference
from pathseg.inference.run import predict_slides
slide, model_arg, out, batch, workers, device = sys.argv[1:7]
cfg = PredictConfig(slides=[slide], model=model_arg, out=out, batch=int(batch), workers=int(workers),
                    device=device, overwrite=True)
model = load_for_inference(cfg.model)
t = time.perf_counter(); (r,) = predict_slides(cfg, model=model); dt = time.perf_counter() - t
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": dt, "status": r.status, "message": r.message, "peak_rss_mb": int(hwm) / 1024}))
"""


def _child(code: str, *args: object) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _slide(work: Path, size: int, band: int) -> Path:
    slide = work / (f"mosaic_{size}.tiff" if not band else f"mosaic_{size}_band{band}.tiff")
    if not slide.exists():
        t = time.perf_counter()
        write_mosaic(slide, size, band=band)
        print(f"wrote {slide} ({size}², tissue band {band or size} px) in {time.perf_counter() - t:.0f} s",
              flush=True)
    return slide


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed-size", type=int, default=2048, help="slide side of the throughput run (0: none)")
    ap.add_argument("--rss-sizes", default="", help="slide sides of the RSS runs, e.g. 10000,40000")
    ap.add_argument("--band", type=int, default=1024, help="tissue band height of the RSS slides (0: all tissue)")
    ap.add_argument("--speed-band", type=int, default=0,
                    help="tissue band height of the throughput slide (0: all tissue), glass elsewhere as on a slide")
    ap.add_argument("--rss-model", default="cheap", help="cheap, trained or a finetune run")
    ap.add_argument("--train-steps", type=int, default=60)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--forward-windows", type=int, default=400, help="windows timed alone (the first ones)")
    ap.add_argument("--dir", default="", help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="pathseg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.speed_size:
        model = make_model(work / "model_trained", args.train_steps)
        slide = _slide(work, args.speed_size, args.speed_band)
        r = _child(SPEED, slide, model, work / "out_speed", args.batch, args.workers, args.device,
                   args.forward_windows)
        fwd = sum(r["fwd_per_window"]) / 2 * r["windows"]
        band = args.speed_band or args.speed_size
        print(f"{args.speed_size}² (tissue band {band} px): {r['windows']} tissue windows, {r['polygons']} polygons, "
              f"{r['threads']} torch threads, batch {args.batch}, workers {args.workers}; forward alone {fwd:.1f} s "
              f"({r['fwd_per_window'][0]:.3f} / {r['fwd_per_window'][1]:.3f} s per window before / after, "
              f"{r['timed_windows']} timed), end to end {r['e2e']:.1f} s; ratio {fwd / r['e2e']:.2f}", flush=True)
    if args.rss_sizes:
        model = {"cheap": lambda: make_cheap_model(work / "model_cheap"),
                 "trained": lambda: make_model(work / "model_trained", args.train_steps)}.get(
                     args.rss_model, lambda: args.rss_model)()
        rss = {}
        for size in [int(v) for v in args.rss_sizes.split(",")]:
            slide = _slide(work, size, args.band)
            rss[size] = _child(RSS, slide, model, work / f"out_{size}", args.batch, args.workers, args.device)
            print(f"{size}²: {rss[size]['seconds']:.0f} s ({rss[size]['message']}), peak RSS "
                  f"{rss[size]['peak_rss_mb']:.0f} MB", flush=True)
        mb = [v["peak_rss_mb"] for v in rss.values()]
        print(f"peak RSS largest / smallest: {max(mb) / min(mb):.3f}")


if __name__ == "__main__":
    main()
