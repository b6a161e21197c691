"""``pathseg wsss``: stage 1 → pseudo masks → stage 2 in one run directory, resumable per stage.

Run directory::

    RUN/config.yaml, run.json, metrics.json        # pathseg.runs.RunDir
    RUN/stage1/classifier.safetensors, done.json
    RUN/pseudo/<layer>/dataset.yaml, train/{images,masks}/   # canonical segmentation data sets
    RUN/pseudo/done.json                           # with pseudo-mask quality against true masks, if any
    RUN/stage2/model.safetensors, done.json        # with the evaluation of every split that has masks

A stage whose ``done.json`` exists is skipped; ``--rerun STAGE`` runs it and the later stages again.
``done.json`` is written atomically after the stage's outputs, and records the stage's config: resuming with a
different config for a finished stage is an error (rerun it instead).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from pathseg.config import config_to_dict
from pathseg.data.layout import DatasetInfo, labels_path, list_splits, mask_path, read_dataset_info
from pathseg.errors import ConfigError, DataError
from pathseg.runs import write_json
from pathseg.train.lifecycle import run_lifecycle
from pathseg.wsss.config import STAGES, WsssConfig

TRAIN_SPLIT = "train"
log = logging.getLogger(__name__)


def _section(cfg: WsssConfig, stage: str) -> dict[str, Any]:
    return {"stage1": config_to_dict(cfg.stage1), "pseudo": config_to_dict(cfg.pseudo),
            "stage2": config_to_dict(cfg.stage2)}[stage]


def _device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available")
    return choice


def _check_data(cfg: WsssConfig) -> DatasetInfo:
    info = read_dataset_info(cfg.data)
    if not labels_path(cfg.data, TRAIN_SPLIT).is_file():
        raise DataError(f"needs a patch-label data set: {TRAIN_SPLIT}/labels.csv is missing "
                        "(make one with 'pathseg data patchify')", cfg.data)
    from pathseg.data.check import validate_for_training
    from pathseg.wsss.data import foreground_indices

    foreground_indices(info)
    validate_for_training(cfg.data, [s for s in list_splits(cfg.data)], task=info.task)  # images, masks where given
    return info


def run_stage(stage: str, cfg: WsssConfig, info: DatasetInfo, device: str) -> dict[str, Any]:
    """Run one stage and return its metrics."""
    out = Path(cfg.out)
    if stage == "stage1":
        from pathseg.wsss.stage1 import train_stage1

        return train_stage1(cfg.stage1, Path(cfg.data), info, out / "stage1", device)
    if stage == "pseudo":
        from pathseg.wsss.generate import generate_pseudo_masks
        from pathseg.wsss.stage1 import CLASSIFIER_FILE, load_classifier

        model, meta = load_classifier(out / "stage1" / CLASSIFIER_FILE)
        return generate_pseudo_masks(model, Path(cfg.data), info, cfg.pseudo, out / "pseudo", meta["normalize"],
                                     device)
    return run_stage2(cfg, info, device)


def run_stage2(cfg: WsssConfig, info: DatasetInfo, device: str) -> dict[str, Any]:
    """Train DeepLabV3+ on the pseudo masks, then evaluate every split with true masks (gated and not)."""
    import json as _json

    from pathseg.models import create_segmentation_model
    from pathseg.train.lifecycle import fit
    from pathseg.train.weights import save_safetensors
    from pathseg.wsss.data import PatchLabelSet, PseudoMaskSet, foreground_indices, has_masks
    from pathseg.wsss.stage1 import CLASSIFIER_FILE, load_classifier, stage_trainer
    from pathseg.wsss.stage2 import Stage2Module, evaluate, make_loader, stage2_normalize

    s2, out, root = cfg.stage2, Path(cfg.out), Path(cfg.data)
    weights = {k: v for k, v in s2.layer_weights.items() if v > 0}
    missing = [k for k in weights if k not in cfg.pseudo.layers]
    if missing:
        raise ConfigError(f"stage2.layer_weights uses layers {missing} that pseudo.layers does not generate")
    num_fg = len(foreground_indices(info))
    ids = PatchLabelSet(root, TRAIN_SPLIT, info, max_items=cfg.pseudo.max_images).ids
    norm = stage2_normalize(s2)
    mask_roots = {k: out / "pseudo" / k for k in weights}
    if s2.supervision == "full":
        if not has_masks(root, TRAIN_SPLIT):
            raise ConfigError(f"stage2.supervision=full needs true masks in {root / TRAIN_SPLIT / 'masks'}; "
                              "make the data set with 'pathseg data patchify --keep-train-masks'")
        weights, mask_roots = {"deep": 1.0}, {"deep": root}
        ids = [i for i in ids if mask_path(root, TRAIN_SPLIT, i).is_file()]
    ds = PseudoMaskSet(root, TRAIN_SPLIT, ids, mask_roots, normalize=norm, blur=s2.blur)
    loader = make_loader(ds, s2)
    total = max(len(loader), 1) * s2.epochs
    if s2.max_steps > 0:
        total = min(total, s2.max_steps)
    model = create_segmentation_model(s2.decoder, s2.encoder, num_fg,  # type: ignore[arg-type]
                                      encoder_weights=s2.encoder_weights, output_stride=s2.output_stride)
    common = dict(root=root, num_classes=info.num_classes, exclude_index=info.exclude_index, normalize=norm)
    val = dict(common, split=s2.val_split, max_images=s2.max_eval_images) if has_masks(root, s2.val_split) else None
    module = Stage2Module(model, weights, info.exclude_index, s2.parity, s2.lr, s2.head_lr_mult, s2.momentum,
                          s2.weight_decay, s2.poly_power, total, val=val)
    kind = "true" if s2.supervision == "full" else "pseudo"
    log.info("stage2: %d patches, %s masks %s, %d steps, model selection on %s", len(ds), kind, weights, total,
             "split " + s2.val_split if val else "the last epoch")
    fit(stage_trainer(device, s2.epochs, s2.max_steps), module, train_dataloaders=loader)
    module.best.restore(model)
    meta2 = {"decoder": s2.decoder, "encoder": s2.encoder, "num_classes": num_fg,
             "output_stride": s2.output_stride, "normalize": norm}
    save_safetensors(model.state_dict(), out / "stage2" / "model.safetensors",
                     {"pathseg": _json.dumps(meta2, sort_keys=True)})
    classifier, meta = load_classifier(out / "stage1" / CLASSIFIER_FILE)
    classifier = classifier.to(device)
    model = model.to(device)
    result: dict[str, Any] = {"best_val_miou": module.best.best_score, "best_epoch": module.best.best_step,
                              "eval": {}}
    for split in list_splits(root):
        if split == TRAIN_SPLIT or not has_masks(root, split):
            continue
        gate = classifier if s2.gate.enabled else None
        entry = evaluate(model, split=split, device=device, classifier=gate, classifier_normalize=meta["normalize"],
                         gate_threshold=s2.gate.threshold, gate_mode=s2.gate.mode, max_images=s2.max_eval_images,
                         **common)  # type: ignore[arg-type]
        result["eval"][split] = entry
        shown = entry.get("gate", entry["no_gate"])
        log.info("stage2: %s: mIoU %s FwIoU %s acc %s (no gate: mIoU %s)", split, _fmt(shown["miou"]),
                 _fmt(shown["fwiou"]), _fmt(shown["pixel_accuracy"]), _fmt(entry["no_gate"]["miou"]))
    return result


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _start_stage(folder: Path, section: dict[str, Any]) -> None:
    """Record the config a stage starts with; partial outputs of an interrupted run with another config are
    removed (an interrupted run with the same config resumes)."""
    started = folder / "started.json"
    if started.is_file() and json.loads(started.read_text()).get("config") != section:
        shutil.rmtree(folder, ignore_errors=True)
    write_json(started, {"config": section})


def wsss_command(cfg: WsssConfig) -> int:
    """Run the three stages into ``cfg.out``, skipping finished ones; returns 0."""
    info = _check_data(cfg)
    device = _device(cfg.device)
    import lightning as L

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.rerun:
        for stage in STAGES[STAGES.index(cfg.rerun):]:
            (out / stage / "done.json").unlink(missing_ok=True)
            if stage == "pseudo":  # its masks would otherwise be kept as "done already"
                shutil.rmtree(out / "pseudo", ignore_errors=True)
    metrics: dict[str, Any] = {}
    with run_lifecycle(out, cfg, seed=cfg.seed) as run:
        for i, stage in enumerate(STAGES):
            marker = out / stage / "done.json"
            if marker.is_file():
                done = json.loads(marker.read_text())
                if done.get("config") != _section(cfg, stage):
                    raise ConfigError(f"stage '{stage}' finished with a different config; pass --rerun {stage} "
                                      "or use another --out", marker)
                log.info("[%d/3] %s: done already, skipping", i + 1, stage)
                metrics[stage] = done.get("metrics", {})
                continue
            log.info("[%d/3] %s: running", i + 1, stage)
            _start_stage(out / stage, _section(cfg, stage))
            L.seed_everything(cfg.seed + i, verbose=False)
            start = time.time()
            metrics[stage] = run_stage(stage, cfg, info, device)
            metrics[stage]["seconds"] = round(time.time() - start, 1)
            write_json(marker, {"stage": stage, "config": _section(cfg, stage), "metrics": metrics[stage]})
            log.info("[%d/3] %s: finished in %s s", i + 1, stage, metrics[stage]["seconds"])
        assert run is not None
        run.finish(metrics)
    _print_summary(metrics)
    return 0


def _print_summary(metrics: dict[str, Any]) -> None:
    quality = metrics.get("pseudo", {}).get("quality", {})
    for layer, m in quality.items():
        print(f"pseudo-mask quality ({layer}): mIoU {_fmt(m.get('miou'))} FwIoU {_fmt(m.get('fwiou'))}")
    for split, entry in metrics.get("stage2", {}).get("eval", {}).items():
        m = entry.get("gate", entry.get("no_gate", {}))
        print(f"stage2 {split}: mIoU {_fmt(m.get('miou'))} FwIoU {_fmt(m.get('fwiou'))} "
              f"acc {_fmt(m.get('pixel_accuracy'))}")
