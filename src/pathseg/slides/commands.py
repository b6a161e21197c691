"""The ``pathseg tile`` and ``pathseg slides info`` commands.

``pathseg tile`` is resumable per slide: a slide whose ``DIR/<slide_id>/done.json`` exists is skipped, per-slide
files are written atomically and the global ``DIR/tiles.csv`` is rebuilt from the finished slides at the end, so
killing a run and starting it again redoes only unfinished slides and never duplicates rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from pathseg.errors import ConfigError, PathsegError

log = logging.getLogger("pathseg.slides")

SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".png",
                  ".jpg", ".jpeg"}
Backend = Literal["auto", "openslide", "tiffslide", "image"]


@dataclass
class TileConfig:
    """Tile slides at a target µm/px into a tile index with tissue masks and grid thumbnails.

    --mpp is the resolution of the tiles. A slide's own resolution comes from its metadata; for slides without
    one give it with --slide-mpp (all such slides) or --mpp-csv (a slide,mpp CSV).
    """

    slides: list[str] = field(metadata={"positional": True, "help": "slide files or folders of slides"})
    out: str = field(metadata={"help": "output directory (resumable: finished slides are skipped)"})
    mpp: float = field(default=0.5, metadata={"help": "target resolution of the tiles in µm/px"})
    size: int = field(default=256, metadata={"help": "tile size in pixels at --mpp"})
    stride: int | None = field(default=None, metadata={"help": "grid step in pixels at --mpp (default: --size)"})
    min_tissue: float = field(default=0.5, metadata={"help": "minimum tissue fraction of a kept tile"})
    workers: int = field(default=1, metadata={"help": "processes working on different slides"})
    backend: Backend = field(default="auto", metadata={"help": "slide reader"})
    slide_mpp: float | None = field(
        default=None, metadata={"help": "µm/px of level 0 for slides whose metadata has none (never overrides it)"})
    mpp_csv: str | None = field(default=None, metadata={"help": "CSV with slide,mpp rows for slides lacking µm/px"})
    tissue_mpp: float = field(default=8.0, metadata={"help": "resolution of the tissue mask in µm/px"})

    def validate(self) -> None:
        """Check ranges."""
        if self.mpp <= 0 or self.size <= 0 or (self.stride is not None and self.stride <= 0):
            raise ConfigError("--mpp, --size and --stride must be positive")
        if not 0.0 <= self.min_tissue <= 1.0:
            raise ConfigError(f"--min-tissue must be in [0, 1], got {self.min_tissue}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.tissue_mpp <= 0:
            raise ConfigError("--tissue-mpp must be positive")


def expand_slides(items: list[str]) -> list[Path]:
    """Files as given, folders expanded to their slide files (sorted); duplicates removed."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in SLIDE_SUFFIXES))
        else:
            out.append(p)
    seen: set[str] = set()
    unique = []
    for p in out:
        key = str(p.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def assign_ids(paths: list[Path], known: dict[str, str]) -> dict[str, str]:
    """Unique slide ids: the id already recorded in the output directory, else the file stem, else
    ``stem-<6 hex of the path hash>`` when the stem is taken by another slide."""
    ids: dict[str, str] = {}
    taken = set(known.values())
    stems: dict[str, int] = {}
    for p in paths:
        if str(p.resolve()) not in known:
            stems[p.stem] = stems.get(p.stem, 0) + 1
    for p in paths:
        key = str(p.resolve())
        if key in known:
            ids[key] = known[key]
            continue
        sid = p.stem
        if stems[sid] > 1 or sid in taken:
            sid = f"{p.stem}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"
        ids[key] = sid
        taken.add(sid)
    return ids


def _check_params(out: Path, params: dict[str, object], write: bool = False) -> None:
    """Refuse an output directory tiled with other parameters; record them with ``write``."""
    from pathseg.io import atomic_write_text

    path = out / "tiling.json"
    params = json.loads(json.dumps(params))  # tuples -> lists, as read back
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != params:
            diff = ", ".join(f"{k}: {old.get(k)} -> {v}" for k, v in params.items() if old.get(k) != v)
            raise PathsegError(f"was tiled with other parameters ({diff}); choose another --out", out)
    elif write:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(params, indent=2) + "\n")


