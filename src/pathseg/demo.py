"""``pathseg demo``: the whole label-efficient pipeline on synthetic H&E data, as a list of small steps.

synth -> check -> pretrain (MoCo v2) -> export -> fine-tune from a random encoder and from the pretrained one
-> the same with frozen encoders on fewer labels (where pretraining is expected to matter) -> pictures -> summary.
Steps share a :class:`DemoState` and are listed in ``DEMO_STEPS``; each prints one
progress line. Everything is built under a temporary name and moved to ``--out`` when all steps succeed.

Output (``--out``, default ``runs/demo``)::

    config.yaml, run.json, metrics.json   # RunDir provenance
    data/seg/, data/unlabeled/            # synthetic data sets in the canonical layout
    pretrain/                             # the MoCo v2 run (checkpoints, logs, encoder)
    encoder_mocov2.safetensors            # the exported backbone
    finetune_random/, finetune_mocov2/    # fine-tuning runs with metrics.json and pictures
    frozen_random/, frozen_mocov2/        # frozen-encoder protocol (decoder only, fewer labels)
    examples.png                          # synthetic tiles with their class overlays
    summary.md, summary.json              # side-by-side results
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathseg.errors import ConfigError


@dataclass
class DemoConfig:
    """Run the pathseg demo on synthetic H&E data and write a summary with pictures."""

    out: Path = field(default=Path("runs/demo"), metadata={"help": "output run directory"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output directory"})
    seed: int = field(default=0, metadata={"help": "seed of the data and the training"})
    size: int = field(default=128, metadata={"help": "synthetic image side in pixels (multiple of 16)"})
    n_train: int = field(default=64, metadata={"help": "labelled training images"})
    n_test: int = field(default=32, metadata={"help": "held-out test images"})
    n_unlabeled: int = field(default=128, metadata={"help": "unlabeled images for pretraining"})
    backbone: str = field(default="resnet18", metadata={"help": "timm backbone of every model"})
    crop: int = field(default=64, metadata={"help": "crop side for pretraining and fine-tuning (multiple of 32)"})
    pretrain_steps: int = field(default=60, metadata={"help": "MoCo v2 pretraining steps"})
    pretrain_batch_size: int = field(default=16, metadata={"help": "pretraining batch size"})
    finetune_steps: int = field(default=120, metadata={"help": "fine-tuning steps of each U-Net"})
    finetune_batch_size: int = field(default=8, metadata={"help": "fine-tuning batch size"})
    label_fraction: float = field(default=0.25, metadata={"help": "fraction of labelled training images used"})
    frozen_label_fraction: float = field(
        default=0.125, metadata={"help": "labels of the frozen-encoder protocol (decoder trained on few labels)"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads (0 = torch default)"})

    def validate(self) -> None:
        """Check sizes and counts."""
        if self.size < 32 or self.size % 16:
            raise ConfigError(f"'size' must be a multiple of 16 and at least 32, got {self.size}")
        if self.n_train < 1 or self.n_test < 1 or self.n_unlabeled < 0:
            raise ConfigError("'n_train' and 'n_test' must be at least 1 and 'n_unlabeled' at least 0")
        if self.crop < 32 or self.crop % 32 or self.crop > self.size:
            raise ConfigError(f"'crop' must be a multiple of 32 between 32 and 'size', got {self.crop}")
        if self.pretrain_steps < 1 or self.finetune_steps < 1:
            raise ConfigError("'pretrain_steps' and 'finetune_steps' must be at least 1")
        if not 0.0 < self.label_fraction <= 1.0:
            raise ConfigError(f"'label_fraction' must be in (0, 1], got {self.label_fraction}")


@dataclass
class DemoState:
    """What the steps share: the config, the (staging) output directory and results by step."""

    cfg: DemoConfig
    root: Path
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    objects: dict[str, Any] = field(default_factory=dict)  # in-memory hand-over (model, arrays); not saved


@dataclass(frozen=True)
class Step:
    """One demo step: a name, a one-line description and a function returning a short result line."""

    name: str
    help: str
    run: Callable[[DemoState], str]


def step_synth(state: DemoState) -> str:
    """Generate the synthetic segmentation set (train + test) and the unlabeled set."""
    from pathseg.synth.config import SynthConfig
    from pathseg.synth.dataset import write_synth_dataset

    cfg = state.cfg
    seg = SynthConfig(out=state.root / "data" / "seg", kind="segmentation", n=cfg.n_train + cfg.n_test,
                      size=cfg.size, seed=cfg.seed, splits=[f"train:{cfg.n_train}", f"test:{cfg.n_test}"])
    counts = write_synth_dataset(seg, progress=False)
    out = {"seg": counts}
    if cfg.n_unlabeled:
        unl = SynthConfig(out=state.root / "data" / "unlabeled", kind="unlabeled", n=cfg.n_unlabeled,
                          size=cfg.size, seed=cfg.seed + 1)
        out["unlabeled"] = write_synth_dataset(unl, progress=False)
    state.results["data"] = out
    return ", ".join(f"{name}: " + " ".join(f"{k} {v}" for k, v in c.items()) for name, c in out.items())


def step_check(state: DemoState) -> str:
    """Validate the generated data sets with ``pathseg.data.check`` when it is available."""
    try:
        from pathseg.data.check import check_dataset, summary
    except ImportError:
        state.notes.append("data check skipped: pathseg.data.check is not available")
        return "skipped (pathseg.data.check not available)"
    lines, stats = [], {}
    for name in ("seg", "unlabeled"):
        root = state.root / "data" / name
        if not root.is_dir():
            continue
        report = check_dataset(root)
        if not report.ok:
            raise RuntimeError(f"generated data set {name} fails its check: {report.problems[0]}")
        stats[name] = summary(report)
        lines.append(f"{name} ok")
    state.results["check"] = stats
    return ", ".join(lines)


def _load_split(root: Path, split: str) -> tuple[Any, Any]:
    import numpy as np

    from pathseg.data.layout import image_path, list_ids, mask_path
    from pathseg.io import read_mask, read_rgb

    ids = list_ids(root, split)
    images = np.stack([read_rgb(image_path(root, split, i)) for i in ids])
    masks = np.stack([read_mask(mask_path(root, split, i)) for i in ids])
    return images, masks


def step_pretrain(state: DemoState) -> str:
    """Pretrain a ResNet-18 with MoCo v2 on the unlabeled images (Lightning, CPU)."""
    import torch

    from pathseg.config import load_config
    from pathseg.ssl.config import PretrainConfig
    from pathseg.ssl.engine import pretrain

    cfg = state.cfg
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    values = {
        "method": "mocov2", "data": str(state.root / "data" / "unlabeled"), "out": str(state.root / "pretrain"),
        "backbone": cfg.backbone, "seed": cfg.seed, "crop_size": cfg.crop, "batch_size": cfg.pretrain_batch_size,
        "num_workers": 0, "method_args": {"queue_size": 1024, "momentum": 0.99},
        "optim": {"lr": 0.03, "warmup_epochs": 1},
        "trainer": {"accelerator": "cpu", "devices": "1", "max_steps": cfg.pretrain_steps,
                    "log_every_n_steps": 5, "progress_bar": False},
        "checkpoint": {"every_n_steps": max(cfg.pretrain_steps, 1)},
    }
    result = pretrain(load_config(PretrainConfig, values=values))
    state.results["pretrain"] = {k: result.get(k) for k in ("method", "backbone", "steps", "seconds", "final_loss")}
    loss = result.get("final_loss")
    return f"MoCo v2, {result.get('steps')} steps in {result.get('seconds')} s, final loss {_fmt(loss)}"


def step_export(state: DemoState) -> str:
    """Export the pretrained backbone as an encoder file (safetensors + timm name + normalisation)."""
    from pathseg.ssl.config import ExportConfig
    from pathseg.ssl.engine import export_command

    out = state.root / "encoder_mocov2.safetensors"
    export_command(ExportConfig(run=str(state.root / "pretrain"), out=str(out)))
    state.results["export"] = {"file": out.name}
    return out.name


def _finetune(state: DemoState, encoder: str, name: str, frozen: bool = False) -> str:
    from pathseg.config import load_config
    from pathseg.tasks.config import FinetuneConfig
    from pathseg.tasks.finetune import finetune

    cfg = state.cfg
    out = state.root / name
    values = {
        "task": "segmentation", "data": str(state.root / "data" / "seg"), "out": str(out), "encoder": encoder,
        "backbone": cfg.backbone, "decoder": "unet", "seeds": [cfg.seed], "freeze_encoder": frozen,
        "label_fraction": cfg.frozen_label_fraction if frozen else cfg.label_fraction,
        "val_split": "", "test_split": "test", "crop_size": cfg.crop,
        "trainer": {"max_steps": cfg.finetune_steps, "val_every_steps": cfg.finetune_steps,
                    "batch_size": cfg.finetune_batch_size, "num_workers": 0, "accelerator": "cpu",
                    "log_every_n_steps": 5},
        "optim": {"lr": 2e-3, "warmup_steps": max(cfg.finetune_steps // 10, 1)},
        "inference": {"batch_size": 8, "num_examples": 3},
    }
    metrics = finetune(load_config(FinetuneConfig, values=values))
    state.results[name] = {"encoder": Path(encoder).name, "miou": metrics.get("miou"),
                           "mdice": metrics.get("mdice"), "pixel_accuracy": metrics.get("pixel_accuracy"),
                           "iou_per_class": metrics.get("iou_per_class")}
    return f"test mIoU {metrics.get('miou'):.3f}"


def step_finetune_random(state: DemoState) -> str:
    """Fine-tune a U-Net from a random encoder on a fraction of the labels; evaluate on held-out tiles."""
    return _finetune(state, "random", "finetune_random")


def step_finetune_pretrained(state: DemoState) -> str:
    """The same fine-tuning from the MoCo v2 encoder."""
    return _finetune(state, str(state.root / "encoder_mocov2.safetensors"), "finetune_mocov2")


def step_frozen_random(state: DemoState) -> str:
    """Protocol 2: the encoder stays frozen (random) and only the decoder learns, from very few labels."""
    return _finetune(state, "random", "frozen_random", frozen=True)


def step_frozen_pretrained(state: DemoState) -> str:
    """Protocol 2 with the frozen MoCo v2 encoder: here what the encoder learned without labels is all it has."""
    return _finetune(state, str(state.root / "encoder_mocov2.safetensors"), "frozen_mocov2", frozen=True)


def step_pictures(state: DemoState) -> str:
    """Draw example tiles with class overlays and list the fine-tuning runs' pictures."""
    from pathseg.synth.classes import TISSUE_CLASSES
    from pathseg.synth.pictures import overlay, save_grid

    names = [c.name for c in TISSUE_CLASSES]
    pal = [c.color for c in TISSUE_CLASSES]
    images, masks = _load_split(state.root / "data" / "seg", "train")
    k = min(6, len(images))
    save_grid(state.root / "examples.png", [list(images[:k]), [overlay(i, m, pal) for i, m in zip(images, masks[:k])]],
              ["image", "ground truth"], names, pal, title="synthetic H&E tiles and their tissue classes")
    written = ["examples.png"]
    for name in ("finetune_random", "finetune_mocov2", "frozen_random", "frozen_mocov2"):
        for pic in ("predictions.png", "curves.png", "confusion_matrix.png"):
            if (state.root / name / f"seed_{state.cfg.seed}" / pic).is_file():
                written.append(f"{name}/seed_{state.cfg.seed}/{pic}")
    state.results["pictures"] = written
    return ", ".join(written)


