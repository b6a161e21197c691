"""Tests of the claims pathseg exists for: each one fails when its feature is removed or made a no-op.

Pretrained encoders really reach fine-tuning, frozen encoders stay frozen, learning-rate multipliers act, momentum
encoders and queues follow their formulas, and loss weights enter the losses as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from pathseg.config import from_dict, load_config
from pathseg.ssl.api import load_methods
from pathseg.ssl.base import Queue
from pathseg.ssl.config import PretrainConfig
from pathseg.ssl.engine import build_context, build_dataset, build_module, method_config
from pathseg.tasks.config import FinetuneConfig
from pathseg.tasks.finetune import SeedPlan, finetune, seed_model, seed_module
from pathseg.train.config import TrainerConfig
from pathseg.train.factory import build_trainer
from ssl_helpers import make_unlabeled, one_thread
from tasks_helpers import make_segmentation_set

_threads = pytest.fixture(autouse=True)(one_thread)


@pytest.fixture(scope="module")
def seg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_segmentation_set(tmp_path_factory.mktemp("seg") / "d", splits={"train": 3, "test": 1}, size=(64, 64))


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet18 encoder file whose BatchNorm statistics are not the defaults (so a skipped load shows)."""
    import timm

    from pathseg.models import save_encoder

    torch.manual_seed(5)
    model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.normal_()
        elif name.endswith("running_var"):
            buf.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("enc") / "enc.safetensors"
    return save_encoder(path, model.state_dict(), "resnet18", (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))


def _ft_cfg(data: Path, out: Path, **values: Any) -> FinetuneConfig:
    base: dict[str, Any] = {
        "data": str(data), "out": str(out), "val_split": "", "test_split": "test", "crop_size": 64,
        "trainer": {"max_steps": 3, "val_every_steps": 3, "batch_size": 2, "num_workers": 0, "accelerator": "cpu",
                    "progress_bar": False},
        "optim": {"lr": 0.05, "warmup_steps": 0}, "inference": {"num_examples": 1},
    }
    base.update(values)
    return load_config(FinetuneConfig, values=base)


def _encoder_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.encoder.model.state_dict().items()}  # type: ignore[union-attr]


def test_finetuning_starts_from_every_tensor_of_the_encoder_file(seg: Path, encoder_file: Path,
                                                                 tmp_path: Path) -> None:
    from pathseg.data.layout import read_dataset_info

    cfg = _ft_cfg(seg, tmp_path / "r", encoder=str(encoder_file))
    plan = SeedPlan(seg, read_dataset_info(seg), 0, tmp_path, ("train", []), None, ("test", []))
    _, model = seed_model(cfg, plan)
    file, state = load_file(str(encoder_file)), _encoder_state(model)
    assert set(file) <= set(state)
    for key, value in file.items():  # BatchNorm buffers included
        assert torch.equal(state[key], value), key


def test_frozen_encoder_is_bit_identical_after_training(seg: Path, encoder_file: Path, tmp_path: Path) -> None:
    file = load_file(str(encoder_file))
    for frozen in (True, False):
        out = tmp_path / f"frozen{frozen}"
        finetune(_ft_cfg(seg, out, encoder=str(encoder_file), freeze_encoder=frozen))
        last = load_file(str(out / "seed_0" / "model_last.safetensors"))
        enc = {k[len("encoder.model."):]: v for k, v in last.items() if k.startswith("encoder.model.")}
        same = [torch.equal(enc[k], v) for k, v in file.items()]
        if frozen:
            assert all(same)  # weights and BatchNorm statistics
        else:
            assert not all(same)  # the same run without freezing does change the encoder


def test_frozen_encoder_keeps_batchnorm_statistics_across_mid_epoch_validation(seg: Path, encoder_file: Path,
                                                                               tmp_path: Path) -> None:
    # Lightning puts the model back in train mode after each validation: the frozen encoder must stay in eval
    out = tmp_path / "frozen_val"
    finetune(_ft_cfg(seg, out, encoder=str(encoder_file), freeze_encoder=True, val_split="test",
                     trainer={"max_steps": 4, "val_every_steps": 1, "batch_size": 2, "num_workers": 0,
                              "accelerator": "cpu", "progress_bar": False}))
    last = load_file(str(out / "seed_0" / "model_last.safetensors"))
    for key, value in load_file(str(encoder_file)).items():
        assert torch.equal(last[f"encoder.model.{key}"], value), key


