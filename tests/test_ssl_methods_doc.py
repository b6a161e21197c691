"""The worked example of docs/dev/ssl_methods.md runs as written: a new method is one file plus its test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from pathseg.cli.main import main
from pathseg.ssl.api import METHODS, load_methods
from ssl_helpers import make_unlabeled, one_thread

_threads = pytest.fixture(autouse=True)(one_thread)
DOC = Path(__file__).resolve().parents[1] / "docs" / "dev" / "ssl_methods.md"


def _example() -> str:
    text = DOC.read_text()
    start = text.index("## A complete new method")
    return re.findall(r"```python\n(.*?)```", text[start:], flags=re.S)[0]


def test_worked_example_registers_trains_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sys
    import types

    load_methods()
    if "simsiam" not in METHODS:  # the file a developer would add, as a module
        module = types.ModuleType("simsiam_doc_example")
        sys.modules[module.__name__] = module
        exec(compile(_example(), str(DOC), "exec"), module.__dict__)
    spec = METHODS.get("simsiam")
    assert "simsiam" in load_methods().names()
    model = spec.build_model(spec.config(dim=16, pred_dim=8), _ctx())
    z = torch.randn(4, 16)
    p = model.predictor(z)
    loss = -0.5 * 2 * torch.nn.functional.cosine_similarity(p, z).mean()  # both views equal: the formula
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    got = model.training_loss({"view1": x, "view2": x})["loss"]
    zz = model.projector(model.backbone(x))
    assert float(got) == pytest.approx(float(-torch.nn.functional.cosine_similarity(model.predictor(zz), zz).mean()),
                                       rel=1e-5)
    assert loss.ndim == 0
    data = make_unlabeled(tmp_path / "u", n=8, size=40)
    out = tmp_path / "run"
    code = main(["pretrain", "--method", "simsiam", "--data", str(data), "--out", str(out), "--backbone",
                 "resnet18", "--crop-size", "32", "--batch-size", "4", "--num-workers", "0",
                 "method_args.dim=16", "method_args.pred_dim=8", "trainer.max_steps=2", "trainer.accelerator=cpu",
                 "trainer.progress_bar=false"])
    assert code == 0, capsys.readouterr().err
    from safetensors.torch import load_file

    exported = load_file(str(out / "encoder.safetensors"))
    import timm

    timm.create_model("resnet18", num_classes=0).load_state_dict(exported)  # strict: the backbone alone


def _ctx():  # type: ignore[no-untyped-def]
    from pathseg.ssl.api import BuildContext

    return BuildContext(backbone="resnet18", crop_size=32)
