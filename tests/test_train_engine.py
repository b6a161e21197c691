"""The training engine (pathseg.train): schedules, devices, trainer factory, best weights, files, run lifecycle."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from pathseg.config import load_config
from pathseg.errors import ConfigError, PathsegError
from pathseg.train.best import BestWeights
from pathseg.train.config import ScheduleConfig, TrainerConfig
from pathseg.train.factory import build_trainer, parse_devices
from pathseg.train.lifecycle import Interrupted, run_lifecycle
from pathseg.train.schedules import build_scheduler, make_optimizer
from pathseg.train.weights import check_resume_checkpoint, load_safetensors, save_safetensors


def _lrs(cfg: ScheduleConfig, max_steps: int, steps: int, lr: float = 0.1) -> list[float]:
    """Learning rates the optimiser really uses at steps 0..steps-1 (scheduler stepped as Lightning does)."""
    opt = make_optimizer([nn.Parameter(torch.zeros(1))], "sgd", lr)
    sched = build_scheduler(opt, cfg, max_steps)["scheduler"]
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_cosine_at_chosen_steps() -> None:
    lrs = _lrs(ScheduleConfig("cosine", warmup_steps=10), max_steps=110, steps=111)
    assert lrs[0] == pytest.approx(0.1 * 1 / 10)  # (step + 1) / warmup
    assert lrs[9] == pytest.approx(0.1)  # end of warm-up
    assert lrs[10] == pytest.approx(0.1)  # cosine start
    assert lrs[60] == pytest.approx(0.05)  # cosine midpoint: half of the peak
    assert lrs[35] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 25 / 100)))
    assert lrs[110] == pytest.approx(0.0, abs=1e-12)
    final = _lrs(ScheduleConfig("cosine", final_factor=0.2), max_steps=50, steps=51)
    assert final[50] == pytest.approx(0.02) and final[25] == pytest.approx(0.1 * (0.2 + 0.8 * 0.5))


def test_poly_step_constant_factors() -> None:
    lrs = _lrs(ScheduleConfig("poly", power=0.9), max_steps=100, steps=101)
    assert lrs[0] == pytest.approx(0.1) and lrs[50] == pytest.approx(0.1 * 0.5**0.9)
    assert lrs[99] == pytest.approx(0.1 * 0.01**0.9) and lrs[100] == 0.0  # poly end
    step = _lrs(ScheduleConfig("step", milestones=[3, 6], gamma=0.5), max_steps=10, steps=8)
    assert step == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025])
    const = _lrs(ScheduleConfig("constant", warmup_steps=4), max_steps=10, steps=6)
    assert const == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])


def test_plateau_lowers_on_a_flat_loss() -> None:
    opt = make_optimizer([nn.Parameter(torch.zeros(1))], "sgd", 1.0)
    entry = build_scheduler(opt, ScheduleConfig("plateau", patience=1, gamma=0.5), 10)
    assert entry["interval"] == "epoch" and entry["monitor"] == "train/loss_epoch"
    for loss in (1.0, 0.5, 0.5, 0.5):
        entry["scheduler"].step(loss)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_parse_devices() -> None:
    assert parse_devices("auto") == "auto" and parse_devices("2") == 2
    assert parse_devices("0,1") == [0, 1] and parse_devices("[3]") == [3] and parse_devices("3,") == [3]
    for bad in ("gpu", "0", "1.5"):
        with pytest.raises(ConfigError, match=r"trainer\.devices"):
            parse_devices(bad)


def test_trainer_factory_maps_settings_and_refuses_bad_ones(tmp_path: Path) -> None:
    cfg = TrainerConfig(max_steps=7, accelerator="cpu", devices="1", accumulate_grad_batches=3,
                        gradient_clip_val=0.5, progress_bar=False)
    t = build_trainer(cfg, tmp_path)
    assert t.max_steps == 7 and t.accumulate_grad_batches == 3 and t.gradient_clip_val == 0.5
    assert t.limit_val_batches == 0 and t.num_devices == 1
    assert build_trainer(TrainerConfig(max_epochs=4, max_steps=-1, accelerator="cpu"), None).max_epochs == 4
    with pytest.raises(ConfigError, match="trainer:"):
        build_trainer(TrainerConfig(accelerator="cpu", precision="13-mixed"), tmp_path)


class _Toy(L.LightningModule):
    """Logs the validation score given by a fixed sequence; its weights are set to the epoch index."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.model = nn.Linear(1, 1)
        self.scores = scores

    def training_step(self, batch: torch.Tensor, idx: int) -> torch.Tensor:
        with torch.no_grad():
            self.model.weight.fill_(float(self.current_epoch))
        return (self.model.bias * 0).sum() + batch.sum() * 0

    def validation_step(self, batch: torch.Tensor, idx: int) -> None:
        self.log("val_score", self.scores[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_best_weights_keep_the_best_epoch(tmp_path: Path) -> None:
    data = torch.utils.data.DataLoader(torch.zeros(2, 1), batch_size=1)
    module, best = _Toy([0.2, 0.9, 0.4]), BestWeights("val_score")
    trainer = build_trainer(TrainerConfig(max_epochs=3, accelerator="cpu", devices="1", progress_bar=False),
                            tmp_path, [best], loggers=False, validate=True)
    trainer.fit(module, data, data)
    assert best.best_score == pytest.approx(0.9)
    assert best.restore(module.model) and float(module.model.weight.detach()) == 1.0  # the weights of epoch 1
    low = BestWeights("val_score", mode="min")
    assert low.consider(0.5, 0, module.model) and not low.consider(0.7, 1, module.model)
    assert not low.consider(float("nan"), 2, module.model) and low.consider(0.1, 3, module.model)


def test_safetensors_files_are_byte_identical(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = {"b": torch.randn(3), "a": torch.randn(2, 2)}
    save_safetensors(state, tmp_path / "1.safetensors", {"z": "1", "a": "2"})
    save_safetensors(dict(reversed(list(state.items()))), tmp_path / "2.safetensors", {"a": "2", "z": "1"})
    assert (tmp_path / "1.safetensors").read_bytes() == (tmp_path / "2.safetensors").read_bytes()
    tensors, meta = load_safetensors(tmp_path / "1.safetensors")
    assert torch.equal(tensors["a"], state["a"]) and meta["z"] == "1"


def test_pickled_resume_checkpoint_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "obj": _Pickled()}, bad)
    with pytest.raises(PathsegError, match="pickled"):
        check_resume_checkpoint(bad)
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "global_step": 3}, good)
    assert check_resume_checkpoint(good) == good
    (tmp_path / "cut.ckpt").write_bytes(good.read_bytes()[:40])
    with pytest.raises(PathsegError, match="cannot resume"):
        check_resume_checkpoint(tmp_path / "cut.ckpt")


