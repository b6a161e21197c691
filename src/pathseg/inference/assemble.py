"""Turning finished bands into the per-slide outputs, in one streaming pass (run in the writer thread).

Bands (model resolution) are resampled by nearest neighbour onto the slide's level-0 pixel grid, so the class map
lines up pixel for pixel with the slide: level-0 pixel ``(X, Y)`` takes model pixel
``(min(floor((X + 0.5) / ds), W - 1), min(floor((Y + 0.5) / ds), H - 1))``. While the class-map TIFF pulls its tile
rows, every band also feeds the class polygons, the object extractor, the area counts (class pixels inside the
tissue mask) and the overlay's small class map. Probability TIFFs are a second pass over the band files.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from pathseg.inference.grid import SlidePlan
from pathseg.inference.progress import load_band
from pathseg.inference.pyramid import write_streamed_pyramid
from pathseg.inference.vectors import Component, ComponentTracer, ObjectExtractor, to_level0

Band = tuple[int, np.ndarray, np.ndarray]  # (band index, classes [h, W], probs [K, h, W])
TILE = 256


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


def grid_rows(plan: SlidePlan, bands: Iterator[Band], pick: Callable[[Band], np.ndarray]) -> Iterator[np.ndarray]:
    """Level-0 tile rows (``uint8 [<=TILE, width0]``) of ``pick(band)`` resampled onto the slide's pixel grid."""
    cols = np.minimum(((np.arange(plan.width0) + 0.5) / plan.ds).astype(np.int64), plan.width - 1)
    held: list[tuple[int, np.ndarray]] = []  # (first model row, rows)
    for y in range(0, plan.height0, TILE):
        rows = np.minimum(((np.arange(y, min(y + TILE, plan.height0)) + 0.5) / plan.ds).astype(np.int64),
                          plan.height - 1)
        while not held or held[-1][0] + len(held[-1][1]) <= rows[-1]:
            band = next(bands)
            held.append((plan.band_rows(band[0])[0], pick(band)))
        held = [h for h in held if h[0] + len(h[1]) > rows[0]]
        top = held[0][0]
        block = held[0][1] if len(held) == 1 else np.concatenate([h[1] for h in held])
        yield np.ascontiguousarray(block[rows - top][:, cols])


class FeatureWriter:
    """A GeoJSON FeatureCollection written feature by feature (QuPath layout)."""

    def __init__(self, fh: TextIO, info: SlideInfo, object_type: str) -> None:
        self.fh, self.info, self.object_type, self.n = fh, info, object_type, 0
        fh.write('{"type": "FeatureCollection", "features": [\n')

    def add(self, comp: Component) -> None:
        """Write one component (level-0 coordinates), unless it is empty or below the minimum area."""
        import shapely

        area_um2 = comp.count * self.info.mpp**2
        if area_um2 < self.info.min_area_um2:
            return
        geom = to_level0(comp.geometry, self.info.mpp / self.info.slide_mpp, self.info.simplify)
        if geom.is_empty:
            return
        geom = shapely.transform(geom, lambda c: np.round(c, 2))
        name = self.info.class_names[comp.class_index] if comp.class_index < len(self.info.class_names) \
            else f"class {comp.class_index}"
        color = list(self.info.colors[comp.class_index % len(self.info.colors)])
        measurements = {"area_um2": round(area_um2, 2), "mean_probability": round(comp.score, 4)}
        props: dict[str, Any] = {"objectType": self.object_type, "classification": {"name": name, "color": color},
                                 "isLocked": False, "measurements": measurements}
        if self.object_type == "detection":
            props["score"] = round(comp.score, 4)
        fid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"pathseg/{self.info.slide_id}/{self.object_type}/{self.n}"))
        feature = {"type": "Feature", "id": fid, "geometry": json.loads(shapely.to_geojson(geom)),
                   "properties": props}
        self.fh.write(("" if self.n == 0 else ",\n") + json.dumps(feature, separators=(",", ":")))
        self.n += 1

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

    def _side(self, bands: Iterator[Band], annotations: FeatureWriter, objects: FeatureWriter | None
              ) -> Iterator[Band]:
        for band in bands:
            r, classes, probs = band
            y0, y1 = self.plan.band_rows(r)
            last = r == self.plan.num_bands - 1
            tissue = self.plan.tissue_rows(y0, y1)
            self.counts += np.bincount(classes[tissue], minlength=len(self.counts))[: len(self.counts)]
            self.tissue_px += int(tissue.sum())
            sel = (self.thumb_rows >= y0) & (self.thumb_rows < y1)
            self.thumb[sel] = classes[self.thumb_rows[sel] - y0][:, self.thumb_cols]
            for comp in self.tracer.feed(y0, classes, probs, last=last):
                annotations.add(comp)
            if self.extractor is not None and objects is not None:
                for comp in self.extractor.feed(y0, classes, probs, last=last):
                    objects.add(comp)
            yield band

    def run(self, bands: Iterator[Band]) -> dict[str, Path]:
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
                fed = self._side(bands, annotations, objects)
                write_streamed_pyramid(paths["classes"], p.height0, p.width0, grid_rows(p, fed, lambda b: b[1]),
                                       self.info.slide_mpp, TILE)
                for _ in fed:  # bands below the last TIFF row (none unless rounding left some)
                    pass
                for comp in self.tracer.finish():
                    annotations.add(comp)
                annotations.close()
                if self.extractor is not None and objects is not None:
                    for comp in self.extractor.finish():
                        objects.add(comp)
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
    """``probs_<class>.tif`` (uint8, 255 = probability 1) per class, streamed from the band files."""
    out: dict[str, Path] = {}
    for c, name in enumerate(info.class_names):
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or str(c)
        path = folder / f"probs_{safe}.tif"
        bands = ((r, *load_band(work, r)) for r in range(plan.num_bands))
        write_streamed_pyramid(path, plan.height0, plan.width0, grid_rows(plan, bands, partial(_channel, c)),
                               info.slide_mpp, TILE)
        out[f"probs_{safe}"] = path
    return out


def _channel(c: int, band: Band) -> np.ndarray:
    return band[2][c]


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
