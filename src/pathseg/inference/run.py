"""Whole-slide inference: the Python API :func:`predict_slides` and the ``pathseg predict`` command.

Per slide: open it and resolve its µm/px (refused without one unless ``--slide-mpp``), refuse a slide coarser than
the model's resolution, detect tissue, plan the window grid (:mod:`~pathseg.inference.grid`), then read batches in
data-loader workers, run the model, blend cell by cell (:mod:`~pathseg.inference.blend`) and hand finished
cells to a writer thread, which saves them as progress files and streams them into the outputs
(:mod:`~pathseg.inference.assemble`). Outputs are built in a staging folder and renamed to ``OUT/<slide_id>/``
(``done.json`` last). A failing slide gives one ``error:`` line; the others go on.

Several processes: with ``WORLD_SIZE``/``RANK`` (torchrun, Lightning) or ``SLURM_NTASKS``/``SLURM_PROCID`` set,
rank ``r`` of ``W`` takes slides ``r, r + W, ...`` (sorted, ids assigned over all slides) and runs on
``cuda:LOCAL_RANK``; each rank writes ``summary_rank<r>.json``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathseg.errors import DataError, PathsegError
from pathseg.inference.config import PredictConfig, PredictTrainerConfig
from pathseg.inference.grid import SlidePlan, plan_slide
from pathseg.inference.model import LoadedModel, Predictor, load_for_inference

log = logging.getLogger("pathseg.inference")
BandCallback = Callable[[str, int, int], None]  # (slide_id, band, number of bands)
#: Longest side of the tissue mask: on larger slides it is made coarser than --tissue-mpp (detection needs about
#: 40 bytes per mask pixel, which would otherwise grow with the slide's area).
MAX_MASK_SIDE = 1024
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept fixed (see fix_mmap_threshold)


@dataclass
class SlideOutcome:
    """Result of one slide: ``status`` is ``done``, ``skipped`` (finished before) or ``failed``."""

    slide_id: str
    path: str
    status: str
    message: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    areas: list[dict[str, Any]] = field(default_factory=list)


def rank_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun/Lightning or SLURM variables; ``(0, 1, 0)`` alone."""
    env = os.environ
    if "WORLD_SIZE" in env:
        return int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Have glibc map every allocation of ``size`` bytes or more on its own and unmap it when it is freed.

    By default glibc raises its mmap threshold to the size of each large block that is freed (up to 32 MiB); such
    blocks then come from the heap, whose memory stays with the process. Band- and tile-row-sized arrays grow with
    the slide's width, so peak RSS did too (measured: +109 MB from 1536 to 9216 px wide; +40 MB with a fixed
    threshold). Setting the threshold (``mallopt(M_MMAP_THRESHOLD)``) turns the dynamic adjustment off for the whole
    process. Returns whether it was set (glibc only).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, size))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl...): nothing to do
        return False


def distributed(cfg: PredictTrainerConfig) -> bool:
    """Whether the trainer settings ask for more than one process (then Lightning's predict loop runs)."""
    from pathseg.train.factory import parse_devices

    devices = parse_devices(cfg.devices)
    many = devices == -1 or (isinstance(devices, int) and devices > 1) or (isinstance(devices, list)
                                                                          and len(devices) > 1)
    return bool(many or cfg.num_nodes > 1)


def _device(name: str, world: int, local_rank: int) -> torch.device:
    from pathseg.tasks.common import pick_device

    if world > 1 and name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank % torch.cuda.device_count()}")
    return pick_device(name)


