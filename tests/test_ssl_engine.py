"""The pretraining engine: CLI, export, exact mid-epoch resume, configs (tiny CPU runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from pathseg.cli.main import main
from pathseg.config import load_config
from pathseg.errors import ConfigError, PathsegError
from pathseg.models import create_segmentation_model, read_encoder
from pathseg.ssl.config import PretrainConfig
from pathseg.ssl.engine import load_method_from_run, method_config, pretrain
from ssl_helpers import Killed, make_classification, make_kill, make_unlabeled, one_thread

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "pretrain").glob("*.yaml"))
TINY = ["--backbone", "resnet18", "--crop-size", "32", "--batch-size", "4", "--num-workers", "0",
        "trainer.accelerator=cpu", "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
        "method_args.queue_size=16"]

_threads = pytest.fixture(autouse=True)(one_thread)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_unlabeled(tmp_path_factory.mktemp("ssl") / "data", n=12, size=40)


def test_pretrain_and_export_cli(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cls = make_classification(tmp_path / "cls", n=4, size=32)
    run = tmp_path / "run"
    rc = main(["pretrain", "--method", "mocov2", "--data", str(data), "--out", str(run), *TINY,
               "trainer.max_steps=3", f"monitor.data={cls}", "monitor.image_size=32"])
    assert rc in (0, None)
    for name in ("config.yaml", "run.json", "metrics.json", "encoder.safetensors", "checkpoints/last.ckpt",
                 "logs/version_0/metrics.csv"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    out = tmp_path / "enc.safetensors"
    assert main(["export", str(run), "--out", str(out)]) in (0, None)
    state, meta = read_encoder(out)
    assert meta.timm_name == "resnet18" and meta.get("method") == "mocov2"
    model = create_segmentation_model("unet", "resnet18", 2, encoder_weights=out)
    assert model.encoder_load_report.missing == []
    auto, _ = read_encoder(run / "encoder.safetensors")
    assert all(torch.equal(auto[k], state[k]) for k in state)
    import json

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["final_loss"] > 0
    assert metrics["knn_acc"] == metrics["knn_acc_history"][-1]
    n_test = len(list((cls / "test" / "images").iterdir()))
    assert metrics["knn_acc"] * n_test == pytest.approx(round(metrics["knn_acc"] * n_test))  # a count of images
    # an existing run is not overwritten silently
    assert main(["pretrain", "--method", "mocov2", "--data", str(data), "--out", str(run), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err


def test_method_args_are_validated(data: Path, tmp_path: Path) -> None:
    cfg = load_config(PretrainConfig, values={"method": "mocov2", "data": str(data), "out": str(tmp_path / "r"),
                                              "method_args": {"queue_sise": 4}})
    with pytest.raises(ConfigError, match=r"method_args.queue_sise.*queue_size"):
        pretrain(cfg)
    cfg.method, cfg.method_args = "mocco", {}
    with pytest.raises(ConfigError, match="did you mean 'mocov2'"):
        pretrain(cfg)


def _resume_cfg(data: Path, out: Path, method: str) -> PretrainConfig:
    return load_config(PretrainConfig, values={
        "method": method, "data": str(data), "out": str(out), "backbone": "resnet18", "crop_size": 32,
        "batch_size": 4, "num_workers": 0, "seed": 7, "method_args": {"queue_size": 16, "momentum": 0.9},
        "optim": {"warmup_epochs": 0.5},
        "trainer": {"accelerator": "cpu", "max_steps": 5, "deterministic": True, "progress_bar": False,
                    "log_every_n_steps": 1},
        "checkpoint": {"every_n_steps": 1},
    })


def _method_state(run: Path) -> dict[str, torch.Tensor]:
    method, _ = load_method_from_run(run, run / "checkpoints" / "last.ckpt")
    return method.state_dict()


@pytest.mark.parametrize("method", ["mocov2", "densecl"])
def test_kill_mid_epoch_and_resume_gives_same_weights(data: Path, tmp_path: Path, method: str) -> None:
    # 12 images, batch 4: 3 batches per epoch; killed after step 4 (epoch 1, batch 1), 5 steps in all
    full = pretrain(_resume_cfg(data, tmp_path / "full", method))
    assert full["steps"] == 5
    cfg = _resume_cfg(data, tmp_path / "part", method)
    with pytest.raises(Killed):
        pretrain(cfg, callbacks=[make_kill(4)])
    assert torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    cfg.resume = True
    resumed = pretrain(cfg)
    assert resumed["steps"] == 5
    a, b = _method_state(tmp_path / "full"), _method_state(tmp_path / "part")
    assert set(a) == set(b)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_resume_flag_without_checkpoint_and_bad_resume(data: Path, tmp_path: Path) -> None:
    cfg = _resume_cfg(data, tmp_path / "r", "mocov2")
    cfg.resume_from = str(tmp_path / "nope.ckpt")
    with pytest.raises(PathsegError, match="not found"):
        pretrain(cfg)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_shipped_configs_load_and_run_two_steps(config: Path, data: Path, tmp_path: Path) -> None:
    cfg = load_config(PretrainConfig, config, overrides=[f"data={data}", f"out={tmp_path / 'run'}"])
    method_config(cfg)  # the method and its arguments are valid
    if cfg.method not in ("mocov2", "densecl"):
        return  # plug-in methods (url) test their own configs
    cfg = load_config(PretrainConfig, config, overrides=[
        f"data={data}", f"out={tmp_path / 'run'}", "backbone=resnet18", "crop_size=32", "batch_size=4",
        "num_workers=0", "method_args.queue_size=16", "trainer.max_steps=2", "trainer.accelerator=cpu",
        "trainer.precision=32-true", "trainer.progress_bar=false", "checkpoint.keep_every_n_epochs=0",
        "trainer.log_every_n_steps=1"])
    metrics = pretrain(cfg)
    assert metrics["steps"] == 2
    logged = [r for r in _csv_rows(tmp_path / "run") if r.get("train/loss")]
    assert metrics["final_loss"] == pytest.approx(float(logged[-1]["train/loss"]), rel=1e-6)  # the last step's loss


class KillAtMicroBatch(L.Callback):
    """Raises at the start of the N-th micro-batch (0-based), i.e. in the middle of an accumulation window."""

    def __init__(self, at: int) -> None:
        self.at, self.seen = at, 0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self.seen == self.at:
            raise Killed(f"killed at micro-batch {self.at}")
        self.seen += 1


def test_kill_during_gradient_accumulation_and_resume(data: Path, tmp_path: Path) -> None:
    def cfg_of(out: Path) -> PretrainConfig:
        cfg = _resume_cfg(data, out, "mocov2")
        cfg.trainer.accumulate_grad_batches, cfg.trainer.max_steps = 2, 3
        return cfg

    full = pretrain(cfg_of(tmp_path / "full"))
    assert full["steps"] == 3
    cfg = cfg_of(tmp_path / "part")
    # 3 micro-batches per epoch: 0+1 -> step 1, 2 -> step 2 (epoch end); killed after micro-batch 3, mid step 3
    with pytest.raises(Killed):
        pretrain(cfg, callbacks=[KillAtMicroBatch(4)])
    assert torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    assert json.loads((tmp_path / "part" / "run.json").read_text())["status"] == "failed"
    cfg.resume = True
    assert pretrain(cfg)["steps"] == 3
    a, b = _method_state(tmp_path / "full"), _method_state(tmp_path / "part")
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_resume_without_checkpoint_warns_and_starts_fresh(data: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    cfg = _resume_cfg(data, tmp_path / "fresh", "mocov2")
    cfg.resume, cfg.trainer.max_steps = True, 2
    with caplog.at_level("WARNING", logger="pathseg"):
        metrics = pretrain(cfg)
    assert "no " in caplog.text and "starting from scratch" in caplog.text
    assert metrics["steps"] == 2
    assert json.loads((tmp_path / "fresh" / "run.json").read_text())["status"] == "completed"


def _csv_rows(run: Path) -> list[dict[str, str]]:
    import csv

    files = sorted((run / "logs").glob("version_*/metrics.csv"))
    with files[-1].open() as f:
        return list(csv.DictReader(f))
