"""``pathseg finetune``: train a segmentation or classification model on a labelled split, then test it.

Run directory::

    RUN/config.yaml, RUN/run.json      # RunDir provenance
    RUN/metrics.json                   # test metrics, mean over seeds (+ <key>_std, per_seed); docs/finetuning.md
    RUN/seed_<s>/model.json            # architecture (ModelSpec) for 'pathseg evaluate'
    RUN/seed_<s>/model_best.safetensors, model_last.safetensors
    RUN/seed_<s>/metrics.json          # this seed's test metrics
    RUN/seed_<s>/logs/metrics.csv      # Lightning CSV log
    RUN/seed_<s>/curves.png, confusion_matrix.png, predictions.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pathseg.data.layout import DatasetInfo, read_dataset_info
from pathseg.errors import ConfigError, DataError
from pathseg.tasks.config import FinetuneConfig, require_paths


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _resolve_optional(root: Path, name: str, default: str) -> tuple[str, list[str]] | None:
    from pathseg.data.split import resolve_ids

    if not name:
        return None
    try:
        return resolve_ids(root, name)
    except DataError:
        if name == default:
            return None  # the default split is optional
        raise


def train_one_seed(
    cfg: FinetuneConfig, data: Path, info: DatasetInfo, seed: int, folder: Path,
    train: tuple[str, list[str]], val: tuple[str, list[str]] | None, test: tuple[str, list[str]],
) -> dict[str, Any]:
    """Train and test one seed into ``folder``; returns the seed's test metrics."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, RandomSampler

    from pathseg.data.datasets import ClassificationDataset, SegmentationDataset
    from pathseg.data.split import subset_ids
    from pathseg.runs import write_json
    from pathseg.tasks.common import ModelSpec, build_model, pick_device, resolve_encoder, save_weights
    from pathseg.tasks.evaluation import evaluate_classification, evaluate_segmentation, write_pictures
    from pathseg.tasks.module import ClassificationModule, SegmentationModule
    from pathseg.tasks.pictures import plot_curves

    folder.mkdir(parents=True, exist_ok=True)
    L.seed_everything(seed, workers=True, verbose=False)
    enc = resolve_encoder(cfg.encoder, cfg.backbone)
    train_folder, train_ids = train
    if cfg.label_fraction < 1.0:
        train_ids = subset_ids(data, cfg.train_split, cfg.label_fraction, seed)
    seg = cfg.task == "segmentation"
    spec = ModelSpec(
        task=cfg.task, encoder=enc.timm_name, num_classes=info.num_classes, decoder=cfg.decoder if seg else None,
        mean=list(enc.mean), std=list(enc.std), window=cfg.crop_size, overlap=cfg.inference.overlap,
        blend=cfg.inference.blend, ignore_index=info.ignore_index, class_names=info.class_names,
        colors=[list(c) for c in info.palette()],
    )
    spec.save(folder / "model.json")
    model = build_model(spec, encoder_weights=enc.weights)
    t, o = cfg.trainer, cfg.optim
    common: dict[str, Any] = dict(
        lr=o.lr, encoder_lr_mult=o.encoder_lr_mult, weight_decay=o.weight_decay, optimizer=o.name,
        warmup_steps=o.warmup_steps, max_steps=t.max_steps, freeze_encoder=cfg.freeze_encoder,
    )
    dataset_cls: Any = SegmentationDataset if seg else ClassificationDataset
    kw = dict(mean=spec.mean, std=spec.std)
    train_ds = dataset_cls(data, train_folder, ids=train_ids, crop_size=cfg.crop_size, train=True, seed=seed, **kw)
    module: Any
    if seg:
        module = SegmentationModule(
            model, info.num_classes, ignore_index=info.ignore_index, window=cfg.crop_size,
            overlap=cfg.inference.overlap, blend=cfg.inference.blend, window_batch=cfg.inference.batch_size, **common,
        )
    else:
        module = ClassificationModule(model, info.num_classes, **common)
    workers = t.num_workers
    sampler = RandomSampler(train_ds, replacement=True, num_samples=t.val_every_steps * t.batch_size)
    train_loader = DataLoader(train_ds, batch_size=t.batch_size, sampler=sampler, num_workers=workers,
                              drop_last=True, persistent_workers=workers > 0)
    val_loader = None
    if val is not None:
        val_ds = dataset_cls(data, val[0], ids=val[1], crop_size=None if seg else cfg.crop_size, **kw)
        val_loader = DataLoader(val_ds, batch_size=1 if seg else t.batch_size, num_workers=min(workers, 1))
    trainer = L.Trainer(
        max_steps=t.max_steps, max_epochs=-1, accelerator=t.accelerator, devices=_devices(t.devices),
        precision=t.precision,  # type: ignore[arg-type]
        deterministic=t.deterministic, log_every_n_steps=t.log_every_n_steps,
        logger=CSVLogger(save_dir=str(folder), name="logs", version=""), enable_checkpointing=False,
        num_sanity_val_steps=0, enable_model_summary=False, enable_progress_bar=True,
        limit_val_batches=1.0 if val_loader is not None else 0,
    )
    trainer.fit(module, train_loader, val_loader)
    save_weights(module.model, folder / "model_last.safetensors")
    selected = module.load_best()
    save_weights(module.model, folder / "model_best.safetensors")
    device = pick_device({"cpu": "cpu", "gpu": "cuda", "cuda": "cuda"}.get(t.accelerator, "auto"))
    test_folder, test_ids = test
    if seg:
        test_ds = SegmentationDataset(data, test_folder, ids=test_ids, **kw)
        metrics, examples = evaluate_segmentation(module.model, test_ds, spec, device, cfg.inference.batch_size,
                                                  cfg.inference.num_examples)
    else:
        cls_ds = ClassificationDataset(data, test_folder, ids=test_ids, crop_size=cfg.crop_size, **kw)
        metrics, examples = evaluate_classification(module.model, cls_ds, info.num_classes, device), []
    metrics.update(num_train_images=len(train_ids), weights="best" if selected else "last",
                   best_val_score=module.best_score if selected else None)
    plot_curves(folder / "logs" / "metrics.csv", folder / "curves.png", title=f"seed {seed}")
    write_pictures(folder, metrics, spec, examples)
    write_json(folder / "metrics.json", metrics)  # last: marks the seed as finished for a resumed run
    return metrics


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
    from pathseg.runs import RunDir
    from pathseg.tasks.common import aggregate_seeds, resolve_encoder

    data, out = require_paths(cfg)
    info = read_dataset_info(data)
    if cfg.task == "segmentation" and info.task not in ("segmentation", "instance"):
        raise ConfigError(f"--task segmentation needs a segmentation data set, this one is '{info.task}'", data)
    if cfg.task == "classification" and info.task != "classification":
        raise ConfigError(f"--task classification needs a classification data set, this one is '{info.task}'",
                          data)
    if info.num_classes < 1:
        raise DataError("dataset.yaml lists no classes", data)
    enc = resolve_encoder(cfg.encoder, cfg.backbone)  # fail early on a bad encoder file
    train = resolve_ids(data, cfg.train_split)
    test = resolve_ids(data, cfg.test_split)
    val = _resolve_optional(data, cfg.val_split, "val")
    print(f"finetune {cfg.task}: {enc.timm_name} ({'random init' if enc.weights is None else enc.weights}), "
          f"train={cfg.train_split} x{cfg.label_fraction:g}, val={cfg.val_split if val else 'none'}, "
          f"test={cfg.test_split}, seeds={cfg.seeds}")
    key = {k: v for k, v in config_to_dict(cfg).items() if k != "overwrite"}
    with resumable_dir(out, key, cfg.overwrite) as tmp:
        run = RunDir(tmp, cfg, seed=cfg.seeds[0])
        per_seed: dict[str, dict[str, Any]] = {}
        for seed in cfg.seeds:
            folder = tmp / f"seed_{seed}"
            if (folder / "metrics.json").is_file():  # finished before an interruption, same config
                print(f"seed {seed}: finished already (resumed run), skipping", flush=True)
                per_seed[str(seed)] = json.loads((folder / "metrics.json").read_text())
                continue
            shutil.rmtree(folder, ignore_errors=True)
            per_seed[str(seed)] = train_one_seed(cfg, data, info, seed, folder, train, val, test)
        result = aggregate_seeds(per_seed)
        result.update(task=cfg.task, test_split=cfg.test_split, label_fraction=cfg.label_fraction,
                      encoder=str(cfg.encoder), backbone=enc.timm_name, class_names=info.class_names)
        run.finish(result)
    return result


def finetune_command(cfg: FinetuneConfig) -> int:
    """``pathseg finetune``: :func:`finetune`, then one summary line."""
    result = finetune(cfg)
    out = require_paths(cfg)[1]
    key = "miou" if cfg.task == "segmentation" else "balanced_accuracy"
    value, std = result.get(key), result.get(f"{key}_std")
    shown = "n/a" if value is None else f"{value:.4f} ± {std or 0.0:.4f}"
    print(f"{cfg.test_split} {key}: {shown} over seeds {cfg.seeds}; wrote {out / 'metrics.json'}")
    return 0
