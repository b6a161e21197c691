"""UNIT exact resume: a run killed after k steps and resumed equals an uninterrupted run (all nets, EMA, ADA, Adam)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pathseg.config import load_config
from pathseg.ssl.config import PretrainConfig
from pathseg.ssl.engine import load_method_from_run, pretrain
from ssl_helpers import Killed, make_kill, make_unlabeled, one_thread

_threads = pytest.fixture(autouse=True)(one_thread)

TINY = {"g_width": 2, "g_max_channels": 8, "z_dim": 8, "mapping_layers": 2, "skip_resolution": 32, "fpn_dim": 8,
        "decoder_hidden": [8, 8], "ds_width": 4, "ds_layers": 3, "r1_interval": 2, "picture_every": 0,
        "ada_kimg": 0.01, "ada_target": -2.0, "ema_kimg": 0.01,  # ADA's p rises by 0.2 a step; a fast EMA
        "masks": {"mpp": 0.5}}
PARTS = ("g.", "g_ema.", "s.trunk.", "s.decoder.", "s.instance.", "d_g.", "d_s.", "ada.p")


def _cfg(data: Path, out: Path) -> PretrainConfig:
    return load_config(PretrainConfig, values={
        "method": "unit", "data": str(data), "out": str(out), "backbone": "resnet18", "crop_size": 32,
        "batch_size": 2, "num_workers": 0, "seed": 3, "mean": [0.5] * 3, "std": [0.5] * 3,
        "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.0}, "method_args": TINY,
        "trainer": {"accelerator": "cpu", "max_steps": 5, "deterministic": True, "progress_bar": False,
                    "log_every_n_steps": 1},
        "checkpoint": {"every_n_steps": 1},
    })


def _optimizer_states(run: Path) -> list[dict[str, Any]]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt["optimizer_states"]


def _assert_same_optimizers(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert len(a) == len(b) == 1
    sa, sb = a[0]["state"], b[0]["state"]
    assert set(sa) == set(sb) and len(sa) > 0
    for pid in sa:
        assert set(sa[pid]) == {"step", "exp_avg", "exp_avg_sq"}, sa[pid].keys()
        for key in sa[pid]:
            assert torch.allclose(sa[pid][key].float(), sb[pid][key].float(), atol=1e-6), (pid, key)
    assert [g["name"] for g in a[0]["param_groups"]] == ["s", "d_s", "g", "d_g"]


@pytest.mark.slow
def test_killed_and_resumed_unit_run_equals_uninterrupted(tmp_path: Path) -> None:
    data = make_unlabeled(tmp_path / "data", n=6, size=40)  # batch 2: 3 steps per epoch
    full = pretrain(_cfg(data, tmp_path / "full"))
    assert full["steps"] == 5
    cfg = _cfg(data, tmp_path / "part")
    with pytest.raises(Killed):  # killed at step 4: epoch 1, after its first batch
        pretrain(cfg, callbacks=[make_kill(4)])
    assert torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    cfg.resume = True
    assert pretrain(cfg)["steps"] == 5
    (a, _), (b, _) = (load_method_from_run(r, r / "checkpoints" / "last.ckpt") for r in (tmp_path / "full",
                                                                                         tmp_path / "part"))
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for part in PARTS:  # every network, the EMA of G and ADA's p are in the checkpoint
        assert any(k.startswith(part) for k in sa), part
    assert float(sa["ada.p"]) > 0  # ADA was on (its random ops were drawn) for the last steps
    assert not torch.equal(sa["g_ema.mapping.net.0.weight"], sa["g.mapping.net.0.weight"])
    for k in sa:
        assert torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6), k
    _assert_same_optimizers(_optimizer_states(tmp_path / "full"), _optimizer_states(tmp_path / "part"))
