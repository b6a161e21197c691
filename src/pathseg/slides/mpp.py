"""Resolution (µm/px) of a slide: where it comes from, in a fixed and documented order.

Order (the first that gives a plausible value wins; the source is kept and logged):

1. slide metadata: ``openslide.mpp-x`` / ``tiffslide.mpp-x`` (Aperio ``MPP``, Hamamatsu, MIRAX, ...);
   for generic TIFFs these come from the TIFF resolution tags and are reported as such;
2. TIFF resolution tags of plain TIFFs (``ResolutionUnit`` centimetre or inch);
3. a user value: a per-slide row of ``--mpp-csv FILE`` (``slide,mpp``), then ``--slide-mpp X``;
4. otherwise an error naming the slide and the flags. pathseg never guesses a resolution.

Values outside ``[0.01, 100]`` µm/px (e.g. a 72-dpi default written by an image editor, 352.8 µm/px) are ignored
with a warning: they are not microscope resolutions.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pathseg.errors import DataError, PathsegError

log = logging.getLogger("pathseg.slides")

PLAUSIBLE_MPP = (0.01, 100.0)


@dataclass(frozen=True)
class Mpp:
    """A resolution and where it came from.

    Args:
        value: Micrometres per pixel at level 0, or ``None`` when unknown.
        source: ``"metadata (openslide.mpp-x)"``, ``"tiff resolution tags"``, ``"user (--slide-mpp)"``,
            ``"user (--mpp-csv FILE)"``, or ``"none"``.
    """

    value: float | None
    source: str


def plausible(value: float | str | None, what: str, path: str | os.PathLike[str]) -> float | None:
    """Return ``value`` if it is a finite resolution within :data:`PLAUSIBLE_MPP`, else ``None`` (logged)."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        log.warning("%s: ignoring unreadable µm/px %r from %s", path, value, what)
        return None
    if not math.isfinite(v) or not PLAUSIBLE_MPP[0] <= v <= PLAUSIBLE_MPP[1]:
        log.warning("%s: ignoring implausible µm/px %s from %s", path, v, what)
        return None
    return v


def mpp_from_properties(props: Mapping[str, object], path: str | os.PathLike[str]) -> Mpp | None:
    """µm/px from OpenSlide/tiffslide properties (``openslide.mpp-x`` or ``tiffslide.mpp-x``), if present."""
    generic = str(props.get("openslide.vendor", props.get("tiffslide.vendor", ""))) in {"generic-tiff", "None", ""}
    for key in ("openslide.mpp-x", "tiffslide.mpp-x", "aperio.MPP"):
        raw = props.get(key)
        if raw is None or raw == "":
            continue
        value = plausible(raw, key, path)  # type: ignore[arg-type]
        if value is not None:
            source = "tiff resolution tags" if generic and key != "aperio.MPP" else f"metadata ({key})"
            return Mpp(value, source)
    return None


def mpp_from_tiff_tags(path: str | os.PathLike[str]) -> float | None:
    """µm/px from the first page's ``XResolution``/``ResolutionUnit`` tags of a TIFF, if meaningful."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages.first.tags
            res = tags.get("XResolution")
            unit = tags.get("ResolutionUnit")
            if res is None or unit is None:
                return None
            num, den = res.value if isinstance(res.value, tuple) else (res.value, 1)
            if not num or not den:
                return None
            per_unit = num / den
            unit_um = {2: 25400.0, 3: 10000.0}.get(int(unit.value))  # inch, centimetre
    except Exception:  # not a TIFF or unreadable tags: no resolution from tags
        return None
    if unit_um is None:
        return None
    return plausible(unit_um / per_unit, "TIFF resolution tags", path)


def read_mpp_csv(path: str | os.PathLike[str]) -> dict[str, float]:
    """Read a ``slide,mpp`` CSV (header row required) into ``{slide: mpp}``.

    The ``slide`` column may hold a path, a file name or a file stem; :func:`lookup_mpp_csv` matches any.

    Raises:
        DataError: Missing file or columns, or a value that is not a plausible µm/px.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("µm/px CSV not found", p)
    table: dict[str, float] = {}
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"slide", "mpp"} <= set(reader.fieldnames):
            raise DataError(f"expected a header 'slide,mpp', got {reader.fieldnames}", p)
        for line, row in enumerate(reader, start=2):
            value = plausible(row["mpp"], f"{p} line {line}", row["slide"])
            if value is None:
                raise DataError(f"line {line}: {row['mpp']!r} is not a µm/px value in {PLAUSIBLE_MPP}", p)
            table[row["slide"].strip()] = value
    return table


def lookup_mpp_csv(table: Mapping[str, float], slide: str | os.PathLike[str]) -> float | None:
    """The CSV value for ``slide``, matched by resolved path, then file name, then stem."""
    p = Path(slide)
    for key in (str(p), str(p.resolve()), p.name, p.stem):
        if key in table:
            return table[key]
    resolved = {str(Path(k).resolve()): v for k, v in table.items() if os.sep in k}
    return resolved.get(str(p.resolve()))


def choose_mpp(
    path: str | os.PathLike[str],
    metadata: Mpp | None,
    tags: float | None,
    user: float | None,
    user_source: str = "user (--slide-mpp)",
) -> Mpp:
    """Apply the resolution order (metadata, TIFF tags, user value); ``Mpp(None, "none")`` if nothing is known.

    A user value that disagrees with the metadata by more than 1 % is reported and not used.
    """
    found = metadata or (Mpp(tags, "tiff resolution tags") if tags is not None else None)
    if found is not None:
        if user is not None and abs(user - found.value) > 0.01 * found.value:  # type: ignore[operator]
            log.warning("%s: %s gives %.4g µm/px; the user value %.4g is not used", path, found.source,
                        found.value, user)
        log.info("%s: %.4g µm/px from %s", path, found.value, found.source)
        return found
    if user is not None:
        value = plausible(user, user_source, path)
        if value is None:
            raise PathsegError(f"{user} is not a plausible µm/px (expected {PLAUSIBLE_MPP})", path)
        log.info("%s: %.4g µm/px from %s", path, value, user_source)
        return Mpp(value, user_source)
    return Mpp(None, "none")


def missing_mpp_error(path: str | os.PathLike[str], others: int = 0) -> PathsegError:
    """The error for a slide whose µm/px is unknown, naming the flags that supply it."""
    more = f" ({others} more slide{'s' if others > 1 else ''} lack it too)" if others else ""
    return PathsegError(
        "no µm/px in its metadata or TIFF resolution tags; pass its scan resolution with --slide-mpp X "
        f"(or --mpp-csv FILE with slide,mpp rows); --mpp is the tiles' target resolution{more}",
        path,
    )
