"""The end-to-end mode of benchmarks/pretrain_throughput.py builds a valid run config for every contender."""

from __future__ import annotations

import importlib.util
import sys
from argparse import Namespace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench() -> object:
    spec = importlib.util.spec_from_file_location("bench_pretrain_e2e", ROOT / "benchmarks" / "pretrain_e2e.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_pretrain_e2e"] = module
    spec.loader.exec_module(module)
    return module


def test_every_contender_has_a_valid_config(tmp_path: Path) -> None:
    from pathseg.ssl.engine import method_config

    bench = _bench()
    args = Namespace(data=str(tmp_path), backbone="resnet18", splits=["train"], crop=96, batch=8, workers=1,
                     e2e_steps=10, device="cpu")
    for name in bench.METHODS:  # type: ignore[attr-defined]
        cfg = bench.make_config(name, args, tmp_path / name)  # type: ignore[attr-defined]
        assert (cfg.crop_size, cfg.batch_size, cfg.num_workers, cfg.trainer.max_steps) == (96, 8, 1, 10)
        assert cfg.optim.name == "sgd" and cfg.optim.schedule_name() == "constant"
        _, mcfg = method_config(cfg)  # the method's own arguments validate
        if cfg.method == "url":
            assert mcfg.stage == "1" and mcfg.views.patch_size == 288
            assert mcfg.views.batched == (name == "url")
    assert bench.METHODS["url"][1]["views"]["batched"] is True  # type: ignore[attr-defined]  # not mutated


def test_median_step_leaves_out_the_warmup() -> None:
    bench = _bench()
    ends = [0.0, 10.0, 11.0, 12.0, 13.5, 14.5]  # a slow first step (start-up)
    assert bench._median_step(ends, 2) == pytest.approx(1.0)  # type: ignore[attr-defined]
