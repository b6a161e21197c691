"""End-to-end mode of ``pretrain_throughput.py``: ``pathseg pretrain`` with data loading against a plain loop.

For each method the same config (backbone, crop, batch, workers, SGD recipe, images) runs three ways:

- ``pathseg``: :func:`pathseg.ssl.engine.pretrain` (Lightning, seeded resumable loader, logging, checkpoints);
- ``plain``: a plain PyTorch loop over a ``DataLoader`` of the same dataset and the same method object
  (``on_step_start``, ``training_loss``, backward, ``torch.optim.SGD``);
- ``model``: the plain step on one batch loaded beforehand (no data loading; URL's raw batch is rendered once
  outside the timing), to tell model compute from data cost.

Step times are medians of the per-step times after ``warmup`` steps (start-up, worker spawn and the first batches
excluded); the ratios are printed against MoCo v2 and against the plain loop.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

#: name → (registered method, method_args); ``{crop}`` in views.patch_size is three crops (the spec's 768 / 256)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "mocov2": ("mocov2", {"queue_size": 1024}),
    "densecl": ("densecl", {"queue_size": 1024}),
    "url": ("url", {"stage": "1", "views": {"batched": True}}),
    "url-workers": ("url", {"stage": "1", "views": {"batched": False}}),
    "plm": ("plm", {"queue_size": 1024}),
}


class StepTimer(L.Callback):
    """Records the wall-clock time at the end of every training batch."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.ends.append(time.perf_counter())


def _median_step(ends: list[float], warmup: int) -> float:
    gaps = [b - a for a, b in zip(ends[warmup - 1:], ends[warmup:])]
    return statistics.median(gaps)


def make_config(name: str, args: Any, out: Path) -> Any:
    """The :class:`PretrainConfig` of one contender."""
    from pathseg.config.core import from_dict
    from pathseg.ssl.config import PretrainConfig

    method, margs = METHODS[name]
    margs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in margs.items()}
    if method == "url":
        margs["views"]["patch_size"] = 3 * args.crop
    return from_dict(PretrainConfig, {
        "data": args.data, "out": str(out), "method": method, "backbone": args.backbone, "splits": args.splits,
        "crop_size": args.crop, "batch_size": args.batch, "num_workers": args.workers, "method_args": margs,
        "optim": {"name": "sgd", "lr": 0.03, "weight_decay": 1e-4, "momentum": 0.9, "warmup_epochs": 0,
                  "cosine": False},
        "trainer": {"max_steps": args.e2e_steps, "accelerator": args.device, "devices": "1", "progress_bar": False,
                    "log_every_n_steps": 5},
        "checkpoint": {"every_n_steps": 0},
    })


def run_pathseg(cfg: Any, warmup: int) -> float:
    """Median step time of ``pathseg pretrain`` (Python API)."""
    from pathseg.ssl.engine import pretrain

    timer = StepTimer()
    pretrain(cfg, callbacks=[timer])
    return _median_step(timer.ends, warmup)


def _plain_parts(cfg: Any) -> tuple[Any, Any, torch.optim.Optimizer, torch.device]:
    from pathseg.ssl.engine import build_context, build_dataset, method_config

    spec, mcfg = method_config(cfg)
    dataset = build_dataset(spec, mcfg, cfg)
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")
    method = spec.build_model(mcfg, build_context(cfg, cfg.trainer.max_steps)).to(device).train()
    o = cfg.optim
    opt = torch.optim.SGD(list(method.trainable_parameters()), lr=o.lr, momentum=o.momentum,
                          weight_decay=o.weight_decay)
    return dataset, method, opt, device


def _to(batch: Any, device: torch.device) -> Any:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _step(method: Any, opt: torch.optim.Optimizer, batch: Any, step: int, total: int) -> None:
    method.on_step_start(step, total)
    loss = method.training_loss(batch)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def run_plain(cfg: Any, warmup: int) -> float:
    """Median step time of a plain PyTorch loop with the same dataset, method, batch and workers."""
    dataset, method, opt, device = _plain_parts(cfg)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                        num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0,
                        pin_memory=device.type == "cuda")
    ends: list[float] = []
    steps = cfg.trainer.max_steps
    while len(ends) < steps:
        for batch in loader:
            _step(method, opt, _to(batch, device), len(ends), steps)
            _sync(device)
            ends.append(time.perf_counter())
            if len(ends) == steps:
                break
    return _median_step(ends, warmup)


def run_model(cfg: Any, steps: int) -> float:
    """Median step time on one batch loaded (and, for URL, rendered) beforehand: model compute alone."""
    dataset, method, opt, device = _plain_parts(cfg)
    batch = _to(next(iter(DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True))), device)
    renderer = getattr(method, "views", None)
    if "canvas" in batch and renderer is not None:
        batch = renderer(batch)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        _step(method, opt, batch, i, steps + 1)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def end_to_end(args: Any) -> None:
    """Time every contender three ways and print step times and ratios."""
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    names = args.methods.split(",")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise SystemExit(f"error: unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    if "mocov2" not in names:
        names.insert(0, "mocov2")
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="pathseg_e2e_") as tmp:
        for name in names:
            cfg = make_config(name, args, Path(tmp) / name)
            rows[name] = {"pathseg": run_pathseg(cfg, args.e2e_warmup), "plain": run_plain(cfg, args.e2e_warmup),
                          "model": run_model(cfg, args.model_steps)}
            print(f"  measured {name}: " + ", ".join(f"{k} {v:.3f} s" for k, v in rows[name].items()), flush=True)
    print(f"device={args.device} backbone={args.backbone} batch={args.batch} crop={args.crop} workers={args.workers} "
          f"threads={torch.get_num_threads()} steps={args.e2e_steps} (median after {args.e2e_warmup}) data={args.data}")
    print(f"  {'method':12s} {'pathseg s/step':>14s} {'plain s/step':>13s} {'model s/step':>13s} "
          f"{'vs MoCo v2':>10s} {'vs plain':>9s} {'data+engine':>11s}")
    base = rows["mocov2"]["pathseg"]
    for name, r in rows.items():
        print(f"  {name:12s} {r['pathseg']:14.3f} {r['plain']:13.3f} {r['model']:13.3f} {r['pathseg'] / base:9.2f}x "
              f"{r['pathseg'] / r['plain']:8.2f}x {r['pathseg'] / r['model']:10.2f}x")
    print("vs MoCo v2: pathseg step / MoCo v2's pathseg step (goal for dense methods <= 1.5x); vs plain: pathseg "
          "pretrain / the plain loop; data+engine: pathseg step / model-only step")
