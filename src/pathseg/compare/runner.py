"""Run a comparison: every pretraining once, then every cell, skipping finished work (see :mod:`.plan`)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathseg.compare.config import CompareConfig
from pathseg.compare.plan import KEY_FILE, Cell, PretrainJob, build_plan, read_key, write_test_subset
from pathseg.errors import PathsegError

log = logging.getLogger(__name__)
STARTED_FILE = "compare_started.json"  # key of a pretraining under way: a killed one with the same key resumes


@dataclass
class CellResult:
    """A finished cell: its plan entry, ``metrics.json`` and cost."""

    cell: Cell
    metrics: dict[str, Any]
    seconds: float


@dataclass
class CompareOutcome:
    """What :func:`run_compare` did: results, pretraining costs and how many jobs ran or were skipped."""

    results: list[CellResult] = field(default_factory=list)
    pretrain_seconds: dict[str, float] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _finished(folder: Path, key: str, marker: str) -> dict[str, Any] | None:
    """The stored key record when ``folder/marker`` exists and the key matches, else None."""
    record = read_key(folder)
    if record is None or record.get("key") != key or not (folder / marker).is_file():
        return None
    return record


def _write_key(folder: Path, key: str, seconds: float, name: str = KEY_FILE) -> None:
    from pathseg.runs import write_json

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / name, {"key": key, "seconds": round(seconds, 3)})


def run_pretraining(job: PretrainJob, outcome: CompareOutcome) -> None:
    """Pretrain ``job`` unless its encoder exists with the same key; a killed run resumes from its checkpoint."""
    from pathseg.ssl.engine import pretrain

    record = _finished(job.folder, job.key, "encoder.safetensors")
    if record is not None:
        log.info("pretrain %s: finished already (same config), skipping", job.method)
        outcome.skipped.append(f"pretrain/{job.method}")
        outcome.pretrain_seconds[job.method] = float(record["seconds"])
        return
    started = read_key(job.folder, STARTED_FILE)
    if job.folder.exists() and (started is None or started.get("key") != job.key):
        log.info("pretrain %s: config changed, starting afresh", job.method)
        shutil.rmtree(job.folder)
    _write_key(job.folder, job.key, 0.0, STARTED_FILE)
    job.config.resume = (job.folder / "checkpoints" / "last.ckpt").is_file()  # killed earlier, same config
    log.info("pretrain %s: %s, %s steps", job.method, job.config.method, job.config.trainer.max_steps)
    start = time.time()
    pretrain(job.config)
    seconds = time.time() - start
    _write_key(job.folder, job.key, seconds)
    outcome.ran.append(f"pretrain/{job.method}")
    outcome.pretrain_seconds[job.method] = seconds


def run_cell(cell: Cell, outcome: CompareOutcome) -> CellResult:
    """Fine-tune (or probe) one cell over its seeds unless it finished with the same key."""
    record = _finished(cell.folder, cell.key, "metrics.json")
    if record is not None:
        log.info("cell %s: finished already (same config), skipping", cell.name)
        outcome.skipped.append(cell.name)
        return CellResult(cell, _read_metrics(cell.folder), float(record["seconds"]))
    log.info("cell %s: running seeds %s", cell.name, list(cell.config.seeds))
    start = time.time()
    if cell.test_subset is not None:
        write_test_subset(Path(cell.config.data), *cell.test_subset)
    if cell.task.task == "probe":
        from pathseg.tasks.probe import probe_command

        probe_command(cell.config)
    else:
        from pathseg.tasks.finetune import finetune

        finetune(cell.config)
    seconds = time.time() - start
    _write_key(cell.folder, cell.key, seconds)  # last: marks the cell as finished
    outcome.ran.append(cell.name)
    return CellResult(cell, _read_metrics(cell.folder), seconds)


def _read_metrics(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError) as exc:
        raise PathsegError(f"cannot read the cell's metrics ({exc})", folder / "metrics.json") from None
    return data if isinstance(data, dict) else {}


def run_compare(cfg: CompareConfig) -> CompareOutcome:
    """Run (or resume) the whole comparison and write the report; returns what ran and what was skipped."""
    from pathseg.compare.report import write_report
    from pathseg.config import save_config

    jobs, cells = build_plan(cfg)  # every config resolves before any work starts
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "compare.yaml")
    outcome = CompareOutcome()
    for job in jobs:
        run_pretraining(job, outcome)
    for cell in cells:
        outcome.results.append(run_cell(cell, outcome))
    write_report(cfg, outcome.results, outcome.pretrain_seconds, out)
    log.info("compare: ran %d, skipped %d (finished already)", len(outcome.ran), len(outcome.skipped))
    return outcome


def compare_command(cfg: CompareConfig) -> int:
    """``pathseg compare``: :func:`run_compare`, then one summary line."""
    if cfg.dry_run:
        jobs, cells = build_plan(cfg)
        for job in jobs:
            print(f"pretrain {job.method}: {job.folder} key {job.key[:12]}")
        for cell in cells:
            print(f"cell {cell.name}: key {cell.key[:12]}")
        return 0
    outcome = run_compare(cfg)
    print(f"compare: {len(outcome.results)} cells ({len(outcome.ran)} jobs run, {len(outcome.skipped)} skipped); "
          f"wrote {Path(cfg.out) / 'results.md'}")
    return 0
