"""Tiling one slide: tissue mask, tile grid at a target µm/px, per-slide outputs written atomically.

The grid covers the slide from its top-left corner: tile ``(row, col)`` starts at level-0
``x = round(col * stride0)``, ``y = round(row * stride0)`` with ``stride0 = stride * mpp / slide_mpp``; only tiles
lying wholly inside the slide are considered, and a tile is kept when the fraction of its area covered by the
tissue mask is at least ``min_tissue``. Per slide, ``DIR/<slide_id>/`` receives ``tiles.csv``, ``tissue.png``
(mask, 255 = tissue, at the mask's own µm/px), ``thumbnail_grid.png`` and, last, the ``done.json`` marker.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pathseg.errors import PathsegError
from pathseg.io import atomic_write_text, write_png
from pathseg.slides.reader import Slide, open_slide
from pathseg.slides.tissue import TissueParams, box_fractions, detect_tissue, integral

INDEX_COLUMNS = ["slide_id", "slide_path", "x", "y", "size0", "size", "mpp", "slide_mpp", "mpp_source", "row",
                 "col", "tissue_fraction"]
DONE = "done.json"


@dataclass(frozen=True)
class TileParams:
    """Grid parameters shared by all slides of one tiling run (recorded in ``DIR/tiling.json``)."""

    mpp: float = 0.5
    size: int = 256
    stride: int = 256
    min_tissue: float = 0.5
    tissue: TissueParams = field(default_factory=TissueParams)


@dataclass(frozen=True)
class SlideJob:
    """One slide to tile (picklable, sent to worker processes)."""

    path: str
    slide_id: str
    out_dir: str
    params: TileParams
    backend: str = "auto"
    user_mpp: float | None = None
    user_mpp_source: str = "user (--slide-mpp)"


@dataclass
class SlideResult:
    """Outcome of one slide: ``status`` is ``done``, ``empty`` (no tissue, 0 tiles) or ``failed``."""

    slide_id: str
    path: str
    status: str
    n_tiles: int = 0
    message: str = ""


def grid_positions(width: int, height: int, size0: float, stride0: float) -> tuple[np.ndarray, np.ndarray]:
    """Level-0 top-left coordinates ``(xs, ys)`` of the columns and rows of whole tiles inside the slide."""
    n_cols = math.floor((width - size0) / stride0 + 1e-9) + 1 if width >= size0 else 0
    n_rows = math.floor((height - size0) / stride0 + 1e-9) + 1 if height >= size0 else 0
    return np.round(np.arange(n_cols) * stride0).astype(int), np.round(np.arange(n_rows) * stride0).astype(int)


def tile_table(slide: Slide, mask: np.ndarray, mask_downsample: float, params: TileParams) -> list[dict[str, object]]:
    """Rows of the tile index for ``slide`` given its tissue mask (``mask_downsample`` level-0 px per mask px)."""
    assert slide.mpp is not None
    size0 = params.size * params.mpp / slide.mpp
    stride0 = params.stride * params.mpp / slide.mpp
    xs, ys = grid_positions(*slide.dimensions, size0, stride0)
    if xs.size == 0 or ys.size == 0:
        return []
    table = integral(mask)
    gx, gy = np.meshgrid(xs, ys)
    frac = box_fractions(table, gx / mask_downsample, gy / mask_downsample, size0 / mask_downsample)
    rows = []
    path = str(Path(slide.path).resolve())
    for r, c in zip(*np.nonzero(frac >= params.min_tissue - 1e-12)):
        rows.append({
            "slide_id": "", "slide_path": path, "x": int(xs[c]), "y": int(ys[r]), "size0": round(size0),
            "size": params.size, "mpp": params.mpp, "slide_mpp": slide.mpp, "mpp_source": slide.mpp_source,
            "row": int(r), "col": int(c), "tissue_fraction": round(float(frac[r, c]), 4),
        })
    return rows


def rows_to_csv(rows: list[dict[str, object]]) -> str:
    """Tile-index rows as CSV text with the :data:`INDEX_COLUMNS` header."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=INDEX_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _grid_thumbnail(slide: Slide, rows: list[dict[str, object]], max_size: int = 1024) -> np.ndarray:
    from PIL import Image, ImageDraw

    thumb = slide.thumbnail(max_size)
    ds = slide.dimensions[0] / thumb.shape[1]
    img = Image.fromarray(thumb)
    draw = ImageDraw.Draw(img)
    for row in rows:
        x, y, s = (float(row[k]) / ds for k in ("x", "y", "size0"))  # type: ignore[arg-type]
        draw.rectangle([x, y, x + s, y + s], outline=(0, 160, 0), width=2)
    return np.asarray(img)