class _Run:
    """Shared state of one ``predict`` run (model, device, settings)."""

    def __init__(self, cfg: PredictConfig, on_band: BandCallback | None, model: LoadedModel | None = None,
                 ranks: tuple[int, int] | None = None, device: torch.device | None = None) -> None:
        from pathseg.inference.vectors import OBJECT_EXTRACTORS
        from pathseg.tasks.sliding import blend_weights

        self.cfg, self.on_band = cfg, on_band
        self.model = model or load_for_inference(cfg.model, cfg.weights, cfg.seed, cfg.mpp)
        spec = self.model.spec
        self.window = int(cfg.tile or spec.window)
        self.overlap = float(spec.overlap if cfg.overlap is None else cfg.overlap)
        self.weight = blend_weights(self.window, spec.blend)  # type: ignore[arg-type]
        self.extractor = None if cfg.objects == "none" else OBJECT_EXTRACTORS.get(cfg.objects)
        self.rank, self.world, local = rank_world() if ranks is None else (*ranks, 0)
        self.predictor = Predictor(self.model.module, device or _device(cfg.device, self.world, local), cfg.amp,
                                   cfg.channels_last)
        names = list(spec.class_names) or [f"class {i}" for i in range(spec.num_classes)]
        self.class_names = names + [f"class {i}" for i in range(len(names), spec.num_classes)]
        from pathseg.tasks.evaluation import overlay_palette

        self.colors = overlay_palette(spec)

    def key(self, path: Path, dims: tuple[int, int], slide_mpp: float) -> dict[str, Any]:
        """What a slide's bands depend on (a resumed run with other values starts the slide again)."""
        w = self.model.weights.stat()
        c = self.cfg
        return {"weights": str(self.model.weights.resolve()), "weights_size": w.st_size, "weights_mtime": w.st_mtime_ns,
                "mpp": self.model.mpp, "window": self.window, "overlap": self.overlap, "blend": self.model.spec.blend,
                "batch": c.batch, "channels_last": c.channels_last, "min_tissue": c.min_tissue,
                "tissue_mpp": c.tissue_mpp, "cell": c.cell,
                "slide": str(path.resolve()), "dims": list(dims), "slide_mpp": slide_mpp}


def _plan(run: _Run, path: Path) -> tuple[SlidePlan, float, np.ndarray]:
    """Open, check and plan a slide: ``(plan, slide µm/px, RGB thumbnail)``."""
    from pathseg.slides.mpp import missing_mpp_error
    from pathseg.slides.reader import open_slide
    from pathseg.slides.tissue import TissueParams, detect_tissue

    cfg, mpp = run.cfg, run.model.mpp
    with open_slide(path, cfg.backend, mpp=cfg.slide_mpp, mpp_source="user (--slide-mpp)") as slide:
        if slide.mpp is None:
            raise missing_mpp_error(path)
        if slide.mpp > mpp * 1.1:
            raise DataError(f"the slide is {slide.mpp:.4g} µm/px, coarser than the model's {mpp:.4g} µm/px "
                            "(it would have to be upsampled); use a model trained at a coarser resolution", path)
        mask_ds = max(cfg.tissue_mpp / slide.mpp, 1.0, max(slide.dimensions) / MAX_MASK_SIDE)
        mask = detect_tissue(slide.overview(mask_ds), TissueParams(mpp=mask_ds * slide.mpp))
        if not mask.any() and cfg.min_tissue >= 0:
            raise DataError("no tissue found on the slide", path)
        plan = plan_slide(slide.dimensions, slide.mpp, mpp, run.window, run.overlap, mask, mask_ds,
                          cfg.min_tissue, cfg.batch, cfg.cell)
        if len(plan.windows) == 0:
            raise DataError(f"no window has a tissue fraction above --min-tissue {cfg.min_tissue}", path)
        return plan, float(slide.mpp), slide.thumbnail(1024)


def _compute(run: _Run, path: Path, plan: SlidePlan, slide_mpp: float, start: int, spill: Path,
             put: Callable[[Any], None]) -> None:
    """Run the model over the tissue windows that bands ``start..`` need; ``put`` each finished cell in order."""
    from pathseg.inference.blend import CellBlender
    from pathseg.inference.loader import WindowBatches, batch_loader

    if start >= plan.num_bands:
        return
    first = plan.first_chunk_for_band(start)
    chunks = [plan.chunk(c) for c in range(first, plan.num_chunks)]
    spec = run.model.spec
    ds = WindowBatches(str(path), run.cfg.backend, slide_mpp, chunks, first, plan.window, plan.ds, spec.mean,
                       spec.std)
    pred = run.predictor
    weight = run.weight.to(pred.device)
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    blender = CellBlender(plan.width, plan.height, spec.num_classes, run.weight.numpy(), plan.ys, plan.edges, put,
                          first_band=start, spill=spill)
    for item in batch_loader(ds, run.cfg.workers, pin=pred.device.type == "cuda"):
        if "error" in item:
            raise DataError(item["error"], path)
        probs = pred(item["x"])
        if probs.shape[1] != spec.num_classes:
            raise DataError(f"the model gives {probs.shape[1]} channels, model.json says {spec.num_classes}", path)
        weighted = (probs * weight).cpu().numpy()
        for (r, y, x), wp in zip(item["coords"].tolist(), weighted):
            blender.add(r, y, x, wp)
    blender.finish()


