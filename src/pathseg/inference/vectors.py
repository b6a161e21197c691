"""Class polygons from a class map fed band by band, and object extractors ("detections") for QuPath.

Polygons: per class, 4-connected components of the map (the connectivity of :func:`scipy.ndimage.label`), traced
with marching squares at level 0.5 (:func:`skimage.measure.find_contours`, whose default keeps foreground
face-connected too), so each boundary runs half-way between inside and outside pixel centres and rasterising a
polygon at pixel centres gives its pixels back. Holes are kept. A component that reaches the bottom of a band stays
*open*; its pieces in the next band are found through the pixels shared across the boundary, and the pieces' polygons,
which share their edges on the boundary exactly, are unioned when the component is finished. Memory holds the open
components' outlines, not pixels. Coordinates are model pixels (pixel centres at integers) until
:func:`to_level0` maps them to level-0 slide pixels (QuPath's frame).

Object extractors (``--objects``) turn the same bands into detections with a class and a score; ``components``
makes one detection per connected component of each foreground class, scored by its mean class probability. An
instance model plugs in by registering its own extractor in :data:`OBJECT_EXTRACTORS` (``feed``/``finish``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pathseg.registry import Registry


@dataclass
class Component:
    """A finished connected component: class, outline (model pixels), pixel count and summed probability."""

    class_index: int
    geometry: Any
    count: int
    prob_sum: float

    @property
    def score(self) -> float:
        """Mean class probability (0-1) over its pixels."""
        return self.prob_sum / max(self.count, 1)


@dataclass
class _Group:
    class_index: int
    polygons: list[Any] = field(default_factory=list)
    count: int = 0
    prob_sum: float = 0.0


def _owner(padded: np.ndarray, lab: np.ndarray, point: np.ndarray) -> int:
    """Label of the foreground pixel beside a contour vertex (vertices lie half-way between two pixel centres)."""
    r, c = float(point[0]), float(point[1])
    if r == int(r):
        pairs = [(int(r), int(np.floor(c))), (int(r), int(np.ceil(c)))]
    else:
        pairs = [(int(np.floor(r)), int(c)), (int(np.ceil(r)), int(c))]
    for pr, pc in pairs:
        if padded[pr, pc] >= 0.5:
            return int(lab[pr - 1, pc - 1])
    return 0


def band_polygons(mask: np.ndarray, lab: np.ndarray, y0: int = 0) -> dict[int, Any]:
    """Polygon (with holes) of every label of ``lab`` (4-connected components of ``mask``), from one marching-squares
    pass over the band; coordinates are pixel centres, rows offset by ``y0``."""
    from shapely import make_valid
    from shapely.geometry import Polygon
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float32), 1)
    rings: dict[int, list[np.ndarray]] = {}
    for contour in find_contours(padded, 0.5):
        if len(contour) < 4:
            continue
        label = _owner(padded, lab, contour[0])
        xy = contour[:, ::-1] - 1.0
        xy[:, 1] += y0
        rings.setdefault(label, []).append(xy)
    out: dict[int, Any] = {}
    for label, parts in rings.items():
        polys = sorted((Polygon(p) for p in parts), key=lambda q: q.area, reverse=True)
        poly = Polygon(polys[0].exterior.coords, [q.exterior.coords for q in polys[1:]]) if len(polys) > 1 \
            else polys[0]
        out[label] = poly if poly.is_valid else make_valid(poly)
    return out


def component_polygon(crop: np.ndarray) -> Any:
    """Polygon (with holes) of one 4-connected component given as a boolean crop, in crop pixel coordinates."""
    from scipy import ndimage as ndi

    lab, _ = ndi.label(crop)
    return band_polygons(crop, lab).get(1)


def _find(parent: dict[Any, Any], a: Any) -> Any:
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


class ComponentTracer:
    """Connected components of chosen classes of a class map that arrives band by band (top to bottom).

    Args:
        classes: Class indices to trace.
    """

    def __init__(self, classes: list[int]) -> None:
        self.classes = list(classes)
        self.open: dict[int, dict[int, _Group]] = {c: {} for c in self.classes}
        self.last_row: dict[int, np.ndarray] = {}
        self._next = 1

    def feed(self, y0: int, classes: np.ndarray, probs: np.ndarray, last: bool = False) -> list[Component]:
        """Add band rows ``[y0, y0 + h)`` (``probs`` uint8 ``[K, h, W]``); returns the components finished."""
        from scipy import ndimage as ndi

        done: list[Component] = []
        for c in self.classes:
            lab, n = ndi.label(classes == c)
            parent: dict[Any, Any] = {("o", g): ("o", g) for g in self.open[c]}
            parent.update({("n", i): ("n", i) for i in range(1, n + 1)})
            prev = self.last_row.get(c)
            if prev is not None and n:
                both = (prev > 0) & (lab[0] > 0)
                for g, i in set(zip(prev[both].tolist(), lab[0][both].tolist())):
                    ra, rb = _find(parent, ("o", g)), _find(parent, ("n", i))
                    if ra != rb:
                        parent[rb] = ra
            counts = np.bincount(lab.ravel(), minlength=n + 1)
            sums = np.bincount(lab.ravel(), weights=probs[c].ravel().astype(np.float64), minlength=n + 1) / 255.0
            merged: dict[Any, _Group] = {}
            for key in parent:
                root = _find(parent, key)
                grp = merged.setdefault(root, _Group(c))
                if key[0] == "o":
                    old = self.open[c][key[1]]
                    grp.polygons += old.polygons
                    grp.count += old.count
                    grp.prob_sum += old.prob_sum
            touching: set[Any] = set()
            polys = band_polygons(lab > 0, lab, y0) if n else {}
            bottom = set(np.unique(lab[-1]).tolist()) if not last else set()
            for i in range(1, n + 1):
                grp = merged[_find(parent, ("n", i))]
                grp.polygons.append(polys[i])
                grp.count += int(counts[i])
                grp.prob_sum += float(sums[i])
                if i in bottom:
                    touching.add(_find(parent, ("n", i)))
            self.open[c], gids = {}, {}
            for root, grp in merged.items():
                if root in touching:
                    gids[root], self._next = self._next, self._next + 1
                    self.open[c][gids[root]] = grp
                else:
                    done.append(_finish(grp))
            lut = np.zeros(n + 1, np.int64)
            for i in range(1, n + 1):
                lut[i] = gids.get(_find(parent, ("n", i)), 0)
            self.last_row[c] = lut[lab[-1]]
        return done

    def finish(self) -> list[Component]:
        """Close every open component (call after the last band if it was not fed with ``last=True``)."""
        out = [_finish(g) for c in self.classes for g in self.open[c].values()]
        self.open = {c: {} for c in self.classes}
        return out


def _finish(grp: _Group) -> Component:
    """Merge the pieces (they tile the component and share edges exactly: a coverage union)."""
    from shapely import coverage_union_all, make_valid, union_all

    if len(grp.polygons) == 1:
        return Component(grp.class_index, grp.polygons[0], grp.count, grp.prob_sum)
    try:
        geom = coverage_union_all(grp.polygons)
        geom = geom if geom.is_valid else make_valid(geom)
    except Exception:  # GEOS refused the coverage (never seen): the general union
        geom = union_all(grp.polygons)
    return Component(grp.class_index, geom, grp.count, grp.prob_sum)


def polygonal(geometry: Any) -> Any:
    """The polygons of a geometry (``make_valid`` may add stray lines or points), as a Polygon or MultiPolygon."""
    from shapely import get_parts
    from shapely.geometry import MultiPolygon, Polygon

    if isinstance(geometry, Polygon | MultiPolygon):
        return geometry
    polys = [p for g in get_parts(geometry) for p in get_parts(g) if isinstance(p, Polygon) and not p.is_empty]
    return Polygon() if not polys else polys[0] if len(polys) == 1 else MultiPolygon(polys)


def simplify_rings(geometry: Any, tolerance: float) -> Any:
    """Douglas-Peucker on every ring on its own (fast even with thousands of holes, unlike GEOS's
    topology-preserving simplifier, whose cost grows with the number of rings); repaired if rings then cross."""
    from shapely import get_parts, make_valid
    from shapely.geometry import LinearRing, Polygon

    def ring(coords: Any) -> Any:
        original = LinearRing(coords)
        r = original.simplify(tolerance, preserve_topology=False)
        return r if len(r.coords) >= 4 and Polygon(r).area > 0 else original  # tiny rings are kept as they are

    polys = []
    for part in get_parts(polygonal(geometry)):
        if not isinstance(part, Polygon) or part.is_empty:
            continue
        shell = ring(part.exterior.coords)
        holes = [ring(i.coords) for i in part.interiors]
        polys.append(Polygon(shell, holes))
    if not polys:
        return Polygon()
    from shapely.geometry import MultiPolygon

    out = polys[0] if len(polys) == 1 else MultiPolygon(polys)
    return out if out.is_valid else polygonal(make_valid(out))


def to_level0(geometry: Any, ds: float, tolerance: float = 0.0) -> Any:
    """Simplify (tolerance in model pixels, :func:`simplify_rings`) and map model pixel centres to level-0 coordinates:
    ``X = (x + 0.5) * ds``."""
    from shapely.affinity import affine_transform

    g = simplify_rings(geometry, tolerance) if tolerance > 0 else polygonal(geometry)
    return affine_transform(g, [ds, 0.0, 0.0, ds, 0.5 * ds, 0.5 * ds])


class ObjectExtractor(Protocol):
    """Turns bands into detections (see the module docstring)."""

    def feed(self, y0: int, classes: np.ndarray, probs: np.ndarray, last: bool = False) -> list[Component]:
        """Band rows from ``y0``: class map ``[h, W]`` and uint8 probabilities/channels ``[K, h, W]``."""
        ...

    def finish(self) -> list[Component]:
        """Remaining detections after the last band."""
        ...


OBJECT_EXTRACTORS: Registry[Callable[[int], ObjectExtractor]] = Registry("object extractor")


@OBJECT_EXTRACTORS.register("components")
def components_extractor(num_classes: int) -> ObjectExtractor:
    """One detection per 4-connected component of every class but 0, scored by its mean probability."""
    return ComponentTracer(list(range(1, num_classes)))