def tile_one(job: SlideJob) -> SlideResult:
    """Tile one slide and write its outputs; never raises for a bad slide (the result says what went wrong)."""
    out = Path(job.out_dir) / job.slide_id
    try:
        with open_slide(job.path, job.backend, mpp=job.user_mpp, mpp_source=job.user_mpp_source) as slide:  # type: ignore[arg-type]
            if slide.mpp is None:
                from pathseg.slides.mpp import missing_mpp_error

                raise missing_mpp_error(job.path)
            p = job.params
            mask_ds = max(p.tissue.mpp / slide.mpp, 1.0)
            tissue_params = TissueParams(**{**asdict(p.tissue), "mpp": mask_ds * slide.mpp})
            mask = detect_tissue(slide.overview(mask_ds), tissue_params)
            size0 = p.size * p.mpp / slide.mpp
            w, h = slide.dimensions
            if size0 > w or size0 > h:
                raise PathsegError(f"slide is {round(w * slide.mpp / p.mpp)}x{round(h * slide.mpp / p.mpp)} px at "
                                   f"--mpp {p.mpp:g}, smaller than one tile of --size {p.size}", job.path)
            rows = tile_table(slide, mask, mask_ds, p)
            for row in rows:
                row["slide_id"] = job.slide_id
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "tiles.csv", rows_to_csv(rows))
            write_png(out / "tissue.png", (mask * 255).astype(np.uint8))
            write_png(out / "thumbnail_grid.png", _grid_thumbnail(slide, rows))
            status = "done" if mask.any() else "empty"
            message = (f"{slide.mpp:.4g} µm/px from {slide.mpp_source}; {len(rows)} tiles"
                       if mask.any() else "no tissue found; 0 tiles")
            if slide.mpp > p.mpp * 1.01:
                message += f" (upsampled: the slide's {slide.mpp:.4g} µm/px is coarser than --mpp {p.mpp:g})"
            marker = {"slide_id": job.slide_id, "slide_path": str(Path(job.path).resolve()), "status": status,
                      "n_tiles": len(rows), "slide_mpp": slide.mpp, "mpp_source": slide.mpp_source,
                      "backend": slide.backend, "tissue_mpp": mask_ds * slide.mpp,
                      "tissue_fraction": round(float(mask.mean()), 4)}
            atomic_write_text(out / DONE, json.dumps(marker, indent=2) + "\n")
            return SlideResult(job.slide_id, job.path, status, len(rows), message)
    except PathsegError as exc:
        return SlideResult(job.slide_id, job.path, "failed", message=exc.message)
    except Exception as exc:  # a bad slide must not stop the others
        return SlideResult(job.slide_id, job.path, "failed", message=f"{type(exc).__name__}: {exc}")


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this process when its parent dies, whatever signal killed the parent.

    On Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` asks the kernel to kill the worker when its parent exits (even by
    ``kill -9``); everywhere, a daemon thread also polls the parent id once a second. A parent already gone before
    the call ends the worker at once.
    """
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        import contextlib
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="pathseg-parent-watch", daemon=True).start()


def read_marker(slide_dir: str | os.PathLike[str]) -> dict[str, object] | None:
    """The ``done.json`` of a slide directory, or ``None`` if the slide is not finished."""
    path = Path(slide_dir) / DONE
    if not path.is_file() or not (Path(slide_dir) / "tiles.csv").is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
