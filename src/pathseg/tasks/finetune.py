"""``pathseg finetune``: train a segmentation, instance or classification model on a labelled split, then test it.

Run directory::

    RUN/config.yaml, RUN/run.json      # RunDir provenance (run.json ends completed / failed / interrupted)
    RUN/metrics.json                   # test metrics, mean over seeds (+ <key>_std, per_seed); docs/finetuning.md
    RUN/seed_<s>/model.json            # architecture (ModelSpec) for 'pathseg evaluate'
    RUN/seed_<s>/model_best.safetensors, model_last.safetensors
    RUN/seed_<s>/metrics.json          # this seed's test metrics
    RUN/seed_<s>/logs/metrics.csv      # Lightning CSV log
    RUN/seed_<s>/curves.png, confusion_matrix.png, predictions.png

Each seed is a sequence of small steps (:func:`seed_model`, :func:`seed_loaders`, :func:`train_seed`,
:func:`evaluate_seed`) that the engine (:mod:`pathseg.train`) runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pathseg.data.layout import DatasetInfo, read_dataset_info
from pathseg.errors import ConfigError, DataError
from pathseg.tasks.config import FinetuneConfig

log = logging.getLogger(__name__)
Split = tuple[str, list[str]]


@dataclass
class SeedPlan:
    """What one seed trains on and where it writes."""

    data: Path
    info: DatasetInfo
    seed: int
    folder: Path
    train: Split
    val: Split | None
    test: Split


def _resolve_optional(root: Path, name: str, default: str) -> Split | None:
    from pathseg.data.split import resolve_ids

    if not name:
        return None
    try:
        return resolve_ids(root, name)
    except DataError:
        if name == default:
            return None  # the default split is optional
        raise


def seed_model(cfg: FinetuneConfig, plan: SeedPlan) -> tuple[Any, Any]:
    """The seed's :class:`~pathseg.tasks.common.ModelSpec` (written as ``model.json``) and its model.

    The encoder weights are loaded by the factory (strict: a file of another architecture is refused).
    """
    from pathseg.tasks.common import ModelSpec, build_model, resolve_encoder

    enc = resolve_encoder(cfg.encoder, cfg.backbone)
    seg = cfg.task == "segmentation"
    info = plan.info
    spec = ModelSpec(
        task=cfg.task, encoder=enc.timm_name, num_classes=info.num_classes, decoder=cfg.decoder if seg else None,
        mean=list(enc.mean), std=list(enc.std), window=cfg.crop_size, overlap=cfg.inference.overlap,
        blend=cfg.inference.blend, ignore_index=info.ignore_index, class_names=info.class_names,
        colors=[list(c) for c in info.palette()], mpp=info.mpp,
    )
    spec.save(plan.folder / "model.json")
    return spec, build_model(spec, encoder_weights=enc.weights, allow_partial=cfg.allow_partial_weights)


def seed_module(cfg: FinetuneConfig, spec: Any, model: Any, steps_per_epoch: int | None = None) -> Any:
    """The LightningModule of the task, from plain values of the config (``steps_per_epoch``: the length of a
    patch loader, whose epoch is one pass over the patches)."""
    from pathseg.tasks.module import ClassificationModule, SegmentationModule

    o, t = cfg.optim, cfg.trainer
    steps = t.total_steps() if not (cfg.patches.size and steps_per_epoch) else (
        t.max_steps if t.max_steps > 0 else t.max_epochs * steps_per_epoch)
    common: dict[str, Any] = dict(
        lr=o.lr, encoder_lr_mult=o.encoder_lr_mult, weight_decay=o.weight_decay, optimizer=o.name,
        warmup_steps=o.warmup_steps, max_steps=steps, freeze_encoder=cfg.freeze_encoder,
        schedule=o.schedule, patience=o.patience,
    )
    if cfg.task == "segmentation":
        return SegmentationModule(
            model, spec.num_classes, ignore_index=spec.ignore_index, window=cfg.crop_size,
            overlap=cfg.inference.overlap, blend=cfg.inference.blend, window_batch=cfg.inference.batch_size,
            **common,
        )
    return ClassificationModule(model, spec.num_classes, **common)


def seed_loaders(cfg: FinetuneConfig, plan: SeedPlan, spec: Any) -> tuple[Any, Any, list[str]]:
    """Training loader (crops drawn with replacement, ``val_every_steps`` batches per epoch), validation loader
    (whole images for segmentation) and the training ids (a label-fraction subset for this seed)."""
    from torch.utils.data import DataLoader, RandomSampler

    from pathseg.data.datasets import ClassificationDataset, SegmentationDataset
    from pathseg.data.split import subset_ids

    train_folder, train_ids = plan.train
    seg = cfg.task == "segmentation"
    kw = dict(mean=spec.mean, std=spec.std)
    t = cfg.trainer
    cls: Any = SegmentationDataset if seg else ClassificationDataset
    if cfg.patches.size and seg:
        train = patch_loader(cfg, plan, spec)
        train_ids = train.dataset.image_ids
    else:
        if cfg.label_fraction < 1.0:
            train_ids = subset_ids(plan.data, cfg.train_split, cfg.label_fraction, plan.seed)
        train_ds = cls(plan.data, train_folder, ids=train_ids, crop_size=cfg.crop_size, train=True, seed=plan.seed,
                       **kw)
        sampler = RandomSampler(train_ds, replacement=True, num_samples=t.val_every_steps * t.batch_size)
        train = DataLoader(train_ds, batch_size=t.batch_size, sampler=sampler, num_workers=t.num_workers,
                           drop_last=True, persistent_workers=t.num_workers > 0)
    val = None
    if plan.val is not None:
        val_ds = cls(plan.data, plan.val[0], ids=plan.val[1], crop_size=None if seg else cfg.crop_size, **kw)
        val = DataLoader(val_ds, batch_size=1 if seg else t.batch_size, num_workers=min(t.num_workers, 1))
    return train, val, train_ids


def patch_loader(cfg: FinetuneConfig, plan: SeedPlan, spec: Any) -> Any:
    """The URL paper protocol's loader: a seeded ``label_fraction`` of fixed windows, shuffled, one pass an epoch."""
    from torch.utils.data import DataLoader

    from pathseg.tasks.patches import PatchDataset

    folder, ids = plan.train
    ds = PatchDataset(plan.data, folder, ids, size=cfg.patches.size, stride=cfg.patches.stride, crop=cfg.crop_size,
                      fraction=cfg.label_fraction, seed=plan.seed, mean=spec.mean, std=spec.std,
                      ignore_index=spec.ignore_index)
    log.info("seed %d: %d of %d training windows (%gx%g, step %d)", plan.seed, len(ds), ds.total_windows,
             cfg.patches.size, cfg.patches.size, cfg.patches.stride)
    t = cfg.trainer
    return DataLoader(ds, batch_size=t.batch_size, shuffle=True, num_workers=t.num_workers,
                      drop_last=len(ds) > t.batch_size, persistent_workers=t.num_workers > 0)


