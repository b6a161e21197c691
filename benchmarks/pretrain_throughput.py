"""Training throughput of pathseg's MoCo v2 step against a plain reference MoCo v2 step, and DenseCL's cost.

With ``--end-to-end``: ``pathseg pretrain`` with data loading for MoCo v2, DenseCL, URL stage 1 and PLM against a
plain PyTorch loop with the same dataset, model, recipe, batch and workers (``benchmarks/pretrain_e2e.py``).

Same backbone, batch, crop and pre-augmented views for all (augmentation is outside the timing). The reference is
a straightforward re-implementation of the official MoCo v2 step (query/key encoders with an MLP ``fc``, a queue
buffer, momentum update, einsum logits, cross-entropy, SGD). Rounds of the contenders are interleaved and the
median per-step time is reported, which keeps the comparison fair on a busy machine.

Example::

    python benchmarks/pretrain_throughput.py --device cpu --backbone resnet18 --batch 16 --crop 64 --threads 1
    python benchmarks/pretrain_throughput.py --device cuda --backbone resnet50 --batch 64 --crop 224 --amp \
        --channels-last
    python benchmarks/pretrain_throughput.py --end-to-end --data GLAS_CANONICAL --splits train,testA \
        --crop 96 --batch 8 --workers 1 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn


class ReferenceMoCo(nn.Module):
    """Plain MoCo v2 (after facebookresearch/moco ``builder.py``), single process."""

    def __init__(self, backbone: str, dim: int = 128, k: int = 65536, m: float = 0.999, t: float = 0.2) -> None:
        super().__init__()
        self.k, self.m, self.t = k, m, t
        self.encoder_q = timm.create_model(backbone, pretrained=False, num_classes=0)
        feat = self.encoder_q.num_features
        self.fc_q = nn.Sequential(nn.Linear(feat, feat), nn.ReLU(), nn.Linear(feat, dim))
        self.encoder_k, self.fc_k = copy.deepcopy(self.encoder_q), copy.deepcopy(self.fc_q)
        for p in list(self.encoder_k.parameters()) + list(self.fc_k.parameters()):
            p.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, k), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update_key_encoder(self) -> None:
        for q, k in ((self.encoder_q, self.encoder_k), (self.fc_q, self.fc_k)):
            for pq, pk in zip(q.parameters(), k.parameters()):
                pk.data = pk.data * self.m + pq.data * (1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        n = keys.shape[0]
        ptr = int(self.queue_ptr)
        end = min(ptr + n, self.k)
        self.queue[:, ptr:end] = keys[: end - ptr].T
        self.queue_ptr[0] = end % self.k

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor) -> torch.Tensor:
        q = F.normalize(self.fc_q(self.encoder_q(im_q)), dim=1)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            k = F.normalize(self.fc_k(self.encoder_k(im_k)), dim=1)
        l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", q, self.queue.clone().detach())
        logits = torch.cat([l_pos, l_neg], dim=1) / self.t
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        self._dequeue_and_enqueue(k)
        return F.cross_entropy(logits.float(), labels)


def _step_fn(model: nn.Module, kind: str, args: argparse.Namespace, views: list[torch.Tensor]) -> Callable[[], None]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.03, momentum=0.9, weight_decay=1e-4)
    device = torch.device(args.device)
    use_scaler = args.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    state = {"step": 0}

    def step() -> None:
        ctx: Any = torch.autocast(device.type, dtype=dtype) if args.amp else contextlib.nullcontext()
        with ctx:
            if kind == "reference":
                loss = model(views[0], views[1])
            else:
                model.on_step_start(state["step"], 1)  # type: ignore[operator]
                loss = model.training_loss({"view1": views[0], "view2": views[1]})["loss"]  # type: ignore[operator]
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        state["step"] += 1

    return step


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    """Parse arguments, time the contenders, print images/s and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--queue", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--amp", action="store_true", help="autocast (fp16 on CUDA with GradScaler, bf16 on CPU)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave)")
    ap.add_argument("--no-densecl", action="store_true")
    e2e = ap.add_argument_group("end-to-end mode")
    e2e.add_argument("--end-to-end", action="store_true", help="pathseg pretrain vs a plain loop, with data loading")
    e2e.add_argument("--data", default="", help="canonical data set directory (pathseg data convert glas ...)")
    e2e.add_argument("--splits", default="train,testA", help="splits to read (comma-separated; empty: all)")
    e2e.add_argument("--workers", type=int, default=1)
    e2e.add_argument("--methods", default="mocov2,densecl,url,plm",
                     help="comma-separated: mocov2, densecl, url (stage 1, batched views), url-workers, plm")
    e2e.add_argument("--e2e-steps", type=int, default=14, help="optimiser steps per run")
    e2e.add_argument("--e2e-warmup", type=int, default=3, help="first steps left out of the median")
    e2e.add_argument("--model-steps", type=int, default=4, help="steps of the model-only timing")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.end_to_end:
        from pretrain_e2e import end_to_end

        args.splits = [s for s in args.splits.split(",") if s]
        end_to_end(args)
        return
    from pathseg.data.augment import ViewConfig, two_views
    from pathseg.ssl.densecl import DenseCL
    from pathseg.ssl.mocov2 import MoCoV2

    # augmentation outside the timing: one batch of two views, reused
    torch.manual_seed(0)
    aug = two_views(ViewConfig(), args.crop, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    images = (torch.rand(args.batch, args.crop * 2, args.crop * 2, 3) * 255).to(torch.uint8).numpy()
    pairs = [aug(img) for img in images]
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    views = [torch.stack([p[f"view{i}"] for p in pairs]).to(args.device).contiguous(memory_format=fmt)
             for i in (1, 2)]

    contenders: dict[str, tuple[nn.Module, str]] = {}
    torch.manual_seed(0)
    contenders["reference MoCo v2"] = (ReferenceMoCo(args.backbone, k=args.queue), "reference")
    torch.manual_seed(0)
    contenders["pathseg MoCo v2"] = (MoCoV2(args.backbone, queue_size=args.queue), "pathseg")
    if not args.no_densecl:
        torch.manual_seed(0)
        contenders["pathseg DenseCL"] = (DenseCL(args.backbone, queue_size=args.queue), "pathseg")
    steps = {}
    for name, (model, kind) in contenders.items():
        model.to(args.device).to(memory_format=fmt).train()
        steps[name] = _step_fn(model, kind, args, views)
        for _ in range(args.warmup):
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, step in steps.items():
            _sync(args.device)
            for _ in range(args.steps):
                t0 = time.perf_counter()
                step()
                _sync(args.device)
                times[name].append(time.perf_counter() - t0)
    print(f"device={args.device} backbone={args.backbone} batch={args.batch} crop={args.crop} queue={args.queue} "
          f"amp={args.amp} channels_last={args.channels_last} threads={torch.get_num_threads()} "
          f"steps={args.rounds}x{args.steps} (median per step)")
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, t in med.items():
        print(f"  {name:20s} {t * 1000:9.1f} ms/step  {args.batch / t:9.1f} images/s")
    ratio = med["reference MoCo v2"] / med["pathseg MoCo v2"]
    print(f"pathseg MoCo v2 / reference throughput: {ratio:.3f}x (goal >= 0.95x)")
    if "pathseg DenseCL" in med:
        print(f"DenseCL / MoCo v2 cost per step: {med['pathseg DenseCL'] / med['pathseg MoCo v2']:.3f}x (goal <= 1.3x)")


if __name__ == "__main__":
    main()
