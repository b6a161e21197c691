"""The SGCL method: memory banks, own RNG (exact resume), per-epoch k-means, loss composition and size checks."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from pathseg.errors import ConfigError
from pathseg.ssl.sgcl.bank import BufferedGenerator, MemoryBank
from pathseg.ssl.sgcl.config import SGCLConfig, check_sizes
from pathseg.ssl.sgcl.losses import instance_nce, rampup_weight
from pathseg.ssl.sgcl.method import SGCL
from pathseg.ssl.sgcl.semantic import kmeans
from ssl_helpers import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)
B, K, NEI = 4, 8, 3


def _model(seed: int = 0, **kw: object) -> SGCL:
    rr, cc = torch.meshgrid(torch.arange(5), torch.arange(4), indexing="ij")
    xy = torch.stack([rr.reshape(-1), cc.reshape(-1)], 1).repeat(2, 1).float()  # two 5 x 4 slides
    slide = torch.arange(2).repeat_interleave(20)
    args: dict = dict(seed=seed, num_negatives=K, nei_k=NEI, kmeans_k=3, kmeans_iters=3, hidden_dim=16, proj_dim=8)
    args.update(kw)
    return SGCL("resnet18", slide, xy, **args)  # type: ignore[arg-type]


def _batch(model: SGCL, idx: list[int], seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    index = torch.tensor(idx)
    return {"global": torch.randn(len(idx), 3, 32, 32, generator=g),
            "local": torch.randn(len(idx), 4, 3, 16, 16, generator=g),
            "index": index, "slide": model.bank_slide[index], "pos": model.bank_xy[index]}


def test_memory_bank_update_formula() -> None:
    bank = MemoryBank(3, 2, momentum=0.5, generator=torch.Generator().manual_seed(0))
    old = bank.bank.clone()
    assert torch.allclose(old.norm(dim=1), torch.ones(3))
    bank.update(torch.tensor([2]), torch.tensor([[3.0, 4.0]]))
    mixed = 0.5 * old[2] + 0.5 * torch.tensor([0.6, 0.8])
    assert torch.allclose(bank.bank[2], mixed / mixed.norm()) and torch.equal(bank.bank[:2], old[:2])


def test_generator_state_is_a_buffer() -> None:
    a = BufferedGenerator(5)
    a.randint(10, (3,))
    b = BufferedGenerator(99)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.randint(1000, (20,)), b.randint(1000, (20,)))
    assert not torch.equal(a.randint(1000, (20,)), BufferedGenerator(5).randint(1000, (20,)))


def test_resume_is_exact() -> None:
    a = _model()
    a.on_epoch_start(0)
    a.training_loss(_batch(a, [0, 5, 21, 30], 1))
    b = _model(seed=7)  # other random banks and generator state: all of it must come from the checkpoint
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    b.on_epoch_start(0)
    batch = _batch(a, [3, 9, 22, 39], 2)
    la, lb = a.training_loss(batch), b.training_loss(batch)
    for key in ("loss", "loss_ir", "loss_sp", "loss_mc"):
        assert torch.equal(la[key], lb[key]), key
    assert torch.equal(a.bank_global.bank, b.bank_global.bank) and torch.equal(a.rng.state, b.rng.state)


def test_loss_terms_against_an_independent_computation() -> None:
    m = _model(semantic=False)
    m.on_epoch_start(4)
    batch = _batch(m, [1, 6, 20, 27], 3)
    v, locs = m.bank_global.bank.clone(), [b.bank.clone() for b in m.bank_local]  # type: ignore[union-attr]
    g = torch.Generator()
    g.set_state(m.rng.state.clone())
    torch.multinomial(m.rank_pdf, NEI, replacement=False, generator=g)  # the step's rank draw comes first
    rand = torch.randint(40, (B, K), generator=g)
    out = m.training_loss(batch)
    with torch.no_grad():
        z = F.normalize(m.head(m.backbone(batch["global"])), dim=1)
        loc = batch["local"].transpose(0, 1).reshape(-1, 3, 16, 16)
        zl = F.normalize(m.head(m.backbone(loc)), dim=1)
    ir = sum(-torch.log_softmax(torch.stack([z[i] @ v[j] for j in [int(batch["index"][i]), *rand[i].tolist()]]) / 0.2,
                                0)[0] for i in range(B)) / B
    assert float(out["loss_ir"]) == pytest.approx(float(ir), rel=1e-4)
    flat, mc = rand.reshape(-1), 0.0
    for r in range(4 * B):
        s, i = divmod(r, B)
        negs = [zl[r] @ locs[q][j] for q in range(4) for j in flat[r * K // 4:(r + 1) * K // 4].tolist()]
        logits = torch.stack([zl[r] @ locs[s][int(batch["index"][i])], *negs]) / 0.2
        mc += float(-torch.log_softmax(logits, 0)[0])
    assert float(out["loss_mc"]) == pytest.approx(mc / (4 * B), rel=1e-4)
    w = rampup_weight(4, 10)
    total = float(out["loss_ir"] + w * out["loss_sp"] + out["loss_mc"])
    assert float(out["loss"].detach()) == pytest.approx(total, rel=1e-6)
    # 5 x 4 grids, δ = 3 (5 x 5 window): (0,1) -> 3x4-1, (1,2) -> 4x4-1, (0,0) -> 3x3-1, (1,3) -> 4x3-1
    assert float(out["spatial_pos"]) == pytest.approx((11 + 15 + 8 + 11) / 4)
    assert float(instance_nce(torch.ones(1), torch.zeros(1, 1))) > 0


def test_banks_are_updated_with_the_batch() -> None:
    m = _model()
    batch = _batch(m, [2, 4, 25, 33], 4)
    old = m.bank_global.bank.clone()
    m.training_loss(batch)
    with torch.no_grad():
        z = F.normalize(m.head(m.backbone(batch["global"])), dim=1)
    expect = F.normalize(0.5 * old[[2, 4, 25, 33]] + 0.5 * z, dim=1)
    assert torch.allclose(m.bank_global.bank[[2, 4, 25, 33]], expect, atol=1e-5)
    assert torch.equal(m.bank_global.bank[0], old[0])


def test_kmeans_once_per_epoch_and_epoch_fallback() -> None:
    m = _model()
    m.on_step_start(0, 100)
    assert m.epoch(B) == 0
    m.on_step_start(25, 100)  # no on_epoch_start: 40 tiles / batch 4 = 10 steps per epoch
    assert m.epoch(B) == 2
    m.on_epoch_start(1)
    assert m.epoch(B) == 1
    bank = m.bank_global.bank.clone()
    m.training_loss(_batch(m, [0, 1, 2, 3]))
    assert int(m.clustered_epoch) == 1
    expect = torch.stack([kmeans(bank, 3, 3, (0 * 1_000_003 + 1) * 7 + r) for r in range(3)])
    assert torch.equal(m.labels, expect)
    labels = m.labels.clone()
    m.training_loss(_batch(m, [4, 5, 6, 7]))  # same epoch: no new clustering although the bank changed
    assert torch.equal(m.labels, labels)


def test_size_checks() -> None:
    check_sizes(SGCLConfig(), 30_000)
    with pytest.raises(ConfigError, match="nei_k"):
        check_sizes(SGCLConfig(), 10_000)
    with pytest.raises(ConfigError, match="kmeans_k"):
        check_sizes(SGCLConfig(nei_k=10), 500)
    check_sizes(SGCLConfig(nei_k=10, semantic=False), 500)
    with pytest.raises(ConfigError, match="num_negatives"):
        SGCLConfig(num_negatives=10).validate()
