"""GeoJSON annotations (QuPath "Export objects as GeoJSON") to class-index masks.

A file holds a ``FeatureCollection``, a list of features or one feature. Each ``Polygon`` / ``MultiPolygon`` is in
pixel coordinates of the full image (``x`` right, ``y`` down); its class is ``properties.classification.name``
(QuPath), else ``properties.name``, else ``properties.class``; unclassified features get :data:`UNCLASSIFIED`.
Points and lines carry no area and are skipped (counted in the result). Rasterisation: ``PIL.ImageDraw.polygon``
on the polygon's bounding box, exterior ring filled, interior rings (holes) cleared; features are drawn in file
order, so a later feature wins where two overlap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pathseg.errors import DataError

UNCLASSIFIED = "foreground"

Ring = list[tuple[float, float]]


@dataclass
class Shape:
    """One polygon of a feature: its class name, exterior ring and holes."""

    name: str
    exterior: Ring
    holes: list[Ring]


def _class_name(props: Any) -> str:
    if not isinstance(props, Mapping):
        return UNCLASSIFIED
    cls = props.get("classification")
    if isinstance(cls, Mapping) and cls.get("name"):
        return str(cls["name"])
    if isinstance(cls, str) and cls:
        return cls
    for key in ("name", "class", "label"):
        if isinstance(props.get(key), str) and props[key]:
            return str(props[key])
    return UNCLASSIFIED


def _features(data: Any, path: Path) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, Mapping) and data.get("type") == "FeatureCollection":
        return list(data.get("features") or [])
    if isinstance(data, Mapping) and data.get("type") == "Feature":
        return [data]
    raise DataError("not a GeoJSON FeatureCollection, feature list or feature", path)


def _ring(coords: Any, path: Path) -> Ring:
    try:
        return [(float(p[0]), float(p[1])) for p in coords]
    except (TypeError, ValueError, IndexError):
        raise DataError(f"bad polygon coordinates (expected [[x, y], ...], got {str(coords)[:60]})", path) from None


def _polygons(geom: Any, path: Path) -> Iterator[list[Any]]:
    kind = geom.get("type") if isinstance(geom, Mapping) else None
    if kind == "Polygon":
        yield geom.get("coordinates") or []
    elif kind == "MultiPolygon":
        yield from geom.get("coordinates") or []
    elif kind == "GeometryCollection":
        for g in geom.get("geometries") or []:
            yield from _polygons(g, path)


def read_shapes(path: str | Path) -> tuple[list[Shape], int]:
    """The polygons of a GeoJSON file with their class names, and the number of features without area skipped.

    Raises:
        DataError: The file is not JSON / GeoJSON or has bad coordinates (names the file).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read GeoJSON ({exc})", p) from None
    shapes: list[Shape] = []
    skipped = 0
    for feature in _features(data, p):
        if not isinstance(feature, Mapping):
            raise DataError("a feature must be a JSON object", p)
        name = _class_name(feature.get("properties"))
        polys = list(_polygons(feature.get("geometry"), p))
        if not polys:
            skipped += 1
        for rings in polys:
            if rings:
                shapes.append(Shape(name, _ring(rings[0], p), [_ring(r, p) for r in rings[1:]]))
    return shapes, skipped


def rasterise(shapes: list[Shape], shape: tuple[int, int], index: Mapping[str, int], fill: int) -> np.ndarray:
    """A ``uint8`` class-index mask of ``shape`` (H, W): ``fill`` everywhere, then each polygon's class index.

    Args:
        shapes: Polygons from :func:`read_shapes`.
        shape: ``(height, width)`` of the image.
        index: Class index per class name.
        fill: Value of pixels outside every polygon (background index, or ignore_index).
    """
    from PIL import Image, ImageDraw

    h, w = shape
    mask = np.full((h, w), fill, dtype=np.uint8)
    for s in shapes:
        pts = np.asarray(s.exterior, dtype=np.float64)
        if len(pts) < 3:
            continue
        x0, y0 = max(int(np.floor(pts[:, 0].min())), 0), max(int(np.floor(pts[:, 1].min())), 0)
        x1, y1 = min(int(np.ceil(pts[:, 0].max())) + 1, w), min(int(np.ceil(pts[:, 1].max())) + 1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
        draw = ImageDraw.Draw(canvas)
        draw.polygon([(x - x0, y - y0) for x, y in s.exterior], fill=1)
        for hole in s.holes:
            if len(hole) >= 3:
                draw.polygon([(x - x0, y - y0) for x, y in hole], fill=0)
        inside = np.asarray(canvas, dtype=bool)
        mask[y0:y1, x0:x1][inside] = index[s.name]
    return mask
