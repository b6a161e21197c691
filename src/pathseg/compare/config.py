"""Typed configuration of ``pathseg compare`` (light: no torch import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pathseg.config.checks import check_seeds
from pathseg.errors import ConfigError

TaskKind = Literal["segmentation", "instance", "classification", "probe"]

#: Summary metric of each task kind (``instance`` resolves from the fine-tuning's ``objects``).
DEFAULT_METRIC = {"segmentation": "miou", "classification": "balanced_accuracy", "probe": "balanced_accuracy",
                  "instance": ""}


@dataclass
class MethodEntry:
    """One compared encoder.

    Exactly one of ``pretrain`` (a ``pathseg pretrain`` YAML, run once on the unlabeled data) and ``encoder``
    (``random`` or a local encoder file from ``pathseg export``) is set.

    Args:
        name: Label in the tables (``random`` and ``mocov2`` are the paired baselines).
        pretrain: Pretraining config file (relative paths are read from the working directory).
        overrides: Dotted overrides of the pretraining config (``trainer.max_steps=50``).
        encoder: ``random`` or an encoder file, when there is no pretraining.
        finetune_overrides: Overrides applied to every fine-tuning/probe cell of this method (``backbone=...``).
    """

    name: str = ""
    pretrain: str = ""
    overrides: list[str] = field(default_factory=list)
    encoder: str = ""
    finetune_overrides: list[str] = field(default_factory=list)


@dataclass
class TaskEntry:
    """One downstream task.

    Args:
        name: Label in the tables and plots.
        data: Canonical data set directory of the task.
        task: ``segmentation``, ``instance``, ``classification`` (fine-tuned) or ``probe`` (frozen, linear/kNN).
        config: Base ``pathseg finetune`` (or ``probe``) YAML ("" = defaults).
        overrides: Dotted overrides of that config (``trainer.max_steps=100``).
        metric: Summary metric of the tables ("" = miou / balanced_accuracy / aji or object_dice).
        test_images: Score every cell on the first N images (sorted ids) of the task's test split only (0 = all):
            the comparison writes that id list as ``DATA/splits/<test split>_first<N>.txt`` (quick runs).
    """

    name: str = ""
    data: str = ""
    task: TaskKind = "segmentation"
    config: str = ""
    overrides: list[str] = field(default_factory=list)
    metric: str = ""
    test_images: int = 0


@dataclass
class CompareConfig:
    """Compare pretraining methods on the same unlabeled data, downstream tasks, label fractions and seeds."""

    out: str = field(default="", metadata={"help": "comparison directory (rerun the same command to resume)"})
    unlabeled: str = field(default="", metadata={"help": "unlabeled data set directory or tiles.csv"})
    methods: list[MethodEntry] = field(default_factory=list)
    tasks: list[TaskEntry] = field(default_factory=list)
    fractions: list[float] = field(default_factory=lambda: [1.0], metadata={"help": "label fractions, e.g. 0.1,1"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "seeds of every cell, e.g. 0,1,2"})
    baselines: list[str] = field(default_factory=lambda: ["random", "mocov2"],
                                 metadata={"help": "methods every other one is paired against"})
    dry_run: bool = field(default=False, metadata={"help": "list the pretrainings and cells, run nothing"})

    def validate(self) -> None:
        """Check names, sources and ranges before any work."""
        if not self.out:
            raise ConfigError("set --out (the comparison directory)")
        if not self.methods or not self.tasks:
            raise ConfigError("a comparison needs at least one method and one task")
        for kind, names in (("method", [m.name for m in self.methods]), ("task", [t.name for t in self.tasks])):
            if any(not n or "/" in n or n.startswith(".") for n in names):
                raise ConfigError(f"every {kind} needs a name without '/' and not starting with '.'")
            if len(set(names)) != len(names):
                raise ConfigError(f"{kind} names must be unique, got {names}")
        for m in self.methods:
            if bool(m.pretrain) == bool(m.encoder):
                raise ConfigError(f"method '{m.name}': set exactly one of 'pretrain' and 'encoder'")
        if any(m.pretrain for m in self.methods) and not self.unlabeled:
            raise ConfigError("methods with 'pretrain' need 'unlabeled' (the unlabeled data set)")
        if any(not t.data for t in self.tasks):
            raise ConfigError("every task needs 'data'")
        if any(t.test_images < 0 for t in self.tasks):
            raise ConfigError("test_images must be >= 0 (0 = the whole test split)")
        if not self.fractions or any(not 0.0 < f <= 1.0 for f in self.fractions):
            raise ConfigError(f"fractions must be in (0, 1], got {self.fractions}")
        check_seeds(self.seeds)