def step_summary(state: DemoState) -> str:
    """Write ``summary.json`` and ``summary.md``."""
    from pathseg.runs import write_json

    state.results["notes"] = list(state.notes)
    write_json(state.root / "summary.json", state.results)
    from pathseg.io import atomic_write_text

    atomic_write_text(state.root / "summary.md", _summary_markdown(state))
    return "summary.md, summary.json"


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _summary_markdown(state: DemoState) -> str:
    """The human-readable summary of a demo run."""
    cfg, res = state.cfg, state.results
    lines = ["# pathseg demo", "",
             f"Synthetic H&E data (seed {cfg.seed}, {cfg.size}-px tiles at 0.5 µm/px; see docs/synth.md) is "
             f"validated; a {cfg.backbone} is pretrained with MoCo v2 on the unlabeled tiles and exported; then two "
             f"U-Nets are fine-tuned on {cfg.label_fraction:.0%} of the labelled training tiles, one from a random "
             "encoder and one from the pretrained encoder, and both are evaluated on held-out tiles. CPU-sized: "
             "the numbers show that the pipeline works, not which initialisation is better (docs/results.md).",
             "", f"A second protocol was chosen before looking at any outcome because it is where a short CPU "
             f"pretraining is expected to matter: the encoder stays frozen and only the decoder is trained, on "
             f"{cfg.frozen_label_fraction:.1%} of the labels. A random frozen encoder gives the decoder random "
             "features; a frozen MoCo v2 encoder gives it what it learned without labels. What to conclude: "
             "a gap in the frozen protocol says the pretrained features carry tissue information; the full "
             "fine-tuning rows say little on CPU, where a few hundred steps let a random encoder catch up on "
             "this easy synthetic task. Neither is evidence about real slides or larger budgets (docs/results.md).",
             "", "## Steps", "", "| step | result | seconds |", "|---|---|---|"]
    for name, info in res.get("steps", {}).items():
        lines.append(f"| {name} | {info['result']} | {info['seconds']} |")
    labels = {"finetune_random": "random init", "finetune_mocov2": "MoCo v2 (this run)",
              "frozen_random": "frozen random encoder", "frozen_mocov2": "frozen MoCo v2 encoder"}
    runs = [(n, res[n]) for n in labels if n in res]
    if runs:
        from pathseg.synth.classes import TISSUE_CLASSES

        names = [c.name for c in TISSUE_CLASSES]
        lines += ["", "## Fine-tuning side by side (held-out test tiles)", "",
                  "| encoder | mIoU | mDice | pixel accuracy | " + " | ".join(f"IoU {n}" for n in names) + " |",
                  "|---" * (4 + len(names)) + "|"]
        for name, r in runs:
            per = list(r.get("iou_per_class") or []) + [None] * len(names)
            label = labels[name]
            lines.append(f"| {label} | {_fmt(r['miou'])} | {_fmt(r['mdice'])} | {_fmt(r['pixel_accuracy'])} | "
                         + " | ".join(_fmt(v) for v in per[: len(names)]) + " |")
    chk = res.get("check", {}).get("seg")
    if chk:
        lines += ["", "## Data", ""]
        for split, st in chk.items():
            fr = ", ".join(f"{k} {v:.2f}" for k, v in st["class_fractions"].items())
            lines.append(f"- {split}: {st['images']} images; class pixel fractions: {fr}")
    pics = res.get("pictures", [])
    if pics:
        lines += ["", "## Pictures", ""] + [f"![{p}]({p})" for p in pics]
    if state.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in state.notes]
    return "\n".join(lines) + "\n"


