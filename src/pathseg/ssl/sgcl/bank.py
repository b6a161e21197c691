"""NPID memory banks and a generator whose state lives in a buffer (saved in checkpoints: exact resume).

Memory bank of Wu et al. (NPID, CVPR 2018) as used by SGCL: every row starts as a random Gaussian vector,
L2-normalised, and is updated as ``row ← ℓ2(m·row + (1 − m)·ℓ2(new))`` (SGCL: m = 0.5) for every sample of the
all-gathered global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BufferedGenerator(nn.Module):
    """A CPU ``torch.Generator`` whose state is the buffer ``state`` (so ``state_dict`` captures and restores it).

    Draws happen on the CPU and are moved to the requested device, so results do not depend on the accelerator.

    Args:
        seed: Initial seed.
    """

    state: Tensor

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.register_buffer("state", torch.Generator().manual_seed(int(seed)).get_state())

    def _generator(self) -> torch.Generator:
        g = torch.Generator()
        g.set_state(self.state.detach().cpu())
        return g

    def _commit(self, g: torch.Generator) -> None:
        self.state.copy_(g.get_state())

    def randint(self, high: int, size: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
        """Uniform integers in ``[0, high)`` (with replacement)."""
        g = self._generator()
        out = torch.randint(high, size, generator=g)
        self._commit(g)
        return out.to(device)

    def multinomial(self, probs: Tensor, k: int, device: torch.device | str = "cpu") -> Tensor:
        """``k`` distinct indices drawn with probabilities ``probs`` (CPU)."""
        g = self._generator()
        out = torch.multinomial(probs.detach().cpu().float(), k, replacement=False, generator=g)
        self._commit(g)
        return out.to(device)

    def seed(self) -> int:
        """A 63-bit seed drawn from the generator (for sub-computations such as k-means)."""
        return int(self.randint(2**62, (1,))[0])


class MemoryBank(nn.Module):
    """``N × D`` bank of L2-normalised features (a buffer, no gradient) with the NPID momentum update.

    Args:
        length: Entries N.
        dim: Feature size D.
        momentum: Weight of the old row in the update (SGCL: 0.5).
        generator: Generator of the random initial rows.
    """

    bank: Tensor

    def __init__(self, length: int, dim: int, momentum: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("bank", F.normalize(torch.randn(length, dim, generator=generator), dim=1))

    @torch.no_grad()
    def update(self, index: Tensor, features: Tensor) -> None:
        """``bank[index] ← ℓ2(m·bank[index] + (1 − m)·ℓ2(features))`` (index already gathered over ranks)."""
        new = F.normalize(features.detach().to(self.bank.dtype), dim=1)
        index = index.to(self.bank.device).long()
        mixed = self.momentum * self.bank[index] + (1 - self.momentum) * new
        self.bank[index] = F.normalize(mixed, dim=1)
