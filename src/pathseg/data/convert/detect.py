"""Recognise which release a source folder holds, so that a converter refuses another data set's folder.

Only strong, cheap evidence counts (file names and small tables, never pixel statistics): a folder recognised as
another release than the converter asked for is refused, e.g. ``data convert monuseg`` on a GlaS folder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

from pathseg.errors import DataError

_GLAS_ID = re.compile(r"^(testA|testB)_\d+(_anno)?$")
_MONUSEG_ID = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}-\d{2}[A-Z]-\d{2}-DX\d$")
_KATHER_DIR = re.compile(r"^0[1-8]_[A-Z]+$")
_IMAGE = {".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg"}


def _walk(src: Path, depth: int = 3) -> Iterator[Path]:
    """Entries of ``src`` up to ``depth`` levels down (hidden entries skipped), breadth first."""
    level = [src]
    for _ in range(depth):
        nxt = []
        for d in level:
            try:
                children = sorted(d.iterdir())
            except OSError:
                continue
            for c in children:
                if c.name.startswith("."):
                    continue
                yield c
                if c.is_dir():
                    nxt.append(c)
        level = nxt


def _glas(entries: list[Path]) -> str | None:
    for p in entries:
        if p.suffix.lower() in _IMAGE and _GLAS_ID.match(p.stem):
            return f"file names like {p.name} (GlaS testA/testB)"
        if p.name.lower() == "grade.csv":
            head = p.read_text(encoding="utf-8-sig", errors="replace")[:500].lower()
            if "grade (glas)" in head:
                return f"the GlaS grade table {p.name}"
    return None


def _monuseg(entries: list[Path]) -> str | None:
    for p in entries:
        if p.is_dir() and p.name == "Tissue Images":
            return "a 'Tissue Images' folder (MoNuSeg)"
        if p.suffix.lower() in _IMAGE | {".xml"} and _MONUSEG_ID.match(p.stem):
            return f"TCGA file names like {p.name} (MoNuSeg)"
    return None


def _kather(entries: list[Path]) -> str | None:
    dirs = [p for p in entries if p.is_dir() and _KATHER_DIR.match(p.name)]
    return f"class folders like {dirs[0].name} (Kather 2016)" if len(dirs) >= 2 else None


FINGERPRINTS: dict[str, Callable[[list[Path]], str | None]] = {
    "glas": _glas,
    "monuseg": _monuseg,
    "kather2016": _kather,
}


def recognise(src: Path) -> tuple[str, str] | None:
    """``(release, evidence)`` for a folder recognised as one known release, else ``None``."""
    if (src / "dataset.yaml").is_file():
        return "pathseg", "a dataset.yaml (it is already in pathseg's canonical layout)"
    entries = list(_walk(src))
    found = [(name, ev) for name, fn in FINGERPRINTS.items() if (ev := fn(entries)) is not None]
    return found[0] if len(found) == 1 else None


def refuse_other_release(name: str, src: Path) -> None:
    """Refuse to run converter ``name`` on a folder recognised as another release.

    Raises:
        DataError: Naming the folder, the evidence and the converter to use.
    """
    found = recognise(src)
    if found is None or found[0] == name:
        return
    release, evidence = found
    if release == "pathseg":
        raise DataError(f"has {evidence}; no conversion is needed (use it directly, or 'pathseg data check')", src)
    raise DataError(f"this looks like {release}, not {name}: {evidence}; use 'pathseg data convert {release}'", src)