DEMO_STEPS: list[Step] = [
    Step("synth", "generate synthetic H&E data", step_synth),
    Step("check", "validate the data sets", step_check),
    Step("pretrain", "pretrain with MoCo v2 on the unlabeled tiles", step_pretrain),
    Step("export", "export the pretrained encoder", step_export),
    Step("finetune-random", "fine-tune a U-Net from a random encoder", step_finetune_random),
    Step("finetune-mocov2", "fine-tune a U-Net from the MoCo v2 encoder", step_finetune_pretrained),
    Step("frozen-random", "train a decoder on a frozen random encoder, few labels", step_frozen_random),
    Step("frozen-mocov2", "train a decoder on the frozen MoCo v2 encoder, few labels", step_frozen_pretrained),
    Step("pictures", "collect the pictures", step_pictures),
    Step("summary", "write the summary", step_summary),
]


def run_demo(cfg: DemoConfig, steps: list[Step] | None = None) -> dict[str, Any]:
    """Run the demo steps into ``cfg.out`` (built under a temporary name, moved into place on success).

    Returns:
        The results by step (also in ``summary.json``).
    """
    from pathseg.io import staging_dir
    from pathseg.runs import RunDir

    steps = DEMO_STEPS if steps is None else steps
    start = time.time()
    with staging_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
        run = RunDir(tmp, cfg, seed=cfg.seed)
        state = DemoState(cfg=cfg, root=tmp)
        state.results["steps"] = {}
        for i, step in enumerate(steps, 1):
            t0 = time.time()
            print(f"[demo {i}/{len(steps)}] {step.name}: {step.help} ...", flush=True)
            line = step.run(state)
            secs = time.time() - t0
            state.results["steps"][step.name] = {"seconds": round(secs, 1), "result": line}
            print(f"[demo {i}/{len(steps)}] {step.name}: {line} ({secs:.1f} s)", flush=True)
        state.results["total_seconds"] = round(time.time() - start, 1)
        run.finish(metrics=_metrics(state))
    print(f"ok: demo finished in {time.time() - start:.0f} s; see {cfg.out}/summary.md")
    return state.results


def _metrics(state: DemoState) -> dict[str, Any]:
    res = state.results
    return {"miou_random": res.get("finetune_random", {}).get("miou"),
            "miou_mocov2": res.get("finetune_mocov2", {}).get("miou"),
            "miou_frozen_random": res.get("frozen_random", {}).get("miou"),
            "miou_frozen_mocov2": res.get("frozen_mocov2", {}).get("miou"),
            "pretrain_final_loss": res.get("pretrain", {}).get("final_loss"),
            "total_seconds": res.get("total_seconds")}


def demo_command(cfg: DemoConfig) -> int:
    """CLI entry of ``pathseg demo``."""
    run_demo(cfg)
    return 0