def test_pretrained_and_random_encoders_give_different_models(seg: Path, encoder_file: Path,
                                                              tmp_path: Path) -> None:
    # the demo's comparison: the pretrained path must really be taken
    finetune(_ft_cfg(seg, tmp_path / "rand", encoder="random"))
    finetune(_ft_cfg(seg, tmp_path / "pre", encoder=str(encoder_file)))
    a = load_file(str(tmp_path / "rand" / "seed_0" / "model_best.safetensors"))
    b = load_file(str(tmp_path / "pre" / "seed_0" / "model_best.safetensors"))
    key = "encoder.model.bn1.running_mean"
    assert not torch.allclose(a[key], b[key])


def _one_sgd_step(module: Any, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    before = {k: v.detach().clone() for k, v in module.model.named_parameters()}
    opt = module.configure_optimizers()["optimizer"]
    loss = F.cross_entropy(module.model(x), y)
    loss.backward()
    opt.step()
    return {k: v.detach() - before[k] for k, v in module.model.named_parameters()}


def test_encoder_lr_mult_scales_the_encoder_update(seg: Path, tmp_path: Path) -> None:
    from pathseg.data.layout import read_dataset_info

    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    deltas = {}
    for mult in (1.0, 0.25):
        cfg = _ft_cfg(seg, tmp_path / "r", optim={"name": "sgd", "lr": 0.1, "warmup_steps": 0, "weight_decay": 0.0,
                                                   "encoder_lr_mult": mult})
        plan = SeedPlan(seg, read_dataset_info(seg), 0, tmp_path, ("train", []), None, ("test", []))
        torch.manual_seed(0)
        spec, model = seed_model(cfg, plan)
        module = seed_module(cfg, spec, model)
        module.model.eval()  # same batch statistics in both runs
        deltas[mult] = _one_sgd_step(module, x, y)
    enc = [k for k in deltas[1.0] if k.startswith("encoder.") and deltas[1.0][k].abs().sum() > 0]
    dec = [k for k in deltas[1.0] if not k.startswith("encoder.")]
    assert enc and dec
    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm().clamp_min(1e-12))

    def flat(d: dict[str, torch.Tensor], keys: list[str]) -> torch.Tensor:
        return torch.cat([d[k].flatten() for k in keys])

    # SGD's first step is lr · grad: the encoder's update is scaled by the multiplier, the decoder's is not
    assert rel(flat(deltas[0.25], enc), 0.25 * flat(deltas[1.0], enc)) < 1e-3
    assert rel(flat(deltas[0.25], dec), flat(deltas[1.0], dec)) < 1e-3


# --- pretraining -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unlabeled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_unlabeled(tmp_path_factory.mktemp("ssl") / "u", n=8, size=40)


def _small_args(spec: Any) -> dict[str, Any]:
    fields = spec.config.__dataclass_fields__
    args: dict[str, Any] = {k: v for k, v in (("queue_size", 16), ("momentum", 0.9)) if k in fields}
    return args


def _momentum_methods() -> list[str]:
    """Registered methods that train on the default image data and keep momentum (``key_*``) modules."""
    names = []
    for name in load_methods().names():
        spec = load_methods().get(name)
        if spec.build_dataset is None and "momentum" in spec.config.__dataclass_fields__:
            names.append(name)
    return names


def _pretrain_cfg(data: Path, out: Path, method: str, **extra: Any) -> PretrainConfig:
    spec = load_methods().get(method)
    values: dict[str, Any] = {
        "method": method, "data": str(data), "out": str(out), "backbone": "resnet18", "crop_size": 32,
        "batch_size": 4, "num_workers": 0, "method_args": _small_args(spec),
        "trainer": {"accelerator": "cpu", "max_steps": 1, "progress_bar": False},
    }
    values.update(extra)
    return load_config(PretrainConfig, values=values)


