"""Test-time evaluation of a trained model on a split, and ``pathseg evaluate`` over a finished run.

Segmentation: whole images, one at a time, through :func:`~pathseg.tasks.sliding.sliding_window_predict`;
metrics from one confusion matrix over the split (:mod:`pathseg.metrics`). On request (``legacy_metrics``) the URL
original's per-batch Dice/IoU of the same predictions is added under ``legacy_per_batch_*`` keys
(:mod:`pathseg.metrics.legacy`), to show how far it departs. Classification: softmax scores of (centre-cropped)
images, then :func:`~pathseg.metrics.classification_metrics`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from pathseg.data.datasets import ClassificationDataset, SegmentationDataset
from pathseg.data.layout import read_dataset_info
from pathseg.errors import DataError
from pathseg.metrics import ConfusionMatrix, classification_metrics
from pathseg.tasks.common import ModelSpec, aggregate_seeds, load_model, pick_device
from pathseg.tasks.config import EvaluateConfig
from pathseg.tasks.pictures import default_palette, plot_confusion, plot_overlays
from pathseg.tasks.sliding import sliding_window_predict

Example = tuple[str, np.ndarray, np.ndarray, np.ndarray]


def _denormalise(x: torch.Tensor, mean: list[float], std: list[float]) -> np.ndarray:
    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)
    return ((x.cpu() * s + m).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    dataset: SegmentationDataset,
    spec: ModelSpec,
    device: torch.device,
    window_batch: int = 4,
    num_examples: int = 4,
    legacy: bool = False,
) -> tuple[dict[str, Any], list[Example]]:
    """Metrics of ``model`` over every image of ``dataset`` and up to ``num_examples`` overlay examples.

    With ``legacy`` the stitched predictions are also scored the URL original's way (256² tiles, per-batch
    Dice/IoU over batches of 32, absent classes 0): keys ``legacy_per_batch_*``, never used for selection.
    """
    from pathseg.metrics.legacy import LegacyPerBatchScores, legacy_tiles

    model = model.to(device).eval()
    cm = ConfusionMatrix(spec.num_classes, ignore_index=spec.ignore_index)
    old = LegacyPerBatchScores(spec.num_classes, ignore_index=spec.ignore_index) if legacy else None
    examples: list[Example] = []
    for i in range(len(dataset)):
        x, y = dataset[i]
        probs = sliding_window_predict(
            model, x.to(device), window=spec.window, overlap=spec.overlap, num_classes=spec.num_classes,
            batch_size=window_batch, blend=spec.blend,  # type: ignore[arg-type]
        )
        pred = probs.argmax(1)[0].cpu()
        cm.update(pred, y)
        if old is not None:
            for tile_pred, tile_target in legacy_tiles(pred.numpy(), y.numpy()):
                old.update(tile_pred, tile_target)
        if len(examples) < num_examples:
            examples.append((dataset.ids[i], _denormalise(x, spec.mean, spec.std), y.numpy(), pred.numpy()))
    out = cm.compute()
    out["confusion_matrix"] = cm.matrix.tolist()
    out["num_images"] = len(dataset)
    if old is not None:
        out.update(old.compute())
    return out, examples


@torch.no_grad()
def evaluate_classification(
    model: nn.Module, dataset: ClassificationDataset, num_classes: int, device: torch.device, batch_size: int = 32
) -> dict[str, Any]:
    """Classification metrics of ``model`` over ``dataset``."""
    model = model.to(device).eval()
    scores, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        scores.append(model(x.to(device)).softmax(1).float().cpu().numpy())
        labels.append(np.asarray(y))
    return classification_metrics(np.concatenate(labels), np.concatenate(scores), num_classes)


def write_pictures(
    folder: Path, metrics: dict[str, Any], spec: ModelSpec, examples: list[Example], prefix: str = ""
) -> None:
    """Confusion matrix and (segmentation) overlays of one evaluation into ``folder``."""
    if metrics.get("confusion_matrix") is not None:
        plot_confusion(metrics["confusion_matrix"], spec.class_names, folder / f"{prefix}confusion_matrix.png")
    if examples:
        plot_overlays(examples, folder / f"{prefix}predictions.png", overlay_palette(spec), spec.ignore_index,
                      class_names=spec.class_names)


def overlay_palette(spec: ModelSpec) -> list[tuple[int, int, int]]:
    """The data set's class colours; distinct default colours (background unpainted) when none are set."""
    colors = [(int(c[0]), int(c[1]), int(c[2])) for c in spec.colors]
    if len(colors) >= spec.num_classes and any(sum(c) > 0 for c in colors):
        return colors
    return [(0, 0, 0), *default_palette(spec.num_classes)[1:]]


