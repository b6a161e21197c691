"""``pathseg demo``: an end-to-end run on synthetic H&E data, as a list of small steps.

Steps share a :class:`DemoState` and are listed in :data:`DEMO_STEPS`; later stages (pretrain -> export ->
fine-tune -> evaluate -> infer) are added by appending :class:`Step` entries. Each step prints one progress line.

Output (``--out``, default ``runs/demo``)::

    config.yaml, run.json, metrics.json   # RunDir provenance
    data/seg/                             # synthetic segmentation set (train + held-out test), canonical layout
    data/unlabeled/                       # synthetic unlabeled images
    examples.png                          # images with their class overlays and a legend
    predictions.png                       # held-out images: ground truth vs. U-Net prediction
    summary.md, summary.json              # what ran, data statistics, learnability result
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
    n_unlabeled: int = field(default=32, metadata={"help": "unlabeled images (for later pretraining steps)"})
    epochs: int = field(default=20, metadata={"help": "maximum training epochs of the tiny U-Net"})
    crop: int = field(default=64, metadata={"help": "train on random crops of this side (0 = whole images)"})
    time_limit_s: float = field(
        default=90.0, metadata={"help": "training time budget in seconds (the cosine LR decays over it)"}
    )
    encoder: str = field(default="resnet18", metadata={"help": "segmentation_models_pytorch encoder"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads (0 = torch default)"})
    min_miou: float = field(default=0.6, metadata={"help": "mIoU the learnability check expects"})

    def validate(self) -> None:
        """Check sizes and counts."""
        if self.size < 32 or self.size % 16:
            raise ConfigError(f"'size' must be a multiple of 16 and at least 32, got {self.size}")
        if self.n_train < 1 or self.n_test < 1 or self.n_unlabeled < 0:
            raise ConfigError("'n_train' and 'n_test' must be at least 1 and 'n_unlabeled' at least 0")
        if self.crop < 0 or self.crop % 16:
            raise ConfigError(f"'crop' must be 0 or a multiple of 16, got {self.crop}")
        if self.epochs < 1 or self.time_limit_s <= 0:
            raise ConfigError("'epochs' must be at least 1 and 'time_limit_s' positive")


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


def step_train(state: DemoState) -> str:
    """Train the tiny U-Net (random init, CPU) on the synthetic training split."""
    import torch

    from pathseg.synth.learn import train_tiny_unet

    cfg = state.cfg
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    images, masks = _load_split(state.root / "data" / "seg", "train")
    res = train_tiny_unet(images, masks, num_classes=5, max_epochs=cfg.epochs, time_limit_s=cfg.time_limit_s,
                          seed=cfg.seed, encoder=cfg.encoder, crop=cfg.crop or None,
                          log=lambda s: print(s, flush=True))
    state.objects["model"] = res.model
    state.results["train"] = {"encoder": cfg.encoder, "crop": cfg.crop, "epochs": res.epochs,
                              "seconds": round(res.seconds, 1), "final_loss": round(res.final_loss, 4),
                              "train_images": len(images)}
    return f"{res.epochs} epochs in {res.seconds:.0f} s, final loss {res.final_loss:.3f}"


def step_evaluate(state: DemoState) -> str:
    """Predict the held-out test split and compute mIoU (the learnability check)."""
    from pathseg.synth.learn import predict

    images, masks = _load_split(state.root / "data" / "seg", "test")
    pred = predict(state.objects["model"], images)
    metrics = _seg_metrics(pred, masks, 5)
    state.objects.update(test_images=images, test_masks=masks, test_pred=pred)
    passed = metrics["miou"] is not None and metrics["miou"] >= state.cfg.min_miou
    state.results["evaluate"] = {**metrics, "test_images": len(images), "min_miou": state.cfg.min_miou,
                                 "learnability_passed": bool(passed)}
    return f"mIoU {metrics['miou']:.3f} on {len(images)} held-out images ({'pass' if passed else 'below'} " \
           f"{state.cfg.min_miou})"


def _seg_metrics(pred: Any, target: Any, num_classes: int) -> dict[str, Any]:
    try:
        from pathseg.metrics import segmentation_metrics as metric_fn
    except ImportError:
        metric_fn = None  # type: ignore[assignment]
    if metric_fn is not None:
        m = metric_fn(pred, target, num_classes=num_classes)
        return {"miou": m["miou"], "iou_per_class": m.get("iou_per_class"),
                "pixel_accuracy": m.get("pixel_accuracy")}
    import numpy as np

    cm = np.bincount(target.ravel().astype(np.int64) * num_classes + pred.ravel(),
                     minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1) - tp
    iou = np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)
    return {"miou": float(np.nanmean(iou)), "iou_per_class": [None if np.isnan(v) else float(v) for v in iou],
            "pixel_accuracy": float(tp.sum() / max(cm.sum(), 1))}


def step_pictures(state: DemoState) -> str:
    """Draw example images with class overlays and held-out predictions next to the ground truth."""
    from pathseg.synth.classes import TISSUE_CLASSES
    from pathseg.synth.pictures import overlay, save_grid

    names = [c.name for c in TISSUE_CLASSES]
    pal = [c.color for c in TISSUE_CLASSES]
    images, masks = _load_split(state.root / "data" / "seg", "train")
    k = min(6, len(images))
    save_grid(state.root / "examples.png", [list(images[:k]), [overlay(i, m, pal) for i, m in zip(images, masks[:k])]],
              ["image", "ground truth"], names, pal, title="synthetic H&E tiles and their tissue classes")
    written = ["examples.png"]
    if "test_pred" in state.objects:
        ti, tm, tp = (state.objects[k_] for k_ in ("test_images", "test_masks", "test_pred"))
        k = min(6, len(ti))
        miou = state.results.get("evaluate", {}).get("miou")
        save_grid(state.root / "predictions.png",
                  [list(ti[:k]), [overlay(i, m, pal) for i, m in zip(ti, tm[:k])],
                   [overlay(i, p, pal) for i, p in zip(ti, tp[:k])]],
                  ["held-out image", "ground truth", "U-Net prediction"], names, pal,
                  title=f"tiny U-Net on held-out synthetic tiles (mIoU {miou:.3f})" if miou is not None else "")
        written.append("predictions.png")
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


def _summary_markdown(state: DemoState) -> str:
    """The human-readable summary of a demo run."""
    cfg, res = state.cfg, state.results
    lines = ["# pathseg demo", "",
             f"Synthetic H&E data (seed {cfg.seed}, {cfg.size} px tiles at 0.5 µm/px; see docs/synth.md), "
             "validated, then a tiny U-Net trained from scratch on CPU and evaluated on held-out tiles.", "",
             "## Steps", "", "| step | result | seconds |", "|---|---|---|"]
    for name, info in res.get("steps", {}).items():
        lines.append(f"| {name} | {info['result']} | {info['seconds']} |")
    ev = res.get("evaluate")
    if ev:
        lines += ["", "## Learnability check", "",
                  f"- mIoU on {ev['test_images']} held-out images: **{ev['miou']:.3f}** "
                  f"(expected >= {ev['min_miou']}: {'passed' if ev['learnability_passed'] else 'NOT reached'})",
                  f"- pixel accuracy: {ev['pixel_accuracy']:.3f}"]
        from pathseg.synth.classes import TISSUE_CLASSES

        per = ev.get("iou_per_class") or []
        lines.append("- IoU per class: " + ", ".join(
            f"{c.name} {v:.3f}" if v is not None else f"{c.name} n/a" for c, v in zip(TISSUE_CLASSES, per)))
        tr = res.get("train", {})
        crop = f"{tr.get('crop')}-px crops" if tr.get("crop") else "whole images"
        lines.append(f"- training: {tr.get('encoder')} U-Net from scratch, {tr.get('epochs')} epochs on "
                     f"{tr.get('train_images')} images ({crop}), {tr.get('seconds')} s")
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
    Step("train", "train a tiny U-Net", step_train),
    Step("evaluate", "evaluate on held-out images", step_evaluate),
    Step("pictures", "draw overlays", step_pictures),
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
    ev = state.results.get("evaluate", {})
    return {"miou": ev.get("miou"), "pixel_accuracy": ev.get("pixel_accuracy"),
            "learnability_passed": ev.get("learnability_passed"), "total_seconds": state.results.get("total_seconds")}


def demo_command(cfg: DemoConfig) -> int:
    """CLI entry of ``pathseg demo``."""
    run_demo(cfg)
    return 0
