"""Turning finished cells into the per-slide outputs, in one streaming pass (run in the writer thread).

Every cell (set to class 0 outside the tissue mask unless ``--outside-tissue keep``) feeds the class polygons, the
object extractor, the area counts (class pixels inside the tissue mask) and the overlay's small class map, and is
copied into its band's uint8 class rows. Bands (model resolution) are resampled by nearest neighbour onto the
slide's level-0 pixel grid, so the class map lines up pixel for pixel with the slide: level-0 pixel ``(X, Y)`` takes
model pixel ``(min(floor((X + 0.5) / ds), W - 1), min(floor((Y + 0.5) / ds), H - 1))``, and the class-map TIFF pulls
them as tile rows. The only full-width arrays are these uint8 rows (a band and a tile row). Probability TIFFs are a
second pass over the cell files.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from pathseg.inference.blend import Cell
from pathseg.inference.grid import SlidePlan
from pathseg.inference.progress import load_cell
from pathseg.inference.pyramid import write_streamed_pyramid
from pathseg.inference.vectors import Component, ComponentTracer, ObjectExtractor, to_level0_many

Band = tuple[int, np.ndarray]  # (band index, uint8 rows [h, W])
TILE = 256
COLUMN_CHUNK = 4096


@dataclass
class SlideInfo:
    """What the outputs record about the slide and the model."""

    slide_id: str
    slide_mpp: float
    mpp: float
    class_names: list[str]
    colors: list[tuple[int, int, int]]
    simplify: float = 1.0
    min_area_um2: float = 0.0
    thumbnail: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 3), np.uint8))
    mask_outside: bool = False  # class 0 outside the tissue mask (in the map, polygons, objects and overlay)


def grid_rows(plan: SlidePlan, bands: Iterator[Band]) -> Iterator[np.ndarray]:
    """Level-0 tile rows (``uint8 [<=TILE, width0]``) of the bands' rows resampled onto the slide's pixel grid
    (filled band by band and, when resampling, in column chunks: no temporaries beyond the tile row)."""
    cols = np.minimum(((np.arange(plan.width0) + 0.5) / plan.ds).astype(np.int64), plan.width - 1)
    same = plan.width0 == plan.width and bool((cols == np.arange(plan.width)).all())
    held: list[tuple[int, np.ndarray]] = []  # (first model row, rows)
    for y in range(0, plan.height0, TILE):
        rows = np.minimum(((np.arange(y, min(y + TILE, plan.height0)) + 0.5) / plan.ds).astype(np.int64),
                          plan.height - 1)
        while not held or held[-1][0] + len(held[-1][1]) <= rows[-1]:
            band = next(bands)
            held.append((plan.band_rows(band[0])[0], band[1]))
        held = [h for h in held if h[0] + len(h[1]) > rows[0]]
        out = np.empty((len(rows), plan.width0), np.uint8)
        for top, block in held:
            sel = np.flatnonzero((rows >= top) & (rows < top + len(block)))
            if not len(sel):
                continue
            src = rows[sel] - top
            if same:
                out[sel] = block[src]
                continue
            for c0 in range(0, plan.width0, COLUMN_CHUNK):
                c1 = min(c0 + COLUMN_CHUNK, plan.width0)
                out[sel, c0:c1] = block[np.ix_(src, cols[c0:c1])]
        yield out


class FeatureWriter:
    """A GeoJSON FeatureCollection written feature by feature (QuPath layout)."""

    def __init__(self, fh: TextIO, info: SlideInfo, object_type: str) -> None:
        self.fh, self.info, self.object_type, self.n = fh, info, object_type, 0
        fh.write('{"type": "FeatureCollection", "features": [\n')

    def add(self, comp: Component) -> None:
        """Write one component (level-0 coordinates), unless it is empty or below the minimum area."""
        self.add_all([comp])

    def add_all(self, comps: list[Component]) -> None:
        """Write components (level-0 coordinates), skipping empty ones and those below the minimum area; geometry
        work is done for all of them at once (shapely's vectorised functions)."""
        import shapely

        info = self.info
        comps = [c for c in comps if c.count * info.mpp**2 >= info.min_area_um2]
        if not comps:
            return
        geoms = to_level0_many([c.geometry for c in comps], info.mpp / info.slide_mpp, info.simplify, decimals=2)
        texts = shapely.to_geojson(geoms)
        empty = shapely.is_empty(geoms)
        parts = []
        for comp, text, skip in zip(comps, texts.tolist(), empty.tolist()):
            if skip:
                continue
            k = comp.class_index
            name = info.class_names[k] if k < len(info.class_names) else f"class {k}"
            measurements = {"area_um2": round(comp.count * info.mpp**2, 2), "mean_probability": round(comp.score, 4)}
            props: dict[str, Any] = {"objectType": self.object_type,
                                     "classification": {"name": name, "color": list(info.colors[k % len(info.colors)])},
                                     "isLocked": False, "measurements": measurements}
            if self.object_type == "detection":
                props["score"] = round(comp.score, 4)
            fid = uuid.uuid5(uuid.NAMESPACE_URL, f"pathseg/{info.slide_id}/{self.object_type}/{self.n}")
            parts.append(f'{{"type":"Feature","id":"{fid}","geometry":{text},'
                         f'"properties":{json.dumps(props, separators=(",", ":"))}}}')
            self.n += 1
        if parts:
            self.fh.write(("" if self.n == len(parts) else ",\n") + ",\n".join(parts))

    def close(self) -> None:
        """End the collection."""
        self.fh.write("\n]}\n")


class Assembler:
    """Consumes bands in order and writes the outputs of one slide into ``folder``.

    Args:
        plan: The slide's grid.
        info: Slide and model facts for the outputs.
        folder: Staging folder of the slide's outputs.
        extractor: Optional object extractor (detections).
    """

    def __init__(self, plan: SlidePlan, info: SlideInfo, folder: Path, extractor: ObjectExtractor | None) -> None:
        self.plan, self.info, self.folder, self.extractor = plan, info, folder, extractor
        k = len(info.class_names)
        self.counts = np.zeros(k, np.int64)
        self.tissue_px = 0
        self.tracer = ComponentTracer(list(range(1, k)))
        th, tw = info.thumbnail.shape[:2]
        self.thumb_rows = np.minimum(((np.arange(th) + 0.5) * plan.height / th).astype(np.int64), plan.height - 1)
        self.thumb_cols = np.minimum(((np.arange(tw) + 0.5) * plan.width / tw).astype(np.int64), plan.width - 1)
        self.thumb = np.zeros((th, tw), np.uint8)

    def _side(self, cells: Iterator[Cell], annotations: FeatureWriter, objects: FeatureWriter | None
              ) -> Iterator[Band]:
        """Feeds every cell to the polygons, objects, areas and overlay; yields each band's class rows."""
        p = self.plan
        rows = np.zeros((0, p.width), np.uint8)
        for r, j, x0, classes, probs in cells:
            y0, y1 = p.band_rows(r)
            x1 = x0 + classes.shape[1]
            if j == 0:
                rows = np.zeros((y1 - y0, p.width), np.uint8)
            tissue = p.tissue_rows(y0, y1, x0, x1)
            if self.info.mask_outside:
                classes = np.where(tissue, classes, 0).astype(classes.dtype)
            rows[:, x0:x1] = classes
            self.counts += np.bincount(classes[tissue], minlength=len(self.counts))[: len(self.counts)]
            self.tissue_px += int(tissue.sum())
            sel_r = np.flatnonzero((self.thumb_rows >= y0) & (self.thumb_rows < y1))
            sel_c = np.flatnonzero((self.thumb_cols >= x0) & (self.thumb_cols < x1))
            if len(sel_r) and len(sel_c):
                self.thumb[np.ix_(sel_r, sel_c)] = classes[np.ix_(self.thumb_rows[sel_r] - y0,
                                                                  self.thumb_cols[sel_c] - x0)]
            self.tracer.feed_cell(y0, x0, classes, probs)
            if self.extractor is not None:
                self.extractor.feed_cell(y0, x0, classes, probs)
            if j == p.num_cells - 1:
                last = r == p.num_bands - 1
                annotations.add_all(self.tracer.end_band(last))
                if self.extractor is not None and objects is not None:
                    objects.add_all(self.extractor.end_band(last))
                yield r, rows

    def run(self, cells: Iterator[Cell]) -> dict[str, Path]:
        """Write ``classes.tif``, ``annotations.geojson`` (and ``objects.geojson``), ``overlay.png`` and
        ``areas.csv``/``areas.json``; returns their paths."""
        p, f = self.plan, self.folder
        paths = {"classes": f / "classes.tif", "annotations": f / "annotations.geojson"}
        obj_fh = None
        with paths["annotations"].open("w", encoding="utf-8") as ann_fh:
            annotations = FeatureWriter(ann_fh, self.info, "annotation")
            objects = None
            if self.extractor is not None:
                paths["objects"] = f / "objects.geojson"
                obj_fh = paths["objects"].open("w", encoding="utf-8")
                objects = FeatureWriter(obj_fh, self.info, "detection")
            try:
                fed = self._side(cells, annotations, objects)
                write_streamed_pyramid(paths["classes"], p.height0, p.width0, grid_rows(p, fed),
                                       self.info.slide_mpp, TILE)
                for _ in fed:  # bands below the last TIFF row (none unless rounding left some)
                    pass
                annotations.add_all(self.tracer.finish())
                annotations.close()
                if self.extractor is not None and objects is not None:
                    objects.add_all(self.extractor.finish())
                    objects.close()
            finally:
                if obj_fh is not None:
                    obj_fh.close()
        paths.update(self._areas())
        paths["overlay"] = f / "overlay.png"
        write_overlay(paths["overlay"], self.info.thumbnail, self.thumb, self.info.colors)
        return paths

    def _areas(self) -> dict[str, Path]:
        px_um2 = self.info.mpp**2
        tissue_um2 = self.tissue_px * px_um2
        rows = [{"class_index": i, "class": name, "pixels": int(self.counts[i]),
                 "area_um2": round(float(self.counts[i]) * px_um2, 2),
                 "fraction_of_tissue": round(float(self.counts[i]) / self.tissue_px, 6) if self.tissue_px else 0.0}
                for i, name in enumerate(self.info.class_names)]
        table = {"slide_id": self.info.slide_id, "mpp": self.info.mpp, "tissue_area_um2": round(tissue_um2, 2),
                 "classes": rows}
        csv_lines = ["class_index,class,pixels,area_um2,fraction_of_tissue"]
        csv_lines += [f"{r['class_index']},{r['class']},{r['pixels']},{r['area_um2']},{r['fraction_of_tissue']}"
                      for r in rows]
        (self.folder / "areas.csv").write_text("\n".join(csv_lines) + "\n", encoding="utf-8")
        (self.folder / "areas.json").write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
        return {"areas_csv": self.folder / "areas.csv", "areas_json": self.folder / "areas.json"}


def write_probabilities(plan: SlidePlan, work: Path, folder: Path, info: SlideInfo) -> dict[str, Path]:
    """``probs_<class>.tif`` (uint8, 255 = probability 1) per class, streamed from the cell files."""
    out: dict[str, Path] = {}
    for c, name in enumerate(info.class_names):
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or str(c)
        path = folder / f"probs_{safe}.tif"
        write_streamed_pyramid(path, plan.height0, plan.width0, grid_rows(plan, _channel_bands(plan, work, c)),
                               info.slide_mpp, TILE)
        out[f"probs_{safe}"] = path
    return out


def _channel_bands(plan: SlidePlan, work: Path, c: int) -> Iterator[Band]:
    """Channel ``c`` of every band, put together from its cell files."""
    for r in range(plan.num_bands):
        y0, y1 = plan.band_rows(r)
        rows = np.zeros((y1 - y0, plan.width), np.uint8)
        for j in range(plan.num_cells):
            probs = load_cell(work, r, j)[1]
            assert probs is not None
            rows[:, plan.edges[j] : plan.edges[j + 1]] = probs[c]
        yield r, rows


def write_overlay(path: Path, thumbnail: np.ndarray, classes: np.ndarray, colors: list[tuple[int, int, int]],
                  alpha: float = 0.45) -> None:
    """The slide thumbnail with every class but 0 painted in its colour (``alpha`` blend)."""
    from PIL import Image

    from pathseg.io import atomic_path

    img = thumbnail.astype(np.float32)
    h, w = min(img.shape[0], classes.shape[0]), min(img.shape[1], classes.shape[1])
    img, classes = img[:h, :w], classes[:h, :w]
    palette = np.asarray([colors[i % len(colors)] for i in range(256)], np.float32)
    paint = classes > 0
    img[paint] = (1 - alpha) * img[paint] + alpha * palette[classes[paint]]
    with atomic_path(path) as tmp:  # fast zlib level: a thumbnail, not an archive
        Image.fromarray(img.round().clip(0, 255).astype(np.uint8)).save(tmp, format="PNG", compress_level=1)
