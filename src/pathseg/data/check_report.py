"""The report of ``pathseg data check``: problems, warnings, per-split statistics and their formatting."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pathseg.data.layout import DatasetInfo
from pathseg.errors import DataError


@dataclass
class Problem:
    """One problem found by the check: the file concerned and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class SplitStats:
    """Counts and label statistics of one split."""

    images: int = 0
    masks: int = 0
    instance_maps: int = 0
    class_pixels: dict[str, int] = field(default_factory=dict)
    ignored_pixels: int = 0
    instances: list[int] = field(default_factory=list)
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def class_fractions(self) -> dict[str, float]:
        """Fraction of labelled (non-ignored) mask pixels per class."""
        total = sum(self.class_pixels.values())
        return {k: (v / total if total else 0.0) for k, v in self.class_pixels.items()}


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`: the problems (empty when valid) and per-split statistics."""

    root: Path
    info: DatasetInfo | None = None
    problems: list[Problem] = field(default_factory=list)
    splits: dict[str, SplitStats] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def add(self, path: str | os.PathLike[str], message: str) -> None:
        """Record a problem."""
        self.problems.append(Problem(str(path), message))


def _fmt_fractions(stats: SplitStats) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in stats.class_fractions().items())


def format_report(report: CheckReport) -> str:
    """Human-readable summary of the statistics of a report."""
    info = report.info
    lines = []
    if info is not None:
        lines.append(f"data set {info.name}: task {info.task}, {len(info.classes)} classes "
                     f"({', '.join(info.class_names)}), ignore_index {info.ignore_index}, mpp {info.mpp}")
    for split, s in report.splits.items():
        parts = [f"{s.images} images"]
        if s.masks:
            parts.append(f"{s.masks} masks")
        if s.instance_maps:
            parts.append(f"{s.instance_maps} instance maps")
        lines.append(f"  {split}: {', '.join(parts)}")
        if s.masks and sum(s.class_pixels.values()):
            ignored = s.ignored_pixels / max(1, s.ignored_pixels + sum(s.class_pixels.values()))
            lines.append(f"    class pixel fractions: {_fmt_fractions(s)} (ignored {ignored:.3f})")
        if s.instances:
            arr = np.asarray(s.instances)
            lines.append(f"    instances per image: mean {arr.mean():.1f}, min {arr.min()}, max {arr.max()}, "
                         f"total {arr.sum()}")
        for col, counts in s.label_counts.items():
            if info is not None and info.task == "patch_labels":
                lines.append(f"    label {col}: {counts.get('1', 0)} of {sum(counts.values())} positive")
            else:
                lines.append(f"    label {col}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)


def raise_if_problems(report: CheckReport, shown_root: Path | None = None) -> None:
    """Print every problem to stderr and raise one :class:`PathsegError` naming the first problem's file.

    Args:
        report: A check report.
        shown_root: Path printed in place of ``report.root`` (e.g. the final output of a staged conversion).
    """
    if report.ok:
        return

    def shown(path: str) -> str:
        if shown_root is None:
            return path
        return path.replace(str(report.root), str(shown_root), 1)

    first = report.problems[0]
    n = len(report.problems)
    if n == 1:
        raise DataError(first.message, shown(first.path))
    for problem in report.problems:
        print(f"  problem: {shown(problem.path)}: {problem.message}", file=sys.stderr)
    raise DataError(f"{first.message} ({n} problems in total, listed above)", shown(first.path))


def summary(report: CheckReport) -> dict[str, Any]:
    """Statistics of a report as plain values (for JSON or tests)."""
    return {
        split: {
            "images": s.images, "masks": s.masks, "instance_maps": s.instance_maps,
            "class_fractions": s.class_fractions(), "instances": list(s.instances), "labels": s.label_counts,
        }
        for split, s in report.splits.items()
    }
