"""One seed of ``pathseg finetune --task instance``: model, data, training through the engine, test metrics."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pathseg.tasks.config import FinetuneConfig

#: The instance model of each kind of object when ``--model`` is not given.
DEFAULT_MODEL: dict[str, Literal["hover", "contour"]] = {"nuclei": "hover", "glands": "contour"}
#: The summary metric of each kind of object (as the papers report them).
SUMMARY_METRIC = {"nuclei": "aji", "glands": "object_dice"}


def instance_section(cfg: FinetuneConfig, info: Any) -> Any:
    """The resolved :class:`~pathseg.tasks.instance.config.InstanceSection` (``--model`` and per-kind defaults)."""
    from pathseg.tasks.instance.config import object_kind

    kind = object_kind(info.name, info.class_names, cfg.instance.objects)
    section = cfg.instance
    if cfg.model:
        section = dataclasses.replace(section, model=cfg.model)  # type: ignore[arg-type]
    elif section.model == "hover" and kind == "glands":  # the field's default: pick the kind's model
        section = dataclasses.replace(section, model=DEFAULT_MODEL[kind])
    return section.resolved(kind)


def run_instance_seed(cfg: FinetuneConfig, plan: Any) -> tuple[dict[str, Any], int]:
    """Train and test one seed into ``plan.folder``; returns the test metrics and the number of training images."""
    from pathseg.data.split import subset_ids
    from pathseg.tasks.common import pick_device, resolve_encoder
    from pathseg.tasks.instance.dataset import InstanceDataset
    from pathseg.tasks.instance.evaluation import evaluate_instance, plot_instance_examples
    from pathseg.tasks.instance.factory import InstanceModelSpec, build_instance_model, targets_for
    from pathseg.tasks.instance.module import InstanceModule
    from pathseg.tasks.instance.train import fit_instance, loaders

    section = instance_section(cfg, plan.info)
    enc = resolve_encoder(cfg.encoder, cfg.backbone)
    InstanceModelSpec(encoder=enc.timm_name, mean=list(enc.mean), std=list(enc.std),
                      section=dataclasses.asdict(section), class_names=plan.info.class_names).save(plan.folder)
    model = build_instance_model(section, enc.timm_name, enc.weights)
    train_folder, train_ids = plan.train
    if cfg.label_fraction < 1.0:
        train_ids = subset_ids(plan.data, cfg.train_split, cfg.label_fraction, plan.seed)
    kw: dict[str, Any] = dict(mean=enc.mean, std=enc.std, targets=targets_for(section),
                              contour_width=section.contour_width)
    train_ds = InstanceDataset(plan.data, train_folder, ids=train_ids, crop_size=cfg.crop_size, train=True,
                               seed=plan.seed, **kw)
    val_ds = InstanceDataset(plan.data, plan.val[0], ids=plan.val[1], **kw) if plan.val is not None else None
    t, o = cfg.trainer, cfg.optim
    train_dl, val_dl = loaders(train_ds, val_ds, t.batch_size, t.val_every_steps, t.num_workers)
    module = InstanceModule(model, monitor=section.monitor, lr=o.lr, encoder_lr_mult=o.encoder_lr_mult,
                            weight_decay=o.weight_decay, optimizer=o.name, warmup_steps=o.warmup_steps,
                            max_steps=t.total_steps(), freeze_encoder=cfg.freeze_encoder, schedule=o.schedule)
    best = fit_instance(module, train_dl, val_dl, t, plan.folder)
    test_ds = InstanceDataset(plan.data, plan.test[0], ids=plan.test[1], mean=enc.mean, std=enc.std)
    device = pick_device({"cpu": "cpu", "gpu": "cuda", "cuda": "cuda"}.get(t.accelerator, "auto"))
    metrics, examples = evaluate_instance(module.model, test_ds, device, pred_dir=plan.folder / "predictions",
                                          num_examples=cfg.inference.num_examples,
                                          max_dets=section.detections_per_img)
    plot_instance_examples(examples, plan.folder / "predictions.png")
    selected = best.best_state is not None
    metrics.update(model=section.model, objects=section.objects, weights="best" if selected else "last",
                   best_val_score=best.best_score if selected else None)
    return metrics, len(train_ids)
