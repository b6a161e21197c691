"""UNIT as a manual-optimisation method of the pretraining engine (Song et al., IEEE TMI 2024, §2.3 of the spec).

One step: ``ŷ = G(x, z)``, ``x̂ = S(y)``, ``x_rec, inst = S(ŷ)`` (one backbone pass: cycle + instance guidance; the
Mask R-CNN guidance reads S's FPN of that pass), ``y_rec = G(x̂, z')``; ``L_GS``
(:func:`pathseg.ssl.unit.losses.combine`) is back-propagated with the discriminators frozen; then the discriminator
losses on detached fakes (+ lazy R1) are back-propagated, and a single Adam step (per-group lr/betas) updates
everything. Because the fakes are detached and D's parameters get no gradient from ``L_GS``, this equals the
alternating G/S-then-D update of the legacy loop. Then ADA's ``p`` and G's EMA are updated. Stage 2 re-initialises S
and trains S + D_S against the frozen stage-1 G (its EMA weights).

The step's own randomness (z, noise inputs, ADA) is drawn from torch's RNG seeded by ``(seed, rank, step)`` inside a
forked RNG, so a run resumed from a checkpoint repeats exactly the draws an uninterrupted run makes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from pathseg.errors import PathsegError
from pathseg.ssl.base import SSLMethod, ema_update, is_distributed, momentum_copy
from pathseg.ssl.unit import losses as L
from pathseg.ssl.unit.discriminators import AdaptiveAugment, PatchDiscriminator, StyleDiscriminator, r1_penalty
from pathseg.ssl.unit.guidance import MaskRCNNBranch
from pathseg.ssl.unit.segmenter import Segmenter

log = logging.getLogger(__name__)


def generator_state(path: str | Path) -> dict[str, Tensor]:
    """G's EMA weights from a stage-1 run directory, Lightning checkpoint or weights file.

    Raises:
        PathsegError: No file, or no ``g_ema.*`` tensors in it.
    """
    from pathseg.models import read_state_dict

    p = Path(path)
    if p.is_dir():
        p = p / "checkpoints" / "last.ckpt"
    state = read_state_dict(p)
    for prefix in ("method.g_ema.", "g_ema."):
        inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if inner:
            return inner
    raise PathsegError("no stage-1 generator ('method.g_ema.*' / 'g_ema.*' tensors) in this file", p)


class UNITMethod(SSLMethod):
    """G, S, D_G, D_S and the UNIT losses of one stage.

    Args:
        backbone: timm CNN of S's trunk (exported).
        stage: ``"1"`` or ``"2"``.
        generator: The G module (``CoModGenerator`` or ``ResNetGenerator``), built by the factory.
        segmenter: S.
        d_g: D_G (stage 1 only; ``None`` in stage 2).
        d_s: D_S.
        weights: λ_adv, λ_cyc, λ_seg.
        guidance: ``maskrcnn``, ``proposal_free`` or ``none`` (written into the export metadata).
        s_adversarial: ``lsgan`` or ``logistic`` for S/D_S.
        r1: ``(γ_G, γ_S, interval)`` of the lazy R1 penalties.
        ada: D_G's adaptive augmentation (``None``: off).
        ada_kimg: Images for ADA's p to move by 1.
        ema_kimg: Half-life of G's EMA in kimg.
        lrs: ``(lr_g, lr_d, lr_ds)``; S uses the engine's lr.
        seg_interval: Apply L_seg every this many steps.
        picture_every: Steps between picture grids (0 = never).
        picture_dir: Where to write them (``None`` = nowhere).
        seed: Run seed of the per-step RNG (see the module docstring).
    """

    manual_optimization = True

    def __init__(self, backbone: str, stage: Literal["1", "2"], generator: nn.Module, segmenter: Segmenter,
                 d_g: StyleDiscriminator | None, d_s: PatchDiscriminator, weights: L.LossWeights,
                 guidance: str = "proposal_free", s_adversarial: str = "lsgan",
                 r1: tuple[float, float, int] = (1.0, 1.0, 16), ada: AdaptiveAugment | None = None,
                 ada_kimg: float = 500.0, ema_kimg: float = 20.0, lrs: tuple[float, float, float] = (2.5e-3,) * 3,
                 seg_interval: int = 1, picture_every: int = 0, picture_dir: Path | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        self.timm_name, self.stage = backbone, stage
        self.g, self.s, self.d_g, self.d_s = generator, segmenter, d_g, d_s
        self.backbone = segmenter.trunk  # registered twice: 'pathseg export' reads method.backbone.*
        self.g_ema = momentum_copy(generator) if stage == "1" else None
        if stage == "2":
            self.g.requires_grad_(False)
        self.weights, self.guidance, self.s_adversarial = weights, guidance, s_adversarial
        self.r1, self.ada, self.ada_kimg, self.ema_kimg, self.lrs = r1, ada, ada_kimg, ema_kimg, lrs
        self.seg_interval, self.picture_every, self.picture_dir = seg_interval, picture_every, picture_dir
        self.seed = seed

    def build_optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """One Adam with groups: S (engine lr, betas 0.5/0.999), G and D_G (StyleGAN2 betas 0/0.99), D_S."""
        lr_g, lr_d, lr_ds = self.lrs
        groups: list[dict[str, Any]] = [
            {"params": list(self.s.parameters()), "lr": lr, "betas": (0.5, 0.999), "weight_decay": weight_decay,
             "name": "s"},
            {"params": list(self.d_s.parameters()), "lr": lr_ds, "betas": (0.5, 0.999), "name": "d_s"}]
        if self.stage == "1":
            assert self.d_g is not None
            groups += [{"params": list(self.g.parameters()), "lr": lr_g, "betas": (0.0, 0.99), "name": "g"},
                       {"params": list(self.d_g.parameters()), "lr": lr_d, "betas": (0.0, 0.99), "name": "d_g"}]
        return [torch.optim.Adam(groups)]

    def _discriminators(self) -> list[nn.Module]:
        return [m for m in (self.d_g, self.d_s) if m is not None]

    def _augment(self, x: Tensor) -> Tensor:
        return self.ada(x) if self.ada is not None else x

    def generator_terms(self, batch: dict[str, Tensor], step: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The terms of L_GS and the images they were computed from (for the D step and the pictures)."""
        x, y = batch["mask"], batch["real"]
        fake_y = self.g(x)
        want_inst = self.guidance != "none" and step % self.seg_interval == 0
        mrcnn: dict[str, Tensor] = {}
        if want_inst and self.guidance == "maskrcnn":
            rec_x, pyramid = self.s.mask_and_pyramid(fake_y)
            assert isinstance(self.s.instance, MaskRCNNBranch)
            mrcnn = self.s.instance.losses(fake_y, pyramid, batch["inst"])
            inst = None
        else:
            rec_x, inst = self.s(fake_y, with_instance=want_inst)
        fake_x, _ = self.s(y)
        rec_y = self.g(fake_x)
        s_gen = L.g_lsgan if self.s_adversarial == "lsgan" else L.g_logistic
        terms = {"adv_s": s_gen(self.d_s(fake_x)), "cyc_x": (rec_x - x).abs().mean(), "cyc_y": (rec_y - y).abs().mean()}
        if self.d_g is not None:
            terms["adv_g"] = L.g_logistic(self.d_g(self._augment(fake_y)))
        if inst is not None:
            terms["seg"] = L.instance_guidance(inst, batch["fg"], batch["dist"])
        if mrcnn:
            terms["seg"] = torch.stack(list(mrcnn.values())).sum()  # the five losses, weight 1 each
            terms.update({f"seg_{k}": v.detach() for k, v in mrcnn.items()})
        return terms, {"x": x, "fake_y": fake_y, "rec_x": rec_x, "y": y, "fake_x": fake_x, "rec_y": rec_y}

    def discriminator_terms(self, images: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        """D_S (and D_G) losses on detached fakes, with lazy R1 every ``r1[2]`` steps."""
        gamma_g, gamma_s, every = self.r1
        lazy = step % every == 0
        x = images["x"].detach().requires_grad_(lazy and gamma_s > 0)
        real_s = self.d_s(x)
        d_s = L.d_lsgan if self.s_adversarial == "lsgan" else L.d_logistic
        out = {"d_s": d_s(real_s, self.d_s(images["fake_x"].detach()))}
        if lazy and gamma_s > 0:
            out["r1_s"] = gamma_s / 2 * every * r1_penalty(real_s, x)
        if self.d_g is not None:
            y = self._augment(images["y"].detach()).detach().requires_grad_(lazy and gamma_g > 0)
            real_g = self.d_g(y)
            out["d_g"] = L.d_logistic(real_g, self.d_g(self._augment(images["fake_y"].detach())))
            if lazy and gamma_g > 0:
                out["r1_g"] = gamma_g / 2 * every * r1_penalty(real_g, y)
            out["real_logit_g"] = real_g.detach().mean()
            if self.ada is not None:
                self.ada.update(real_g)
        return out

    def step_seed(self, step: int) -> int:
        """Seed of the draws of optimiser step ``step`` on this rank."""
        rank = torch.distributed.get_rank() if is_distributed() else 0
        return ((self.seed * 1_000_003 + rank) * 10_000_019 + step) % (2**63 - 1)

    def manual_step(self, batch: dict[str, Any], optimizers: list[torch.optim.Optimizer], step: int,
                    backward: Callable[[Tensor], None]) -> dict[str, Tensor]:
        """One UNIT update (see the module docstring); returns the logged losses (``loss`` = L_GS)."""
        x = batch["mask"]
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.step_seed(step))
            return self._update(batch, optimizers, step, backward)

    def _update(self, batch: dict[str, Any], optimizers: list[torch.optim.Optimizer], step: int,
                backward: Callable[[Tensor], None]) -> dict[str, Tensor]:
        (opt,) = optimizers
        if self.ada is not None and self.ada_kimg > 0:
            self.ada.speed = int(batch["mask"].shape[0]) / (self.ada_kimg * 1000.0)
        opt.zero_grad(set_to_none=True)
        for d in self._discriminators():
            d.requires_grad_(False)
        terms, images = self.generator_terms(batch, step)
        loss = L.combine(terms, self.weights)
        backward(loss)
        for d in self._discriminators():
            d.requires_grad_(True)
        d_terms = self.discriminator_terms(images, step)
        backward(sum(v for k, v in d_terms.items() if not k.startswith("real_")))  # type: ignore[arg-type]
        opt.step()
        self._update_ema(int(batch["mask"].shape[0]))
        if self.picture_every > 0 and self.picture_dir is not None and step % self.picture_every == 0:
            self._write_pictures(images, step)
        logged = {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()},
                  **{k: v.detach() for k, v in d_terms.items()}}
        if self.ada is not None:
            logged["ada_p"] = self.ada.p.detach().clone()
        return logged

    @torch.no_grad()
    def _update_ema(self, batch_size: int) -> None:
        if self.g_ema is not None:
            beta = 0.5 ** (batch_size / max(self.ema_kimg * 1000.0, 1e-8))
            ema_update(self.g_ema, self.g, beta)

    def _write_pictures(self, images: dict[str, Tensor], step: int) -> None:
        if is_distributed() and torch.distributed.get_rank() != 0:
            return
        from pathseg.ssl.unit.pictures import write_grid

        assert self.picture_dir is not None
        write_grid(self.picture_dir / f"step{step:07d}.png", images)

    def export_state(self) -> dict[str, Tensor]:
        """S's trunk under timm keys (``timm.create_model(backbone, num_classes=0)``; GN trunk for resnet50_gn)."""
        return {k: v.detach().clone() for k, v in self.s.trunk.state_dict().items()}

    def export_extra(self) -> dict[str, str]:
        """Metadata naming the choices behind the exported trunk (for the encoder file)."""
        kind = type(self.g).__name__
        return {"unit_stage": self.stage, "unit_guidance": self.guidance, "unit_generator": kind}
