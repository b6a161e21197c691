"""SGCL losses against loop implementations of the spec's formulas (§1.6, §1.2), and the ramp-up values."""

from __future__ import annotations

import math

import pytest
import torch

from pathseg.ssl.sgcl import instance_nce, merged_positive_loss, rampup_weight


def _case(seed: int = 0, b: int = 6, n: int = 40, k: int = 9) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sims = torch.rand(b, n, generator=g, dtype=torch.float64) * 2 - 1
    pos = torch.rand(b, n, generator=g) < 0.15
    pos[0] = False  # an anchor without positives
    pos[1, :] = False
    pos[1, 3] = True  # a single positive
    neg = torch.rand(b, k, generator=g, dtype=torch.float64) * 2 - 1
    return sims, pos, neg


def _loop_clean(sims: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, t: float) -> float:
    terms = []
    for i in range(sims.shape[0]):
        p = [math.exp(float(sims[i, j]) / t) for j in range(sims.shape[1]) if pos[i, j]]
        if not p:
            continue
        hn = sum(math.exp(float(v) / t) for v in neg[i])
        terms.append(-math.log(sum(p) / (sum(p) + hn)))
    return sum(terms) / len(terms)


def _loop_parity(sims: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, t: float) -> float:
    total = 0.0
    b, n = sims.shape
    for i in range(b):
        num = sum(math.exp(float(sims[i, j]) / t) for j in range(n) if pos[i, j])
        n_pos = sum(int(pos[i, j]) for j in range(n))
        den = num + (n - n_pos) * 1.0 + sum(math.exp(float(v) / t) for v in neg[i])  # Q1: e^0 per other column
        total += -math.log(num / den + 1e-7)
    return total / b


@pytest.mark.parametrize("t", [0.07, 0.2])
def test_merged_loss_default_matches_loop(t: float) -> None:
    sims, pos, neg = _case()
    got = merged_positive_loss(sims, pos, neg, temperature=t)
    assert float(got) == pytest.approx(_loop_clean(sims, pos, neg, t), rel=1e-10)


@pytest.mark.parametrize("t", [0.07, 0.5])
def test_merged_loss_parity_matches_loop(t: float) -> None:
    sims, pos, neg = _case(1)
    got = merged_positive_loss(sims, pos, neg, temperature=t, parity=True)
    assert float(got) == pytest.approx(_loop_parity(sims, pos, neg, t), rel=1e-10)
    only_empty = merged_positive_loss(sims[:1], pos[:1], neg[:1], t, parity=True)
    assert float(only_empty) == pytest.approx(-math.log(1e-7))  # 16.12: an isolated tile


def test_fp32_does_not_overflow_and_empty_batch_is_zero() -> None:
    sims = torch.ones(2, 5)
    pos = torch.tensor([[True, False, False, False, False], [False] * 5])
    neg = torch.ones(2, 3)
    got = merged_positive_loss(sims.half(), pos, neg.half(), 0.07)  # e^{1/0.07} = 1.6e6 > fp16 max
    assert float(got) == pytest.approx(math.log(4.0), abs=1e-2)  # fp16 resolution of logits ~14
    zero = merged_positive_loss(sims.requires_grad_(), torch.zeros(2, 5, dtype=torch.bool), neg)
    assert float(zero.detach()) == 0.0 and zero.requires_grad


def test_unused_negative_slots() -> None:
    sims, pos, neg = _case(2)
    neg_inf = torch.cat([neg, torch.full((neg.shape[0], 4), float("-inf"), dtype=neg.dtype)], 1)
    assert float(merged_positive_loss(sims, pos, neg_inf)) == pytest.approx(float(merged_positive_loss(sims, pos, neg)))


@pytest.mark.parametrize("parity", [False, True])
def test_q2_detached_negatives_option(parity: bool) -> None:
    sims, pos, neg = _case(3)
    neg = neg.clone().requires_grad_()
    s = sims.clone().requires_grad_()
    merged_positive_loss(s, pos, neg, parity=parity).backward()
    assert neg.grad is None and s.grad is not None  # default: as the reference, L_SP only pulls positives
    merged_positive_loss(s, pos, neg, parity=parity, detach_negatives=False).backward()
    assert neg.grad is not None and bool((neg.grad[2:] > 0).all())  # pushing negatives away lowers the loss


def test_instance_nce_matches_loop() -> None:
    g = torch.Generator().manual_seed(4)
    pos, neg = torch.rand(5, generator=g, dtype=torch.float64), torch.rand(5, 7, generator=g, dtype=torch.float64)
    expect = 0.0
    for i in range(5):
        logits = [float(pos[i]) / 0.2] + [float(v) / 0.2 for v in neg[i]]
        expect += -logits[0] + math.log(sum(math.exp(v) for v in logits))
    assert float(instance_nce(pos, neg, 0.2)) == pytest.approx(expect / 5, rel=1e-10)


def test_rampup_values() -> None:
    assert rampup_weight(0) == pytest.approx(0.0067, abs=5e-5)
    assert rampup_weight(5) == pytest.approx(0.2865, abs=5e-5)
    assert rampup_weight(10) == 1.0 and rampup_weight(37) == 1.0
    assert rampup_weight(3, length=0) == 1.0