def assemble_index(out: Path) -> int:
    """Rebuild ``DIR/tiles.csv`` from every finished slide under ``out``; returns the number of rows."""
    import csv

    from pathseg.io import atomic_write_text
    from pathseg.slides.tiling import read_marker, rows_to_csv

    rows: list[dict[str, object]] = []
    for d in sorted(p for p in out.iterdir() if p.is_dir()):
        if read_marker(d) is None:
            continue
        with (d / "tiles.csv").open(newline="", encoding="utf-8") as fh:
            rows.extend(csv.DictReader(fh))
    atomic_write_text(out / "tiles.csv", rows_to_csv(rows))
    return len(rows)


def _check_fits(dimensions: tuple[int, int], slide_mpp: float, cfg: TileConfig) -> None:
    """Refuse a slide smaller than one tile at the target resolution (it would give 0 tiles)."""
    w, h = (round(d * slide_mpp / cfg.mpp) for d in dimensions)
    if cfg.size > w or cfg.size > h:
        raise PathsegError(f"slide is {w}x{h} px at --mpp {cfg.mpp:g}, smaller than one tile of --size {cfg.size}")


def _note(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def tile_command(cfg: TileConfig) -> int:
    """Run ``pathseg tile``.

    Returns:
        0, or 2 when some slides failed (each with its own ``error:`` line; the other slides are tiled and kept).

    Raises:
        PathsegError: Bad parameters, slides without µm/px, or no tile kept at all (exit code 2).
    """
    from pathseg.slides.mpp import lookup_mpp_csv, missing_mpp_error, read_mpp_csv
    from pathseg.slides.reader import open_slide
    from pathseg.slides.tiling import SlideJob, SlideResult, TileParams, read_marker
    from pathseg.slides.tissue import TissueParams

    cfg.validate()
    out = Path(cfg.out)
    params = TileParams(cfg.mpp, cfg.size, cfg.stride or cfg.size, cfg.min_tissue, TissueParams(mpp=cfg.tissue_mpp))
    table = read_mpp_csv(cfg.mpp_csv) if cfg.mpp_csv else {}
    paths = expand_slides(cfg.slides)
    if not paths:
        raise PathsegError("no slides given (folders are searched for " + ", ".join(sorted(SLIDE_SUFFIXES)) + ")")
    _check_params(out, asdict(params))
    known = {}
    for d in out.iterdir() if out.is_dir() else []:
        marker = read_marker(d) if d.is_dir() else None
        if marker:
            known[str(marker["slide_path"])] = d.name
    ids = assign_ids(paths, known)

    results: list[SlideResult] = []
    jobs: list[SlideJob] = []
    missing: list[Path] = []
    for p in paths:
        sid = ids[str(p.resolve())]
        if read_marker(out / sid) is not None:
            results.append(SlideResult(sid, str(p), "skipped"))
            continue
        from_csv = lookup_mpp_csv(table, p) if table else None
        user, source = (from_csv, f"user (--mpp-csv {cfg.mpp_csv})") if from_csv else (cfg.slide_mpp,
                                                                                       "user (--slide-mpp)")
        try:  # resolve µm/px up front: a missing resolution refuses the run before any work
            with open_slide(p, cfg.backend, mpp=user, mpp_source=source) as slide:
                if slide.mpp is None:
                    missing.append(p)
                else:
                    _check_fits(slide.dimensions, slide.mpp, cfg)
                    if not slide.mpp_source.startswith("user"):
                        user = None  # the metadata wins; do not pass (and warn about) the user value again
        except PathsegError as exc:
            results.append(SlideResult(sid, str(p), "failed", message=exc.message))
            continue
        jobs.append(SlideJob(str(p), sid, str(out), params, cfg.backend, user, source))
    if missing:
        raise missing_mpp_error(missing[0], others=len(missing) - 1)
    if not jobs and all(r.status == "failed" for r in results) and len(results) == 1:
        raise PathsegError(results[0].message, results[0].path)  # nothing to do: refuse before writing anything
    _check_params(out, asdict(params), write=True)
    for r in results:
        if r.status == "failed":
            _note(f"error: {r.path}: {r.message}")
    skipped = sum(r.status == "skipped" for r in results)
    if skipped:
        _note(f"{skipped} slide(s) already tiled in {out}: skipped")
    results.extend(_run_jobs(jobs, cfg.workers))
    n_rows = assemble_index(out)
    failed = [r for r in results if r.status == "failed"]
    tiled = sum(r.status in ("done", "empty") for r in results)
    _note(f"{tiled} slide(s) tiled, {skipped} skipped, {len(failed)} failed; {n_rows} tiles in {out / 'tiles.csv'}")
    if failed:  # each failed slide has had its own error: line; the finished ones are kept
        _note(f"{len(failed)} of {len(results)} slide(s) failed (error: lines above); run the same command again "
              "to retry them")
        return 2
    if n_rows == 0:
        raise PathsegError(f"no tile was kept (--size {cfg.size} at --mpp {cfg.mpp:g}, --min-tissue "
                           f"{cfg.min_tissue:g}); lower --size or --min-tissue", out)
    return 0


def _report(r: object) -> None:
    from pathseg.slides.tiling import SlideResult

    assert isinstance(r, SlideResult)
    if r.status == "failed":
        _note(f"error: {r.path}: {r.message}")
    elif r.status == "empty":
        _note(f"warning: {r.path}: {r.message}")
    else:
        _note(f"{r.slide_id}: {r.message}")


def _run_jobs(jobs: list, workers: int) -> list:  # type: ignore[type-arg]
    from tqdm import tqdm

    from pathseg.slides.tiling import tile_one

    results = []
    bar = tqdm(total=len(jobs), desc="slides", unit="slide", file=sys.stderr, disable=not jobs)
    try:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                r = tile_one(job)
                _report(r)
                results.append(r)
                bar.update()
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            from pathseg.slides.tiling import die_with_parent

            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn"),
                                     initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
                futures = [pool.submit(tile_one, job) for job in jobs]
                for fut in as_completed(futures):
                    r = fut.result()
                    _report(r)
                    results.append(r)
                    bar.update()
    finally:
        bar.close()
    return results


@dataclass
class InfoConfig:
    """Print a slide's dimensions, levels, µm/px (and its source), vendor, objective power and backend."""

    slide: str = field(metadata={"positional": True, "help": "slide or image file"})
    slide_mpp: float | None = field(
        default=None, metadata={"help": "µm/px to use if the metadata has none", "aliases": ["--mpp"]})
    backend: Backend = field(default="auto", metadata={"help": "slide reader"})


def info_command(cfg: InfoConfig) -> int:
    """Run ``pathseg slides info``."""
    from pathseg.slides.reader import open_slide

    with open_slide(cfg.slide, cfg.backend, mpp=cfg.slide_mpp, mpp_source="user (--slide-mpp)") as s:
        w, h = s.dimensions
        # probe the pixel data (first and last tile of level 0, the smallest level): a truncated file fails here
        s.read_region(0, 0, 0, min(16, w), min(16, h))
        s.read_region(0, max(w - 16, 0), max(h - 16, 0), min(16, w), min(16, h))
        s.thumbnail(64)
        print(f"slide:           {s.path}")
        print(f"backend:         {s.backend}")
        print(f"vendor:          {s.vendor}")
        print(f"dimensions:      {w} x {h} px")
        mpp = f"{s.mpp:.4g} µm/px" if s.mpp is not None else "unknown (pass --slide-mpp to set it)"
        print(f"mpp:             {mpp}")
        print(f"mpp source:      {s.mpp_source}")
        power = f"{s.objective_power:g}x" if s.objective_power is not None else "unknown"
        print(f"objective power: {power}")
        print(f"levels:          {s.level_count}")
        for i, ((lw, lh), ds) in enumerate(zip(s.level_dimensions, s.level_downsamples)):
            lm = s.level_mpp(i)
            print(f"  level {i}: {lw} x {lh} px, downsample {ds:.4g}" + (f", {lm:.4g} µm/px" if lm else ""))
    return 0
