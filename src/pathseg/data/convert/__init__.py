"""Converters from public releases to the canonical layout; ``CONVERTERS`` maps names to converter functions.

A converter is ``fn(src, staging_dir, cfg) -> ConvertSummary``; :func:`convert_dataset` runs it inside
:func:`pathseg.io.staging_dir`, checks the result with :func:`pathseg.data.check.check_dataset` and only then
moves it to ``--out``, so a failure never leaves a partial output directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pathseg.data.convert.bcss
import pathseg.data.convert.crag
import pathseg.data.convert.glas
import pathseg.data.convert.kather
import pathseg.data.convert.monuseg
import pathseg.data.convert.wsss  # noqa: F401  (the imports above register the converters)
from pathseg.data.convert.base import CONVERTERS, ConvertConfig, ConvertSummary
from pathseg.data.convert.detect import refuse_other_release
from pathseg.errors import ConfigError, DataError

__all__ = ["CONVERTERS", "ConvertConfig", "ConvertSummary", "convert_command", "convert_dataset"]


def convert_dataset(cfg: ConvertConfig) -> ConvertSummary:
    """Convert ``cfg.src`` with converter ``cfg.name`` into ``cfg.out`` and validate the result.

    Raises:
        ConfigError: Unknown converter name.
        DataError: The source is missing or invalid, or the converted data set fails the check.
    """
    from pathseg.data.check import check_dataset, format_report, raise_if_problems
    from pathseg.io import staging_dir

    converter = CONVERTERS.get(cfg.name)
    if cfg.grouping != "none" and cfg.name != "bcss":
        raise ConfigError(f"--grouping applies to the bcss converter only, not '{cfg.name}'")
    if cfg.mpp and cfg.name != "bcss":
        raise ConfigError(f"--mpp applies to the bcss converter only, not '{cfg.name}'")
    if cfg.mpp < 0:
        raise ConfigError(f"--mpp must be > 0 (or 0 for the release's resolution), got {cfg.mpp}")
    src = Path(cfg.src)
    if not src.is_dir():
        raise DataError("source folder not found", src)
    refuse_other_release(cfg.name, src)
    with staging_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
        summary = converter(src, tmp, cfg)
        report = check_dataset(tmp)
        raise_if_problems(report, shown_root=Path(cfg.out))
        summary.notes.append(format_report(report))
        summary.warnings += report.warnings
    return summary


def convert_command(cfg: ConvertConfig) -> int:
    """CLI: convert, print notes and warnings, return 0."""
    summary = convert_dataset(cfg)
    for line in summary.notes:
        print(line)
    for line in summary.warnings:
        print(f"warning: {line}", file=sys.stderr)
    total = sum(summary.counts.values())
    splits = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    print(f"wrote {cfg.out}: {total} images ({splits})")
    return 0