@pytest.mark.parametrize("method", _momentum_methods())
def test_key_encoder_is_the_momentum_average_after_one_step(unlabeled: Path, tmp_path: Path, method: str) -> None:
    cfg = _pretrain_cfg(unlabeled, tmp_path / "r", method)
    spec, mcfg = method_config(cfg)
    torch.manual_seed(0)
    model = spec.build_model(mcfg, build_context(cfg, 1))
    pairs = [(n, n[len("key_"):]) for n, _ in model.named_children() if n.startswith("key_")]
    assert pairs, f"{method} has no key_* momentum modules"
    with torch.no_grad():  # key ≠ query, so that the update is not the identity
        for key_name, _ in pairs:
            for p in getattr(model, key_name).parameters():
                p.add_(torch.randn_like(p) * 0.1)
    k0 = {n: {k: v.clone() for k, v in getattr(model, n).named_parameters()} for n, _ in pairs}
    q0 = {n: {k: v.detach().clone() for k, v in getattr(model, q).named_parameters()} for n, q in pairs}
    module = build_module(model, cfg, 1, 1)
    loader = DataLoader(build_dataset(spec, mcfg, cfg), batch_size=4)
    build_trainer(cfg.trainer, None, loggers=False).fit(module, loader)
    m = float(mcfg.momentum)
    for key_name, _ in pairs:
        for k, v in getattr(model, key_name).named_parameters():
            assert torch.allclose(v, m * k0[key_name][k] + (1 - m) * q0[key_name][k], atol=1e-6), (key_name, k)


def test_queue_keeps_the_last_keys_in_order_and_wraps() -> None:
    q = Queue(5, 2)
    keys = [torch.full((3, 2), float(i)) for i in (1, 2, 3)]
    q.enqueue(keys[0])
    assert q.queue[:3].eq(1).all() and int(q.ptr) == 3
    q.enqueue(keys[1])  # rows 3, 4, then wraps to row 0
    assert q.queue[:, 0].tolist() == [2.0, 1.0, 1.0, 2.0, 2.0] and int(q.ptr) == 1
    q.enqueue(keys[2])
    assert q.queue[:, 0].tolist() == [2.0, 3.0, 3.0, 3.0, 2.0] and int(q.ptr) == 4
    q.enqueue(torch.arange(14.0).view(7, 2))  # more than the queue: the last 5 keys
    assert q.queue[:, 0].tolist() == [4.0, 6.0, 8.0, 10.0, 12.0]


@pytest.mark.parametrize("method", ["mocov2", "densecl"])
def test_training_step_enqueues_its_keys(method: str) -> None:
    from pathseg.ssl.densecl import DenseCL
    from pathseg.ssl.mocov2 import MoCoV2

    torch.manual_seed(0)
    cls: Any = MoCoV2 if method == "mocov2" else DenseCL
    model = cls("resnet18", queue_size=16, momentum=0.9, proj_dim=8, hidden_dim=16).eval()  # BN: running stats
    batch = {"view1": torch.randn(4, 3, 32, 32), "view2": torch.randn(4, 3, 32, 32)}
    with torch.no_grad():  # the keys, computed independently of the method's own code path
        feat = model.key_backbone.forward_features(batch["view2"])
        expected = F.normalize(model.key_head(feat.mean((2, 3))), dim=1)
    model.training_loss(batch)
    assert torch.allclose(model.queue.queue[:4], expected, atol=1e-5)
    assert int(model.queue.ptr) == 4


def test_densecl_lambda_weights_the_two_terms(unlabeled: Path, tmp_path: Path) -> None:
    from pathseg.ssl.densecl import DenseCL

    batch = {"view1": torch.randn(4, 3, 32, 32), "view2": torch.randn(4, 3, 32, 32)}
    out = {}
    for lam in (0.5, 0.2):
        torch.manual_seed(0)
        model = DenseCL("resnet18", queue_size=16, loss_lambda=lam, proj_dim=8, hidden_dim=16).eval()
        out[lam] = model.training_loss(batch)
    for lam, o in out.items():
        assert torch.allclose(o["loss"], (1 - lam) * o["loss_global"] + lam * o["loss_dense"])
    assert torch.allclose(out[0.5]["loss_global"], out[0.2]["loss_global"])
    assert not torch.allclose(out[0.5]["loss"], out[0.2]["loss"])