def train_seed(cfg: FinetuneConfig, plan: SeedPlan, module: Any, train: Any, val: Any) -> Any:
    """Fit ``module`` with the engine's trainer; saves last and best weights; returns the best-weights keeper."""
    from pathseg.tasks.common import save_weights
    from pathseg.train.best import BestWeights
    from pathseg.train.factory import build_trainer
    from pathseg.train.lifecycle import fit

    best = BestWeights(module.monitor)
    trainer = build_trainer(cfg.trainer, plan.folder, [best], loggers="csv", validate=val is not None,
                            log_version="")
    fit(trainer, module, train_dataloaders=train, val_dataloaders=val)
    save_weights(module.model, plan.folder / "model_last.safetensors")
    best.restore(module.model)
    save_weights(module.model, plan.folder / "model_best.safetensors")
    return best


def evaluate_seed(cfg: FinetuneConfig, plan: SeedPlan, spec: Any, model: Any) -> tuple[dict[str, Any], list[Any]]:
    """Test metrics and overlay examples of ``model`` on the test split."""
    from pathseg.data.datasets import ClassificationDataset, SegmentationDataset
    from pathseg.tasks.common import pick_device
    from pathseg.tasks.evaluation import evaluate_classification, evaluate_segmentation

    device = pick_device({"cpu": "cpu", "gpu": "cuda", "cuda": "cuda"}.get(cfg.trainer.accelerator, "auto"))
    folder, ids = plan.test
    kw = dict(mean=spec.mean, std=spec.std)
    if cfg.task == "segmentation":
        ds = SegmentationDataset(plan.data, folder, ids=ids, **kw)
        return evaluate_segmentation(model, ds, spec, device, cfg.inference.batch_size, cfg.inference.num_examples,
                                     legacy=cfg.legacy_metrics)
    cls_ds = ClassificationDataset(plan.data, folder, ids=ids, crop_size=cfg.crop_size, **kw)
    return evaluate_classification(model, cls_ds, spec.num_classes, device), []


