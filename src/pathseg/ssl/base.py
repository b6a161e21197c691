"""Base class of pretraining methods, projection heads, queues and cross-rank gathering."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn


def is_distributed() -> bool:
    """Whether a torch.distributed process group with more than one rank is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def gather_nograd(x: Tensor) -> Tensor:
    """Concatenate ``x`` (``[N, ...]``, same N on every rank) over all ranks in rank order, without gradient."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, 0)


def gather_with_grad(x: Tensor) -> Tensor:
    """Like :func:`gather_nograd`, but gradients flow back to every rank's ``x`` (for in-batch negatives)."""
    if not is_distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), 0)


class SSLMethod(nn.Module):
    """Base class of a pretraining method: backbone + heads + loss, trained by :class:`pathseg.ssl.module.SSLModule`.

    Subclasses set ``self.backbone`` (a timm encoder created with ``num_classes=0``; it is what ``pathseg export``
    writes) and ``self.timm_name``, and implement :meth:`training_loss`.
    """

    backbone: nn.Module
    timm_name: str
    #: ``True`` for methods that run their own optimisers (GANs): they implement :meth:`build_optimizers` and
    #: :meth:`manual_step` instead of :meth:`training_loss`.
    manual_optimization: bool = False

    def build_optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """The optimisers of a manual-optimisation method (checkpointed by Lightning)."""
        raise NotImplementedError

    def manual_step(self, batch: dict[str, Any], optimizers: list[torch.optim.Optimizer], step: int,
                    backward: Any) -> dict[str, Tensor]:
        """One update of a manual-optimisation method; ``backward(loss)`` is Lightning's AMP-safe backward.

        The method zeroes, steps and schedules its optimisers itself; the returned losses are logged (``"loss"``).
        """
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Called at the start of every training epoch with its 0-based index."""

    def training_loss(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Losses of one batch; ``"loss"`` is optimised, every entry is logged as ``train/<key>``."""
        raise NotImplementedError

    def on_step_start(self, step: int, max_steps: int) -> None:
        """Called once per optimiser step, before the step's first forward (momentum updates go here)."""

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters given to the optimiser (default: all with ``requires_grad``)."""
        return (p for p in self.parameters() if p.requires_grad)

    def export_state(self) -> dict[str, Tensor]:
        """The backbone's state dict, as exported (keys of ``timm.create_model(name, num_classes=0)``)."""
        return {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` (the momentum / key encoder)."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """``target = m * target + (1 - m) * source`` for parameters.

    As in MoCo's reference implementation, buffers (BatchNorm statistics) are not copied: the key encoder keeps the
    statistics of its own forward passes.
    """
    for pt, ps in zip(target.parameters(), source.parameters()):
        pt.mul_(momentum).add_(ps.detach(), alpha=1.0 - momentum)


HeadInit = Literal["default", "kaiming"]


def init_linear_layers(module: nn.Module, init: HeadInit) -> None:
    """Initialise the ``nn.Linear`` layers of ``module`` as an original implementation did.

    ``default``: PyTorch's own initialisation (weights and biases ~ U(±1/√fan_in)), what MoCo v2's head gets
    (``moco/builder.py`` builds plain ``nn.Linear`` layers and never re-initialises them). ``kaiming``: weights
    ~ N(0, 2 / fan_in) (Kaiming normal, fan-in, ReLU gain) and zero biases, what DenseCL's neck gets
    (``DenseCL.init_weights`` → ``_init_weights(init_linear='kaiming')`` in ``openselfsup/models/necks.py``,
    mmcv ``kaiming_init(mode='fan_in')``); that function leaves convolutions at PyTorch's default.
    """
    if init == "default":
        return
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class MLPHead(nn.Sequential):
    """MoCo v2 projection head: ``Linear(in, hidden) → ReLU → Linear(hidden, out)``.

    Args:
        in_dim: Input features (the backbone's ``num_features``).
        hidden_dim: Hidden width (MoCo v2: equal to ``in_dim``, e.g. 2048 for ResNet-50).
        out_dim: Embedding size (128).
        init: Initialisation of the linear layers (see :func:`init_linear_layers`; MoCo v2: ``default``,
            DenseCL: ``kaiming``).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, init: HeadInit = "default") -> None:
        super().__init__(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))
        init_linear_layers(self, init)


class ConvHead(nn.Sequential):
    """DenseCL dense projection head: ``Conv1x1(in, hidden) → ReLU → Conv1x1(hidden, out)`` on ``[N, C, H, W]``.

    The convolutions keep PyTorch's default initialisation, as in DenseCL's ``DenseCLNeck`` (its ``init_weights``
    only re-initialises linear and normalisation layers).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(nn.Conv2d(in_dim, hidden_dim, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden_dim, out_dim, 1))


class Queue(nn.Module):
    """A FIFO queue of L2-normalised embeddings ``[size, dim]`` kept as buffers (saved in checkpoints).

    Args:
        size: Number of entries (MoCo: 65,536).
        dim: Embedding size.
    """

    queue: Tensor
    ptr: Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("queue", nn.functional.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Replace the oldest entries by ``keys`` ``[B, dim]`` (already gathered over ranks), wrapping around."""
        keys = keys.detach().to(self.queue.dtype)
        size = self.queue.shape[0]
        n = keys.shape[0]
        if n >= size:
            self.queue.copy_(keys[-size:])
            self.ptr.zero_()
            return
        start = int(self.ptr)
        idx = (torch.arange(n, device=keys.device) + start) % size
        self.queue[idx] = keys
        self.ptr.fill_((start + n) % size)