def test_mocov2_temperature_enters_the_infonce(tmp_path: Path) -> None:
    from pathseg.ssl.mocov2 import MoCoV2

    batch = {"view1": torch.randn(4, 3, 32, 32), "view2": torch.randn(4, 3, 32, 32)}
    torch.manual_seed(0)
    model = MoCoV2("resnet18", queue_size=16, temperature=0.5, proj_dim=8, hidden_dim=16).eval()
    negatives = model.queue.queue.clone()
    with torch.no_grad():
        q = F.normalize(model.head(model.backbone(batch["view1"])), dim=1)
        k = F.normalize(model.key_head(model.key_backbone(batch["view2"])), dim=1)
        expected = sum(-torch.log(torch.exp(q[i] @ k[i] / 0.5)
                                  / (torch.exp(q[i] @ k[i] / 0.5) + torch.exp(negatives @ q[i] / 0.5).sum()))
                       for i in range(4)) / 4
    loss = model.training_loss(batch)["loss"]
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_url_loss_weights_enter_the_total(unlabeled: Path, tmp_path: Path) -> None:
    spec = load_methods().get("url")
    results = {}
    for weights in ((1.0, 1.0, 1.0), (2.0, 0.5, 3.0)):
        cfg = load_config(PretrainConfig, values={
            "method": "url", "data": str(unlabeled), "out": str(tmp_path / "u"), "backbone": "resnet18",
            "crop_size": 32, "batch_size": 2, "num_workers": 0,
            "method_args": {"stage": "joint", "weights": list(weights)},
            "trainer": {"accelerator": "cpu", "max_steps": 1}})
        mcfg = from_dict(spec.config, cfg.method_args, prefix="method_args.")
        torch.manual_seed(0)
        ds = build_dataset(spec, mcfg, cfg)
        batch = next(iter(DataLoader(torch.utils.data.Subset(ds, [0, 1]), batch_size=2)))
        torch.manual_seed(1)
        model = spec.build_model(mcfg, build_context(cfg, 1))
        results[weights] = model.training_loss(batch)
    one, other = results[(1.0, 1.0, 1.0)], results[(2.0, 0.5, 3.0)]
    for key in ("loss_img", "loss_sp", "loss_px"):
        assert torch.allclose(one[key], other[key], atol=1e-6), key
    expected = 2.0 * other["loss_img"] + 0.5 * other["loss_sp"] + 3.0 * other["loss_px"]
    assert torch.allclose(other["loss"], expected, atol=1e-5)
    assert torch.allclose(one["loss"], one["loss_img"] + one["loss_sp"] + one["loss_px"], atol=1e-5)


def test_trainer_config_of_pretraining_is_the_engines() -> None:
    assert PretrainConfig.__dataclass_fields__["trainer"].type in ("TrainerConfig", TrainerConfig)
    assert np.isclose(_pretrain_cfg(Path("d"), Path("o"), "mocov2").trainer.max_steps, 1)


def test_identical_finetuning_runs_give_byte_identical_weight_files(seg: Path, encoder_file: Path,
                                                                    tmp_path: Path) -> None:
    for name in ("a", "b"):
        finetune(_ft_cfg(seg, tmp_path / name, encoder=str(encoder_file),
                         trainer={"max_steps": 2, "val_every_steps": 2, "batch_size": 2, "num_workers": 0,
                                  "accelerator": "cpu", "progress_bar": False, "deterministic": True}))
    for file in ("model_last.safetensors", "model_best.safetensors"):
        assert (tmp_path / "a" / "seed_0" / file).read_bytes() == (tmp_path / "b" / "seed_0" / file).read_bytes()
