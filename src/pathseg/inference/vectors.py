"""Class polygons from a class map fed cell by cell (tile blocks), and object extractors ("detections") for QuPath.

Polygons: per class, 4-connected components of the map (the connectivity of :func:`scipy.ndimage.label`), traced
with marching squares at level 0.5 (:func:`skimage.measure.find_contours`, whose default keeps foreground
face-connected too), so each boundary runs half-way between inside and outside pixel centres and rasterising a
polygon at pixel centres gives its pixels back. Holes are kept. Each cell is traced on its own; a component that
reaches the bottom of a band stays *open*; its pieces in the next cell to the right and in the next band are found
through the pixels shared across the boundary, and the pieces' polygons, which share their edges on the boundary
exactly, are unioned when the component is finished. Memory holds the open components' outlines, not pixels.
Coordinates are model pixels (pixel centres at integers) until
:func:`to_level0` maps them to level-0 slide pixels (QuPath's frame).

Object extractors (``--objects``) turn the same cells into detections with a class and a score; ``components``
makes one detection per connected component of each foreground class, scored by its mean class probability. An
instance model plugs in by registering its own extractor in :data:`OBJECT_EXTRACTORS`
(``feed_cell``/``end_band``/``finish``).
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


def _owners(padded: np.ndarray, lab: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Label of the foreground pixel beside each contour vertex (vertices lie half-way between two pixel centres)."""
    r, c = points[:, 0], points[:, 1]
    on_row = r == np.floor(r)
    ar = np.where(on_row, r, np.floor(r)).astype(np.int64)
    ac = np.where(on_row, np.floor(c), c).astype(np.int64)
    br = np.where(on_row, r, np.ceil(r)).astype(np.int64)
    bc = np.where(on_row, np.ceil(c), c).astype(np.int64)
    use_a = padded[ar, ac] >= 0.5
    pr, pc = np.where(use_a, ar, br), np.where(use_a, ac, bc)
    return np.where(padded[pr, pc] >= 0.5, lab[pr - 1, pc - 1], 0)


def band_polygons(mask: np.ndarray, lab: np.ndarray, y0: int = 0, x0: int = 0) -> dict[int, Any]:
    """Polygon (with holes) of every label of ``lab`` (4-connected components of ``mask``), from one marching-squares
    pass; coordinates are pixel centres, offset by ``(x0, y0)``. Rings are built and checked in bulk (shapely's
    vectorised functions), so thousands of small components cost little Python."""
    import shapely
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float32), 1)
    contours = [ct for ct in find_contours(padded, 0.5) if len(ct) >= 4]
    if not contours:
        return {}
    labels = _owners(padded, lab, np.stack([ct[0] for ct in contours]))
    keep = np.flatnonzero(labels > 0)
    lengths = np.asarray([len(contours[i]) for i in keep])
    xy = np.concatenate([contours[i] for i in keep])[:, ::-1] + np.asarray([x0 - 1.0, y0 - 1.0])
    rings = shapely.linearrings(xy, indices=np.repeat(np.arange(len(keep)), lengths))
    areas = shapely.area(shapely.polygons(rings))
    labels = labels[keep]
    order = np.lexsort((-areas, labels))  # per label, the largest ring (the outline) first, then the holes
    uniq, group = np.unique(labels[order], return_inverse=True)
    polys = shapely.polygons(rings[order], indices=group)
    bad = ~shapely.is_valid(polys)
    if bad.any():
        polys[bad] = shapely.make_valid(polys[bad])
    return dict(zip(uniq.tolist(), polys.tolist()))


def _find(parent: dict[Any, Any], a: Any) -> Any:
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


def _union(parent: dict[Any, Any], a: Any, b: Any) -> None:
    ra, rb = _find(parent, a), _find(parent, b)
    if ra != rb:
        parent[rb] = ra


@dataclass
class _BandState:
    """One class's components of the band being fed: union-find over open groups ``("o", gid)`` and this band's
    pieces ``("n", node)``."""

    parent: dict[Any, Any]
    pieces: dict[int, tuple[Any, int, float]] = field(default_factory=dict)  # node -> (polygon, pixels, prob sum)
    bottom: dict[int, np.ndarray] = field(default_factory=dict)  # cell x0 -> nodes on its bottom row (0: none)
    right: np.ndarray | None = None  # nodes on the right column of the last cell fed
    right_x1: int = -1
    nodes: int = 0


