"""URL through ``pathseg pretrain``: the smoke configs run 2 steps each; stage 1 → stage 2 → fine-tuning U-Net."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pathseg.cli.main import main
from pathseg.models import create_segmentation_model, read_encoder
from ssl_helpers import make_unlabeled

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "pretrain"


def _pretrain(name: str, data: Path, out: Path, *extra: str) -> int | None:
    return main(["pretrain", "--config", str(CONFIGS / f"url_{name}_smoke.yaml"), "--data", str(data),
                 "--out", str(out), *extra])


def test_registered() -> None:
    from pathseg.ssl import load_methods

    assert "url" in load_methods()


def test_two_stages_then_finetune_unet(tmp_path: Path) -> None:
    data = make_unlabeled(tmp_path / "data", n=4, size=112)
    assert _pretrain("stage1", data, tmp_path / "s1") in (0, None)
    s1, _ = read_encoder(tmp_path / "s1" / "encoder.safetensors")
    assert "conv1.weight" in s1 and not any(k.startswith("decoder.") for k in s1)

    assert _pretrain("stage2", data, tmp_path / "s2", f"method_args.stage1_checkpoint={tmp_path / 's1'}") in (0, None)
    s2, meta = read_encoder(tmp_path / "s2" / "encoder.safetensors")
    assert meta.mean == (0.689, 0.504, 0.653)
    assert all(torch.equal(s2[k], v) for k, v in s1.items())  # frozen encoder, BatchNorm statistics included
    assert any(k.startswith("decoder.") for k in s2)
    assert list((data / "train" / "superpixels").glob("*.png"))  # cached on first use

    unet = create_segmentation_model("unet", "resnet18", 2, encoder_weights=tmp_path / "s2" / "encoder.safetensors")
    assert unet.decoder_loaded > 0


def test_joint_smoke(tmp_path: Path) -> None:
    data = make_unlabeled(tmp_path / "data", n=4, size=112)
    assert _pretrain("joint", data, tmp_path / "j") in (0, None)
    metrics = (tmp_path / "j" / "metrics.json").read_text()
    assert '"steps": 2' in metrics


def test_stage2_without_stage1_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_unlabeled(tmp_path / "data", n=2, size=64)
    assert _pretrain("stage2", data, tmp_path / "s2") == 2
    assert "stage1_checkpoint" in capsys.readouterr().err
    assert _pretrain("stage1", data, tmp_path / "bad", "method_args.stage=3") == 2
    assert "stage must be one of" in capsys.readouterr().err
