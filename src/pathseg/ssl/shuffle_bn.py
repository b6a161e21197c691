"""Shuffling BatchNorm for momentum-encoder keys (He et al., "Momentum Contrast", CVPR 2020, §3.3).

With BatchNorm, a query and its positive key that are normalised with the statistics of the *same* set of samples
share a "batch signature" that the queue's negatives (older batches) lack; the model can find the positive
through it instead of learning good features. MoCo shuffles the key batch across GPUs before the key encoder and
restores the order afterwards, so that a key is normalised with other samples than its query.

* **Under DDP** (:func:`pathseg.ssl.base.is_distributed`) this is MoCo's ``_batch_shuffle_ddp`` /
  ``_batch_unshuffle_ddp``: the key images of all ranks are gathered, rank 0 draws a permutation of the global
  batch that it broadcasts, every rank forwards its share of the permuted batch (its own BatchNorm statistics),
  the outputs are gathered and every rank takes back the rows of its own samples. ``groups`` is ignored: each
  rank is one group.
* **In one process** the ranks are emulated: the batch of ``N`` is seen as ``G`` *virtual devices* of
  ``s = N / G`` consecutive samples (what DDP with ``G`` ranks would give each rank, and the query batch of
  each). A permutation of the ``N`` samples is drawn, its ``G`` consecutive blocks of ``s`` are forwarded one by
  one (``fn`` is called ``G`` times: every block gets its own BatchNorm statistics), and the outputs are put back
  in the original order.

Both paths draw the permutation with :func:`shuffle_permutation`: ``torch.randperm`` (from ``generator`` when one
is given — :func:`step_generator` makes the draw depend on the run seed and step only, so that a resumed run
shuffles as the uninterrupted one; else torch's global RNG, as MoCo) followed by a repair that guarantees **no key
block holds exactly the samples of one virtual device**: if a block of the permuted order equals a device's samples
(as a set), its first entry is swapped with the first entry of the next block (cyclically). For ``s >= 2`` the
repaired block holds samples of two devices and the next block cannot become a device either, so after one pass
over the blocks every key is normalised with a sample set that differs from its query's device. (MoCo's own random
permutation leaves a key with exactly its query's sub-batch with probability ``G / C(N, s)``, e.g. 1/3 for 2 ranks
of 2 samples.)

``G`` is capped so that every block has at least two samples and divides ``N``: the largest divisor of ``N``
that is ``<= groups`` and ``<= N / 2``. With ``G < 2`` (no such divisor: 1, 2, 3, 5, 7, … samples; or
``groups <= 1``) the keys are forwarded as one batch. In one process the *query* batch keeps one forward over
all ``N`` samples (its statistics span every virtual device); only the keys are split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from pathseg.ssl.base import gather_nograd, is_distributed


def effective_groups(n: int, groups: int) -> int:
    """The number of key blocks used for a batch of ``n``: the largest divisor of ``n`` that is at most
    ``groups`` and leaves at least two samples per block (1: no split)."""
    for g in range(min(groups, n // 2), 1, -1):
        if n % g == 0:
            return g
    return 1


def _is_device(block: Tensor, size: int) -> bool:
    """Whether the sample indices ``block`` are exactly one virtual device ``{d·size, …, d·size + size − 1}``."""
    dev = block // size
    return bool((dev == dev[0]).all())


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator for the shuffle of optimiser step ``step`` of a run seeded with ``seed``."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63))


def shuffle_permutation(n: int, groups: int, device: torch.device | str = "cpu",
                        generator: torch.Generator | None = None) -> Tensor:
    """A random permutation of ``n`` samples whose ``groups`` consecutive blocks are no virtual device.

    Block ``k`` of the result (entries ``k·s … k·s + s − 1``, ``s = n / groups``) lists the samples forwarded
    together; see the module docstring for the repair rule. ``groups`` must divide ``n``. ``generator`` (a CPU
    generator) replaces torch's global RNG.
    """
    if generator is not None:
        perm = torch.randperm(n, generator=generator).to(device)
    else:
        perm = torch.randperm(n, device=device)
    if groups < 2 or n % groups or n // groups < 2:
        return perm
    size = n // groups
    for k in range(groups):
        if _is_device(perm[k * size:(k + 1) * size], size):
            a, b = k * size, ((k + 1) % groups) * size
            perm[[a, b]] = perm[[b, a]]
    return perm


def shuffled_key_forward(fn: Callable[[Tensor], Tensor], x: Tensor, groups: int,
                         generator: torch.Generator | None = None) -> Tensor:
    """``fn(x)`` computed with shuffled BatchNorm batches, rows in the order of ``x`` (no gradient).

    Args:
        fn: The key encoder (``[N, ...] → [N, ...]``, each output row from its own input row, apart from the
            BatchNorm statistics).
        x: Key images ``[N, ...]`` (under DDP: this rank's, the same ``N`` on every rank).
        groups: Virtual devices in one process (see :func:`effective_groups`); ignored under DDP.
        generator: CPU generator of the permutation (e.g. :func:`step_generator`; default: torch's global RNG).
            Under DDP only rank 0's draw is used.

    Returns:
        ``[N, ...]``: row ``i`` is the output of sample ``i``.
    """
    return shuffled_key_forward_many(lambda t: (fn(t),), x, groups, generator)[0]


def shuffled_key_forward_many(fn: Callable[[Tensor], Sequence[Tensor]], x: Tensor, groups: int,
                              generator: torch.Generator | None = None) -> tuple[Tensor, ...]:
    """:func:`shuffled_key_forward` for an ``fn`` returning several per-sample tensors (DenseCL's global, dense
    and backbone outputs); each is put back in the order of ``x``."""
    with torch.no_grad():
        if is_distributed():
            return _ddp(fn, x, generator)
        return _one_process(fn, x, groups, generator)


def _one_process(fn: Callable[[Tensor], Sequence[Tensor]], x: Tensor, groups: int,
                 generator: torch.Generator | None) -> tuple[Tensor, ...]:
    n = x.shape[0]
    g = effective_groups(n, groups)
    if g < 2:
        return tuple(fn(x))
    perm = shuffle_permutation(n, g, x.device, generator)
    outs = [tuple(fn(x[block])) for block in perm.view(g, -1)]
    unshuffle = torch.argsort(perm)
    return tuple(torch.cat([o[j] for o in outs], 0)[unshuffle] for j in range(len(outs[0])))


def _ddp(fn: Callable[[Tensor], Sequence[Tensor]], x: Tensor, generator: torch.Generator | None
         ) -> tuple[Tensor, ...]:
    n = x.shape[0]
    world, rank = dist.get_world_size(), dist.get_rank()
    x_all = gather_nograd(x)
    perm = shuffle_permutation(n * world, world, x.device, generator)
    dist.broadcast(perm, src=0)
    mine = perm.view(world, n)[rank]
    outs = fn(x_all[mine])
    unshuffle = torch.argsort(perm).view(world, n)[rank]
    return tuple(gather_nograd(o)[unshuffle] for o in outs)
