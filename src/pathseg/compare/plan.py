"""The work of a comparison: one pretraining per method, one cell per method x task x fraction.

Every job carries the fully resolved config of the pipeline it runs and a key: the SHA-256 of that config
(without output-only switches such as ``overwrite``/``resume``) and of the key of the pretraining it reads.
A job whose output holds ``compare_key.json`` with the same key is finished; anything else is (re)run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pathseg.compare.config import DEFAULT_METRIC, CompareConfig, MethodEntry, TaskEntry
from pathseg.config import config_to_dict, load_config

KEY_FILE = "compare_key.json"
_NOT_KEYED = ("overwrite", "resume", "resume_from")


def config_key(cfg: Any, extra: str = "") -> str:
    """SHA-256 of a resolved config (output-only switches left out), chained with ``extra``."""
    data = {k: v for k, v in config_to_dict(cfg).items() if k not in _NOT_KEYED}
    text = json.dumps(data, sort_keys=True, default=str) + "|" + extra
    return hashlib.sha256(text.encode()).hexdigest()


def read_key(folder: Path, name: str = KEY_FILE) -> dict[str, Any] | None:
    """The key record ``folder/name`` (default: ``compare_key.json`` of a finished job), or None."""
    path = folder / name
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class PretrainJob:
    """One pretraining: its method, resolved :class:`~pathseg.ssl.config.PretrainConfig` and key."""

    method: str
    config: Any
    key: str

    @property
    def folder(self) -> Path:
        """The pretraining run directory."""
        return Path(self.config.out)

    @property
    def encoder(self) -> Path:
        """The exported encoder file."""
        return self.folder / "encoder.safetensors"


@dataclass
class Cell:
    """One method x task x label fraction, over every seed of the comparison."""

    method: str
    task: TaskEntry
    fraction: float
    config: Any  # FinetuneConfig or ProbeConfig
    key: str
    test_subset: tuple[str, int] | None = None  # (test split, N): config.test_split is its first-N id list

    @property
    def name(self) -> str:
        """Folder name, e.g. ``mocov2__glas__f0.1``."""
        return f"{self.method}__{self.task.name}__f{self.fraction:g}"

    @property
    def folder(self) -> Path:
        """The cell's run directory (a ``finetune`` or ``probe`` run)."""
        return Path(self.config.out)

    def metric(self, metrics: dict[str, Any]) -> str:
        """The summary metric of this cell's task (instance: aji for nuclei, object_dice for glands)."""
        if self.task.metric:
            return self.task.metric
        if self.task.task == "instance":
            return "object_dice" if metrics.get("objects") == "glands" else "aji"
        return DEFAULT_METRIC[self.task.task]


def pretrain_job(cfg: CompareConfig, m: MethodEntry) -> PretrainJob:
    """Resolve the pretraining of ``m`` (data = the comparison's unlabeled set, out = OUT/pretrain/NAME)."""
    from pathseg.ssl.config import PretrainConfig

    out = Path(cfg.out) / "pretrain" / m.name
    pcfg = load_config(PretrainConfig, m.pretrain, overrides=m.overrides,
                       values={"data": cfg.unlabeled, "out": str(out)})
    return PretrainJob(m.name, pcfg, config_key(pcfg))


def make_cell(cfg: CompareConfig, m: MethodEntry, t: TaskEntry, fraction: float,
              jobs: dict[str, PretrainJob]) -> Cell:
    """Resolve one cell's fine-tuning (or probe) config: task file, task overrides, then method overrides."""
    from pathseg.tasks.config import FinetuneConfig, ProbeConfig

    job = jobs.get(m.name)
    encoder = str(job.encoder) if job else m.encoder
    out = Path(cfg.out) / "cells" / f"{m.name}__{t.name}__f{fraction:g}"
    values: dict[str, Any] = {"data": t.data, "out": str(out), "encoder": encoder, "label_fraction": fraction,
                              "seeds": list(cfg.seeds), "overwrite": True}
    overrides = [*t.overrides, *m.finetune_overrides]
    if t.task == "probe":
        ccfg: Any = load_config(ProbeConfig, t.config or None, overrides=overrides, values=values)
    else:
        ccfg = load_config(FinetuneConfig, t.config or None, overrides=overrides, values={**values, "task": t.task})
    subset = None
    if t.test_images:
        subset = (ccfg.test_split, t.test_images)
        ccfg.test_split = subset_name(ccfg.test_split, t.test_images)
    extra = job.key if job else _file_identity(encoder)
    return Cell(m.name, t, fraction, ccfg, config_key(ccfg, extra), subset)


def subset_name(split: str, n: int) -> str:
    """Name of the id list holding the first ``n`` images of ``split`` (``testA_first10``)."""
    return f"{split}_first{n}"


def write_test_subset(data: Path, split: str, n: int) -> str:
    """Write ``data/splits/<split>_first<n>.txt``: the first ``n`` sorted ids of ``split``; returns its name.

    The file is rewritten only when its ids differ (a rerun leaves it, and the cells' keys, unchanged).

    Raises:
        DataError: The split does not exist.
    """
    from pathseg.data.split import SPLITS_DIR, read_id_list, resolve_ids, write_id_list

    folder, ids = resolve_ids(data, split)
    chosen = sorted(ids)[:n]
    name = subset_name(split, n)
    path = data / SPLITS_DIR / f"{name}.txt"
    if not path.is_file() or read_id_list(path) != chosen:
        write_id_list(path, chosen, folder, comment=f"pathseg compare: the first {len(chosen)} images of {split}")
    return name


def _file_identity(encoder: str) -> str:
    """``random``, or the size and modification time of a local encoder file (a replaced file reruns)."""
    path = Path(encoder)
    if encoder == "random" or not path.is_file():
        return encoder
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def build_plan(cfg: CompareConfig) -> tuple[list[PretrainJob], list[Cell]]:
    """Every pretraining and every cell, in the order they run (methods, then tasks, then fractions)."""
    jobs = {m.name: pretrain_job(cfg, m) for m in cfg.methods if m.pretrain}
    cells = [make_cell(cfg, m, t, f, jobs) for m in cfg.methods for t in cfg.tasks for f in cfg.fractions]
    return list(jobs.values()), cells