class ComponentTracer:
    """Connected components of chosen classes of a class map that arrives cell by cell: the cells of a band left to
    right (:meth:`feed_cell`), then :meth:`end_band`; bands top to bottom.

    Pieces of one component in neighbouring cells are joined through the pixels they share across the cell's left
    edge or the band's top edge (4-connectivity). A component is finished at the end of the first band whose bottom
    row it does not reach. Memory: the open components' outlines and one row of node ids, never a band of pixels.

    Args:
        classes: Class indices to trace.
    """

    def __init__(self, classes: list[int]) -> None:
        self.classes = list(classes)
        self.open: dict[int, dict[int, _Group]] = {c: {} for c in self.classes}
        self.last_row: dict[int, dict[int, np.ndarray]] = {c: {} for c in self.classes}  # x0 -> open gids
        self.state: dict[int, _BandState] = {}
        self._next = 1

    def _state(self, c: int) -> _BandState:
        if c not in self.state:
            self.state[c] = _BandState({("o", g): ("o", g) for g in self.open[c]})
        return self.state[c]

    def feed_cell(self, y0: int, x0: int, classes: np.ndarray, probs: np.ndarray) -> None:
        """Add the cell at ``(x0, y0)``: class map ``[h, w]`` and uint8 probabilities ``[K, h, w]``."""
        from scipy import ndimage as ndi

        present = np.bincount(classes.ravel(), minlength=max(self.classes, default=0) + 1)
        for c in self.classes:
            st = self._state(c)
            left, left_x1 = st.right, st.right_x1
            st.right, st.right_x1 = None, x0 + classes.shape[1]
            if not present[c]:  # class absent (glass cells): no labelling pass
                st.bottom.pop(x0, None)
                continue
            lab, n = ndi.label(classes == c)
            base = st.nodes
            st.nodes += n
            st.parent.update({("n", base + i): ("n", base + i) for i in range(1, n + 1)})
            prev = self.last_row[c].get(x0)
            if prev is not None:
                both = (prev > 0) & (lab[0] > 0)
                for g, i in set(zip(prev[both].tolist(), lab[0][both].tolist())):
                    _union(st.parent, ("o", g), ("n", base + i))
            if left is not None and left_x1 == x0:
                both = (left > 0) & (lab[:, 0] > 0)
                for a, i in set(zip(left[both].tolist(), lab[:, 0][both].tolist())):
                    _union(st.parent, ("n", a), ("n", base + i))
            counts = np.bincount(lab.ravel(), minlength=n + 1)
            sums = np.bincount(lab.ravel(), weights=probs[c].ravel(), minlength=n + 1) / 255.0
            polys = band_polygons(lab > 0, lab, y0, x0)
            for i in range(1, n + 1):
                st.pieces[base + i] = (polys[i], int(counts[i]), float(sums[i]))
            st.bottom[x0] = np.where(lab[-1] > 0, lab[-1] + base, 0)
            st.right = np.where(lab[:, -1] > 0, lab[:, -1] + base, 0)

    def end_band(self, last: bool = False) -> list[Component]:
        """Close the band fed since the last call; returns the components finished (all of them if ``last``)."""
        done: list[Component] = []
        for c in self.classes:
            st = self.state.pop(c, None) or _BandState({("o", g): ("o", g) for g in self.open[c]})
            parent = st.parent
            merged: dict[Any, _Group] = {}
            for key in parent:
                grp = merged.setdefault(_find(parent, key), _Group(c))
                if key[0] == "o":
                    old = self.open[c][key[1]]
                    grp.polygons += old.polygons
                    grp.count += old.count
                    grp.prob_sum += old.prob_sum
            for node, (poly, count, psum) in st.pieces.items():
                grp = merged[_find(parent, ("n", node))]
                grp.polygons.append(poly)
                grp.count += count
                grp.prob_sum += psum
            touching: set[Any] = set()
            if not last:
                for seg in st.bottom.values():
                    touching.update(_find(parent, ("n", int(v))) for v in np.unique(seg[seg > 0]))
            self.open[c], gids = {}, {}
            for root, grp in merged.items():
                if root in touching:
                    gids[root], self._next = self._next, self._next + 1
                    self.open[c][gids[root]] = grp
                else:
                    done.append(_finish(grp))
            lut = np.zeros(st.nodes + 1, np.int64)
            for node in st.pieces:
                lut[node] = gids.get(_find(parent, ("n", node)), 0)
            self.last_row[c] = {x0: lut[seg] for x0, seg in st.bottom.items()}
        return done

    def feed(self, y0: int, classes: np.ndarray, probs: np.ndarray, last: bool = False) -> list[Component]:
        """A whole band as one cell: :meth:`feed_cell` at ``x0 = 0``, then :meth:`end_band`."""
        self.feed_cell(y0, 0, classes, probs)
        return self.end_band(last)

    def finish(self) -> list[Component]:
        """Close every open component (call after the last band if it was not ended with ``last=True``)."""
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