def _cells(run: _Run, sid: str, work: Path, plan: SlidePlan, start: int, q: queue.Queue[Any]) -> Iterator[Any]:
    """Cells in order: saved ones from ``work``, then computed ones from ``q`` (saved as they arrive)."""
    from pathseg.inference.progress import load_cell, save_cell

    for r in range(plan.num_bands):
        for j in range(plan.num_cells):
            if r < start:
                classes, probs = load_cell(work, r, j)
                yield r, j, plan.edges[j], classes, probs
                continue
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            save_cell(work, r, j, item[3], item[4])
            yield item
        if r >= start and run.on_band is not None:
            run.on_band(sid, r, plan.num_bands)


def predict_one(run: _Run, path: Path, sid: str) -> SlideOutcome:
    """Predict one slide into ``OUT/<sid>/`` (resuming from its work folder); raises for a bad slide."""
    from pathseg.inference.assemble import Assembler, SlideInfo, write_probabilities
    from pathseg.inference.progress import first_missing, open_work
    from pathseg.io import atomic_write_text, staging_dir

    out = Path(run.cfg.out)
    final = out / sid
    plan, slide_mpp, thumb = _plan(run, path)
    work = open_work(out / ".work" / sid, run.key(path, (plan.width0, plan.height0), slide_mpp))
    start = first_missing(work, plan.num_bands, plan.num_cells)
    mask_outside = run.cfg.outside_tissue == "background" and run.cfg.min_tissue >= 0
    info = SlideInfo(sid, slide_mpp, run.model.mpp, run.class_names, run.colors, run.cfg.simplify,
                     run.cfg.min_area_um2, thumb, mask_outside)
    extractor = None if run.extractor is None else run.extractor(run.model.spec.num_classes)
    q: queue.Queue[Any] = queue.Queue(maxsize=1)
    result: dict[str, Any] = {}
    with staging_dir(final, overwrite=True) as tmp:
        def write() -> None:
            try:
                result["paths"] = Assembler(plan, info, tmp, extractor).run(_cells(run, sid, work, plan, start, q))
            except BaseException as exc:  # handed to the main thread
                result["error"] = exc

        writer = threading.Thread(target=write, name=f"pathseg-writer-{sid}", daemon=True)
        writer.start()

        def put(item: Any) -> None:
            while writer.is_alive():
                try:
                    q.put(item, timeout=0.5)
                    return
                except queue.Full:
                    continue
            raise result.get("error") or RuntimeError("the writer thread stopped")

        try:
            _compute(run, path, plan, slide_mpp, start, work / "pending", put)
        except BaseException as exc:
            while writer.is_alive():  # stop the writer, then let the staging folder go
                try:
                    q.put(exc, timeout=0.5)
                    break
                except queue.Full:
                    continue
            writer.join(timeout=60)
            raise
        writer.join()
        if "error" in result:
            raise result["error"]
        paths: dict[str, Path] = result["paths"]
        if run.cfg.probabilities:
            paths.update(write_probabilities(plan, work, tmp, info))
        areas = json.loads((tmp / "areas.json").read_text())["classes"]
        marker = {"slide_id": sid, "slide_path": str(path.resolve()), "slide_mpp": slide_mpp,
                  "mpp": run.model.mpp, "model": str(run.model.weights), "window": run.window,
                  "overlap": run.overlap, "num_windows": len(plan.windows), "num_bands": plan.num_bands,
                  "outputs": {k: v.name for k, v in sorted(paths.items())}}
        atomic_write_text(tmp / "done.json", json.dumps(marker, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    if not any(work.parent.iterdir()):
        work.parent.rmdir()
    outputs = {k: str(final / v.name) for k, v in paths.items()}
    return SlideOutcome(sid, str(path), "done", f"{len(plan.windows)} windows at {run.model.mpp:.4g} µm/px",
                        outputs, areas)


def _finished(final: Path, sid: str, path: Path) -> SlideOutcome | None:
    marker = final / "done.json"
    if not marker.is_file():
        return None
    done = json.loads(marker.read_text())
    areas = json.loads((final / "areas.json").read_text())["classes"]
    outputs = {k: str(final / n) for k, n in dict(done.get("outputs", {})).items()}
    return SlideOutcome(sid, str(path), "skipped", "finished before", outputs, areas)


def predict_slides(cfg: PredictConfig, on_band: BandCallback | None = None,
                   report: Callable[[SlideOutcome], None] | None = None,
                   model: LoadedModel | None = None) -> list[SlideOutcome]:
    """Segment every slide of ``cfg`` (this rank's share) and return one outcome per slide.

    Args:
        cfg: The same config ``pathseg predict`` builds from its flags.
        on_band: Called after each band's progress file is written (progress display).
        report: Called with each slide's outcome as soon as it is known.
        model: An already loaded model (e.g. from :func:`~pathseg.inference.model.load_for_inference`); default:
            load ``cfg.model``.

    Returns:
        Outcomes with the output paths (``classes``, ``annotations``, ``overlay``, ``areas_csv``, ...) and the
        area table (per class: pixels, ``area_um2``, ``fraction_of_tissue``).

    Raises:
        PathsegError: A problem with the model or the flags (every slide would fail).
    """
    fix_mmap_threshold()
    if distributed(cfg.trainer):
        from pathseg.inference.distributed import predict_distributed  # imports Lightning

        return predict_distributed(cfg, on_band, report, model)
    paths, ids = slide_ids(cfg)
    run = _Run(cfg, on_band, model)
    outcomes = [predict_path(run, path, ids[str(path.resolve())], report) for path in paths[run.rank :: run.world]]
    write_summary(cfg, run, outcomes)
    return outcomes


def slide_ids(cfg: PredictConfig) -> tuple[list[Path], dict[str, str]]:
    """Every slide of ``cfg`` (sorted) and its output id."""
    from pathseg.slides.commands import assign_ids, expand_slides

    paths = expand_slides(cfg.slides)
    if not paths:
        raise DataError("no slides found", ", ".join(cfg.slides))
    return paths, assign_ids(paths, {})


def predict_path(run: _Run, path: Path, sid: str, report: Callable[[SlideOutcome], None] | None) -> SlideOutcome:
    """One slide's outcome (finished before, done now, or failed with its message)."""
    cfg = run.cfg
    done = None if cfg.overwrite else _finished(Path(cfg.out) / sid, sid, path)
    try:
        outcome = done or predict_one(run, path, sid)
    except PathsegError as exc:
        outcome = SlideOutcome(sid, str(path), "failed", exc.message)
    except Exception as exc:  # a bad slide must not stop the others (but SIGTERM does)
        if type(exc).__name__ == "Terminated":  # pathseg.cli.main.Terminated, raised by SIGTERM/SIGHUP
            raise
        outcome = SlideOutcome(sid, str(path), "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    if report is not None:
        report(outcome)
    return outcome


def write_summary(cfg: PredictConfig, run: _Run, outcomes: list[SlideOutcome], name: str = "") -> None:
    """``OUT/summary.json`` (``summary_rank<r>.json`` for rank ``r`` of several) of ``outcomes``."""
    from pathseg.io import atomic_write_text

    name = name or ("summary.json" if run.world == 1 else f"summary_rank{run.rank}.json")
    summary = {"model": str(run.model.weights), "mpp": run.model.mpp, "mpp_source": run.model.mpp_source,
               "window": run.window, "overlap": run.overlap, "rank": run.rank, "world_size": run.world,
               "slides": [asdict(o) for o in outcomes]}
    atomic_write_text(Path(cfg.out) / name, json.dumps(summary, indent=2) + "\n")


def predict_command(cfg: PredictConfig) -> int:
    """``pathseg predict``: one line per slide (``error:`` lines for failed ones), a summary, exit 2 if any failed."""
    import sys

    def show(o: SlideOutcome) -> None:
        if o.status == "failed":
            print(f"error: {o.path}: {o.message}", file=sys.stderr, flush=True)
        else:
            tissue = ", ".join(f"{a['class']} {a['fraction_of_tissue']:.1%}" for a in o.areas)
            print(f"{o.slide_id}: {o.status} ({o.message}); {tissue}", flush=True)

    outcomes = predict_slides(cfg, report=show)
    failed = sum(o.status == "failed" for o in outcomes)
    if all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")):
        print(f"{len(outcomes) - failed} of {len(outcomes)} slides done, {failed} failed; outputs in {cfg.out}")
    return 2 if failed else 0