def seed_dirs(run: Path) -> list[Path]:
    """The ``seed_<s>`` folders of a run, in seed order.

    Raises:
        DataError: None found.
    """
    found = sorted((p for p in run.glob("seed_*")
                    if (p / "model.json").is_file() or (p / "instance_model.json").is_file()),
                   key=lambda p: int(p.name.split("_", 1)[1]) if p.name.split("_", 1)[1].isdigit() else 0)
    if not found:
        raise DataError("no seed_<s>/model.json in the run (not a finished 'pathseg finetune' run?)", run)
    return found


def evaluation_name(run: Path, data: Path, dataset_name: str, split: str) -> str:
    """``eval_<data set>_<split>``: evaluations of different data sets never share a file.

    Raises:
        DataError: The run holds an evaluation of another data set folder under the same name.
    """
    import json

    name = f"eval_{dataset_name}_{split}"
    previous = run / f"{name}.json"
    if previous.is_file():
        try:
            earlier = json.loads(previous.read_text()).get("data")
        except (OSError, json.JSONDecodeError):
            earlier = None
        if earlier is not None and Path(earlier).resolve() != data.resolve():
            raise DataError(f"{previous.name} holds an evaluation of another data set folder ({earlier}); move it "
                            "away or rename this data set in its dataset.yaml", run)
    return name


def _evaluate_seed(sdir: Path, cfg: EvaluateConfig, info: Any, folder: str, ids: list[str],
                   device: torch.device, name: str) -> dict[str, Any]:
    if (sdir / "instance_model.json").is_file():
        from pathseg.tasks.instance.dataset import InstanceDataset
        from pathseg.tasks.instance.evaluation import evaluate_instance, plot_instance_examples
        from pathseg.tasks.instance.factory import load_instance_model

        imodel, ispec = load_instance_model(sdir, cfg.weights)
        ids_ds = InstanceDataset(cfg.data, folder, ids=ids, mean=ispec.mean, std=ispec.std)
        metrics, iexamples = evaluate_instance(imodel, ids_ds, device, pred_dir=sdir / f"{name}_predictions",
                                               max_dets=int(ispec.section.get("detections_per_img", 100)))
        if cfg.pictures:
            plot_instance_examples(iexamples, sdir / f"{name}_predictions.png")
        return metrics
    model, spec = load_model(sdir, cfg.weights)
    if spec.num_classes != info.num_classes:
        raise DataError(f"the run's model has {spec.num_classes} classes, the data set {info.num_classes}", cfg.data)
    if cfg.overlap >= 0:
        spec.overlap = cfg.overlap
    if spec.task == "segmentation":
        ds = SegmentationDataset(cfg.data, folder, ids=ids, mean=spec.mean, std=spec.std)
        metrics, examples = evaluate_segmentation(model, ds, spec, device, legacy=cfg.legacy_metrics)
    else:
        cds = ClassificationDataset(cfg.data, folder, ids=ids, mean=spec.mean, std=spec.std,
                                    crop_size=spec.window or None)
        metrics, examples = evaluate_classification(model, cds, spec.num_classes, device), []
    if cfg.pictures:
        write_pictures(sdir, metrics, spec, examples, prefix=f"{name}_")
    return metrics


def evaluate_command(cfg: EvaluateConfig) -> int:
    """``pathseg evaluate``: rebuild each seed's model, score ``cfg.split``, write ``RUN/eval_<data>_<split>.json``."""
    from pathseg.data.check import validate_for_training
    from pathseg.data.split import resolve_ids
    from pathseg.runs import write_json

    run = Path(cfg.run)
    info = read_dataset_info(cfg.data)
    folder, ids = resolve_ids(cfg.data, cfg.split)
    instance_run = any((p / "instance_model.json").is_file() for p in run.glob("seed_*"))
    validate_for_training(cfg.data, [cfg.split], info.num_classes, info.ignore_index,
                          "unlabeled" if instance_run else info.task)  # before any work
    seeds = seed_dirs(run)
    name = evaluation_name(run, Path(cfg.data), info.name, cfg.split)
    device = pick_device(cfg.device)
    per_seed: dict[str, dict[str, Any]] = {}
    for sdir in seeds:
        metrics = _evaluate_seed(sdir, cfg, info, folder, ids, device, name)
        per_seed[sdir.name.split("_", 1)[1]] = metrics
        shown = ("miou", "legacy_per_batch_miou", "accuracy", "aji", "object_dice")
        print(f"{sdir.name}: " + ", ".join(f"{k}={metrics[k]:.4f}" for k in shown if metrics.get(k) is not None))
    result = aggregate_seeds(per_seed)
    result.update(split=cfg.split, weights=cfg.weights, data=str(cfg.data), dataset=info.name)
    write_json(run / f"{name}.json", result)
    print(f"wrote {run / f'{name}.json'}")
    return 0