@dataclass
class _Pickled:
    value: int = 1


@dataclass
class _Cfg:
    data: str
    out: str
    steps: int = 1
    tags: list[str] = field(default_factory=list)


def test_run_lifecycle_records_every_outcome(tmp_path: Path) -> None:
    cfg = _Cfg("d", "o")
    with run_lifecycle(tmp_path / "ok", cfg, seed=3) as run:
        assert run is not None
        run.finish({"x": 1})
    assert json.loads((tmp_path / "ok" / "run.json").read_text())["status"] == "completed"
    with pytest.raises(PathsegError), run_lifecycle(tmp_path / "bad", cfg):
        raise PathsegError("the data went away", Path("d"))
    info = json.loads((tmp_path / "bad" / "run.json").read_text())
    assert info["status"] == "failed" and "the data went away" in info["reason"]
    with pytest.raises(Interrupted), run_lifecycle(tmp_path / "int", cfg):
        raise Interrupted()
    assert json.loads((tmp_path / "int" / "run.json").read_text())["status"] == "interrupted"
    with pytest.raises(ZeroDivisionError), run_lifecycle(tmp_path / "bug", cfg):
        _ = 1 / 0
    assert json.loads((tmp_path / "bug" / "run.json").read_text())["reason"].startswith("ZeroDivisionError")


def test_config_merges_file_flags_and_overrides_before_validating(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("steps: 4\ntags: [a]\n")  # no data/out: they come from the flags
    cfg = load_config(_Cfg, f, overrides=["steps=5"], values={"data": "x", "out": "y"})
    assert (cfg.data, cfg.out, cfg.steps, cfg.tags) == ("x", "y", 5, ["a"])
    f.write_text("stepz: 4\n")
    with pytest.raises(ConfigError, match="stepz") as err:
        load_config(_Cfg, f, values={"data": "x", "out": "y"})
    assert err.value.path == str(f)
    with pytest.raises(ConfigError, match="missing required value 'out'"):
        load_config(_Cfg, values={"data": "x"})