def run_seed(cfg: FinetuneConfig, plan: SeedPlan) -> dict[str, Any]:
    """Train and test one seed into ``plan.folder``; returns the seed's test metrics."""
    import lightning as L

    from pathseg.runs import write_json
    from pathseg.tasks.evaluation import write_pictures
    from pathseg.tasks.pictures import plot_curves

    plan.folder.mkdir(parents=True, exist_ok=True)
    L.seed_everything(plan.seed, workers=True, verbose=False)
    if cfg.task == "instance":
        from pathseg.tasks.instance.seed import run_instance_seed

        metrics, n_train = run_instance_seed(cfg, plan)
        metrics["num_train_images"] = n_train
        plot_curves(plan.folder / "logs" / "metrics.csv", plan.folder / "curves.png", title=f"seed {plan.seed}")
        write_json(plan.folder / "metrics.json", metrics)
        return metrics
    spec, model = seed_model(cfg, plan)
    train, val, train_ids = seed_loaders(cfg, plan, spec)
    module = seed_module(cfg, spec, model, steps_per_epoch=len(train))
    best = train_seed(cfg, plan, module, train, val)
    metrics, examples = evaluate_seed(cfg, plan, spec, module.model)
    selected = best.best_state is not None
    metrics.update(num_train_images=len(train_ids), weights="best" if selected else "last",
                   best_val_score=best.best_score if selected else None)
    if cfg.patches.size and cfg.task == "segmentation":
        metrics["num_train_patches"] = len(train.dataset)
    plot_curves(plan.folder / "logs" / "metrics.csv", plan.folder / "curves.png", title=f"seed {plan.seed}")
    write_pictures(plan.folder, metrics, spec, examples)
    write_json(plan.folder / "metrics.json", metrics)  # last: marks the seed as finished for a resumed run
    return metrics


def check_task(cfg: FinetuneConfig, data: Path, info: DatasetInfo) -> None:
    """Refuse a data set of another task before any work starts.

    Raises:
        ConfigError: Wrong task.
        DataError: No classes.
    """
    if cfg.task == "segmentation" and info.task not in ("segmentation", "instance"):
        raise ConfigError(f"--task segmentation needs a segmentation data set, this one is '{info.task}'", data)
    if cfg.task == "classification" and info.task != "classification":
        raise ConfigError(f"--task classification needs a classification data set, this one is '{info.task}'",
                          data)
    if cfg.task == "instance" and info.task not in ("instance", "segmentation"):
        raise ConfigError(f"--task instance needs a data set with instance maps, this one is '{info.task}'", data)
    if info.num_classes < 1:
        raise DataError("dataset.yaml lists no classes", data)


def check_encoder(cfg: FinetuneConfig) -> Any:
    """Resolve ``--encoder`` and load it once into its architecture (strict unless ``--allow-partial-weights``).

    Raises:
        PathsegError: Missing file, no timm name, or tensors that do not fit (naming the likely architecture).
    """
    from pathseg.models import create_encoder
    from pathseg.tasks.common import resolve_encoder

    enc = resolve_encoder(cfg.encoder, cfg.backbone)
    if enc.weights is not None:
        create_encoder(enc.timm_name, weights=enc.weights, allow_partial=cfg.allow_partial_weights)
    return enc


