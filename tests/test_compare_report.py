"""The comparison report against hand-computed numbers (no training), and the shipped configs' validity."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from pathseg.compare.config import CompareConfig, MethodEntry, TaskEntry
from pathseg.compare.report import markdown, paired, seed_rows
from pathseg.config import load_config
from pathseg.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _result(method: str, scores: dict[int, float], seconds: float) -> SimpleNamespace:
    task = TaskEntry(name="t", data="d")
    cell = SimpleNamespace(method=method, task=task, fraction=0.5, config=SimpleNamespace(seeds=list(scores)),
                           metric=lambda m: "miou")
    metrics = {"per_seed": {str(s): {"miou": v, "weights": "best"} for s, v in scores.items()}}
    return SimpleNamespace(cell=cell, metrics=metrics, seconds=seconds)


def test_markdown_mean_std_bold_and_paired_by_hand():
    cfg = CompareConfig(out="o", methods=[MethodEntry("random", encoder="random"), MethodEntry("x", encoder="f")],
                        tasks=[TaskEntry("t", "d")], fractions=[0.5], seeds=[0, 1, 2])
    results = [_result("random", {0: 0.5, 1: 0.6, 2: 0.7}, 3.0), _result("x", {0: 0.6, 1: 0.5, 2: 0.9}, 6.0)]
    rows = seed_rows(results)  # type: ignore[arg-type]
    assert [(r["method"], r["seed"], r["score"], r["cost_s"]) for r in rows] == [
        ("random", 0, 0.5, 1.0), ("random", 1, 0.6, 1.0), ("random", 2, 0.7, 1.0),
        ("x", 0, 0.6, 2.0), ("x", 1, 0.5, 2.0), ("x", 2, 0.9, 2.0)]
    md = markdown(cfg, rows, {"x": 10.0})
    std_r = math.sqrt((0.01 + 0 + 0.01) / 2)  # mean 0.6
    mean_x = (0.6 + 0.5 + 0.9) / 3
    std_x = math.sqrt(sum((v - mean_x) ** 2 for v in (0.6, 0.5, 0.9)) / 2)
    assert f"| random | {0.6:.4f} ± {std_r:.4f} |" in md
    assert f"| x | **{mean_x:.4f} ± {std_x:.4f}** |" in md
    # paired differences 0.1, -0.1, 0.2 -> mean 0.0667, 2 better, 1 worse
    assert "| x | +0.0667 (2/1/0 of 3) |" in md
    assert "| x | 10.0 | 6.0 |" in md and "| random | 0.0 | 3.0 |" in md


def test_paired_uses_common_seeds_only():
    assert paired({0: 1.0, 1: 2.0, 5: 9.0}, {0: 1.0, 1: 1.5, 3: 0.0}) == (0.25, 1, 0, 1, 2)
    assert paired({0: 1.0}, {1: 1.0}) is None


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "compare").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_resolve(path, tmp_path, monkeypatch):
    from pathseg.compare.plan import build_plan

    monkeypatch.chdir(ROOT)  # the shipped configs name their pretraining/fine-tuning files from the repo root
    cfg = load_config(CompareConfig, path, values={"out": str(tmp_path / "o")})
    jobs, cells = build_plan(cfg)
    assert len(cells) == len(cfg.methods) * len(cfg.tasks) * len(cfg.fractions)
    assert len({c.key for c in cells}) == len(cells) and len(jobs) == sum(bool(m.pretrain) for m in cfg.methods)


def test_bad_method_entry_is_refused():
    with pytest.raises(ConfigError, match="exactly one of 'pretrain' and 'encoder'"):
        load_config(CompareConfig, values={"out": "o", "methods": [{"name": "a"}],
                                           "tasks": [{"name": "t", "data": "d"}]})