def to_level0(geometry: Any, ds: float, tolerance: float = 0.0) -> Any:
    """Simplify (tolerance in model pixels, each ring on its own: see :func:`to_level0_many`) and map model pixel
    centres to level-0 coordinates: ``X = (x + 0.5) * ds``."""
    return to_level0_many([geometry], ds, tolerance)[0]


def to_level0_many(geometries: list[Any], ds: float, tolerance: float = 0.0, decimals: int | None = None
                   ) -> np.ndarray:
    """:func:`to_level0` of many geometries at once with shapely's vectorised functions (each ring simplified on
    its own, kept when simplifying would collapse it; repaired where rings then cross), coordinates rounded to
    ``decimals`` if given."""
    import shapely

    geoms = np.asarray([polygonal(g) for g in geometries], dtype=object)
    if tolerance > 0 and len(geoms):
        parts, owner = shapely.get_parts(geoms, return_index=True)
        full = ~shapely.is_empty(parts)
        parts, owner = parts[full], owner[full]
        rings, part_of = shapely.get_rings(parts, return_index=True)
        simple = shapely.simplify(rings, tolerance, preserve_topology=False)
        ok = (shapely.get_type_id(simple) == 2) & (shapely.get_num_coordinates(simple) >= 4)  # 2: LinearRing
        ok[ok] = shapely.area(shapely.polygons(simple[ok])) > 0
        rings = np.where(ok, simple, rings)
        polys = shapely.polygons(rings, indices=part_of)
        out = np.empty(len(geoms), dtype=object)
        out[:] = [shapely.Polygon()] * len(geoms)
        multi = np.bincount(owner, minlength=len(geoms)) > 1
        single = ~multi[owner]
        out[owner[single]] = polys[single]
        if multi.any():
            sel = multi[owner]
            out[np.unique(owner[sel])] = shapely.multipolygons(polys[sel], indices=np.unique(
                owner[sel], return_inverse=True)[1])
        bad = ~shapely.is_valid(out)
        if bad.any():
            out[bad] = [polygonal(shapely.make_valid(g)) for g in out[bad]]
        geoms = out

    def move(c: np.ndarray) -> np.ndarray:
        c = c * ds + 0.5 * ds
        return c if decimals is None else np.round(c, decimals)

    return shapely.transform(geoms, move) if len(geoms) else geoms


class ObjectExtractor(Protocol):
    """Turns cells into detections (see the module docstring and :class:`ComponentTracer`)."""

    def feed_cell(self, y0: int, x0: int, classes: np.ndarray, probs: np.ndarray) -> None:
        """The cell at ``(x0, y0)``: class map ``[h, w]`` and uint8 probabilities/channels ``[K, h, w]``."""
        ...

    def end_band(self, last: bool = False) -> list[Component]:
        """After the last cell of a band: the detections finished."""
        ...

    def finish(self) -> list[Component]:
        """Remaining detections after the last band."""
        ...


OBJECT_EXTRACTORS: Registry[Callable[[int], ObjectExtractor]] = Registry("object extractor")


@OBJECT_EXTRACTORS.register("components")
def components_extractor(num_classes: int) -> ObjectExtractor:
    """One detection per 4-connected component of every class but 0, scored by its mean probability."""
    return ComponentTracer(list(range(1, num_classes)))