def check_data(cfg: FinetuneConfig, data: Path, info: DatasetInfo, has_val: bool) -> None:
    """The fast ``data check`` pass over every split the run reads (cached), before any output is written.

    Raises:
        DataError: The first problem, named as ``data check`` names it.
    """
    from pathseg.data.check import validate_for_training

    splits = [cfg.train_split, cfg.val_split if has_val else "", cfg.test_split]
    task = "unlabeled" if cfg.task == "instance" else cfg.task  # instance runs read images + instance maps
    validate_for_training(data, splits, info.num_classes, info.ignore_index, task)


def finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune over every seed, then write mean ± std test metrics into ``RUN/metrics.json``.

    The run is built in ``.NAME.partial`` beside ``cfg.out`` and renamed when every seed is done; after an
    interruption, the same command continues there and skips the seeds that had finished.

    Args:
        cfg: The resolved config (the same object ``pathseg finetune`` builds from its flags).

    Returns:
        The metrics written to ``metrics.json``: mean and ``*_std`` over seeds, ``per_seed``, and the run's
        task, test split, label fraction, encoder and class names.

    Raises:
        ConfigError: A data set of the wrong task or a bad encoder file.
        DataError: Missing or inconsistent data.
    """
    import json
    import shutil

    from pathseg.config import config_to_dict
    from pathseg.data.split import resolve_ids
    from pathseg.io import resumable_dir
    from pathseg.tasks.common import aggregate_seeds
    from pathseg.train.lifecycle import run_lifecycle

    data, out = Path(cfg.data), Path(cfg.out)
    info = read_dataset_info(data)
    check_task(cfg, data, info)
    enc = check_encoder(cfg)  # before any output: a file of another architecture is refused here
    train, test = resolve_ids(data, cfg.train_split), resolve_ids(data, cfg.test_split)
    val = _resolve_optional(data, cfg.val_split, "val")
    check_data(cfg, data, info, val is not None)
    log.info("finetune %s: %s (%s), train=%s x%g, val=%s, test=%s, seeds=%s", cfg.task, enc.timm_name,
             "random init" if enc.weights is None else enc.weights, cfg.train_split, cfg.label_fraction,
             cfg.val_split if val else "none", cfg.test_split, cfg.seeds)
    key = {k: v for k, v in config_to_dict(cfg).items() if k != "overwrite"}
    with resumable_dir(out, key, cfg.overwrite) as tmp, run_lifecycle(tmp, cfg, seed=cfg.seeds[0]) as run:
        per_seed: dict[str, dict[str, Any]] = {}
        for seed in cfg.seeds:
            folder = tmp / f"seed_{seed}"
            if (folder / "metrics.json").is_file():  # finished before an interruption, same config
                log.info("seed %d: finished already (resumed run), skipping", seed)
                per_seed[str(seed)] = json.loads((folder / "metrics.json").read_text())
                continue
            shutil.rmtree(folder, ignore_errors=True)
            per_seed[str(seed)] = run_seed(cfg, SeedPlan(data, info, seed, folder, train, val, test))
        result = aggregate_seeds(per_seed)
        result.update(task=cfg.task, test_split=cfg.test_split, label_fraction=cfg.label_fraction,
                      encoder=str(cfg.encoder), backbone=enc.timm_name, class_names=info.class_names)
        assert run is not None
        run.finish(result)
    return result


def finetune_command(cfg: FinetuneConfig) -> int:
    """``pathseg finetune``: :func:`finetune`, then one summary line."""
    result = finetune(cfg)
    key = {"segmentation": "miou", "classification": "balanced_accuracy"}.get(cfg.task, "")
    if cfg.task == "instance":
        from pathseg.tasks.instance.seed import SUMMARY_METRIC

        key = SUMMARY_METRIC.get(str(result.get("objects")), "aji")
    value, std = result.get(key), result.get(f"{key}_std")
    shown = "n/a" if value is None else f"{value:.4f} ± {std or 0.0:.4f}"
    print(f"{cfg.test_split} {key}: {shown} over seeds {cfg.seeds}; wrote {Path(cfg.out) / 'metrics.json'}")
    return 0
