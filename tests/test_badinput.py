"""The bad-input table: each row gives one ``error:`` line naming the file and the problem, exit code 2, and leaves
nothing half-written. Rows that need the training drivers are marked xfail until the engine does its part."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pathseg.cli.main import main
from pathseg.data.layout import ClassInfo, DatasetInfo, write_dataset_info
from slides_helpers import write_synthetic

UNWRITABLE = Path("/proc/pathseg-badinput")  # no file can be created under /proc, not even by root


class Evil:
    """A pickled object that is not a tensor."""

    def __reduce__(self) -> tuple:
        return (print, ("pwned",))


def seg_set(root: Path, n: int = 3, size: tuple[int, int] = (32, 32), split: str = "train") -> Path:
    if not (root / "dataset.yaml").exists():
        write_dataset_info(root, DatasetInfo(name="t", task="segmentation",
                                             classes=[ClassInfo("background", 0), ClassInfo("gland", 1)]))
    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((*size, 3), 100 + 20 * i, np.uint8)).save(root / split / "images" / f"s{i}.png")
        m = np.zeros(size, np.uint8)
        m[:, size[1] // 2:] = 1
        Image.fromarray(m).save(root / split / "masks" / f"s{i}.png")
    return root


@dataclass
class Case:
    """A row: ``setup(tmp) -> argv`` and the words the single error line must hold (``{tmp}`` is replaced)."""

    setup: Callable[[Path], list[str]]
    expect: tuple[str, ...]


def _file(tmp: Path, name: str = "afile") -> str:
    (tmp / name).write_text("x")
    return str(tmp / name)


def _dir(tmp: Path, name: str) -> str:
    (tmp / name).mkdir()
    return str(tmp / name)


def _slide(tmp: Path) -> str:
    write_synthetic(tmp / "s.tiff", h=512, w=512)
    return str(tmp / "s.tiff")


def _bad_value(tmp: Path) -> str:
    root = seg_set(tmp / "d")
    m = np.zeros((32, 32), np.uint8)
    m[0, 0] = 7
    Image.fromarray(m).save(root / "train" / "masks" / "s1.png")
    return str(root)


def _size_mismatch(tmp: Path) -> str:
    root = seg_set(tmp / "d")
    Image.fromarray(np.zeros((32, 31), np.uint8)).save(root / "train" / "masks" / "s2.png")
    return str(root)


def _truncated(tmp: Path) -> str:
    root = seg_set(tmp / "d")
    png = root / "train" / "images" / "s0.png"
    png.write_bytes(png.read_bytes()[:-40])
    return str(root)


def _empty_split(tmp: Path) -> str:
    root = seg_set(tmp / "d")
    (root / "test" / "images").mkdir(parents=True)
    return str(root)


def _pickled(tmp: Path) -> str:
    with (tmp / "evil.ckpt").open("wb") as fh:
        torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Evil()}, fh)
    return str(tmp / "evil.ckpt")


def _run_dir(tmp: Path) -> str:
    (tmp / "run").mkdir()
    (tmp / "run" / "config.yaml").write_text("method: mocov2\n")
    return str(tmp / "run")


def _r50(tmp: Path) -> str:
    import timm

    from pathseg.models import save_encoder

    model = timm.create_model("resnet50", pretrained=False, num_classes=0)
    return str(save_encoder(tmp / "enc.safetensors", model.state_dict(), "resnet18", (0.5,) * 3, (0.2,) * 3))


CASES: dict[str, Case] = {
    "tile --out FILE": Case(lambda t: ["tile", _slide(t), "--out", _file(t)],
                            ("{tmp}/afile", "exists and is a file")),
    "pretrain --out FILE": Case(lambda t: ["pretrain", "--data", str(seg_set(t / "d")), "--out", _file(t)],
                                ("{tmp}/afile", "exists and is a file")),
    "finetune --out FILE --overwrite": Case(
        lambda t: ["finetune", "--data", str(seg_set(t / "d")), "--out", _file(t), "--overwrite"],
        ("{tmp}/afile", "exists and is a file")),
    "export --out DIR": Case(lambda t: ["export", _run_dir(t), "--out", _dir(t, "e.safetensors")],
                             ("{tmp}/e.safetensors", "is a directory")),
    "tile unwritable": Case(lambda t: ["tile", _slide(t), "--out", str(UNWRITABLE / "o")],
                            ("/proc", "cannot write")),
    "data convert unwritable": Case(lambda t: ["data", "convert", "glas", str(t), "--out", str(UNWRITABLE / "o")],
                                    ("/proc", "cannot write")),
    "synth unwritable": Case(lambda t: ["synth", "--out", str(UNWRITABLE / "o"), "--n", "2"],
                             ("/proc", "cannot write")),
    "finetune unwritable": Case(lambda t: ["finetune", "--data", str(seg_set(t / "d")), "--out",
                                           str(UNWRITABLE / "o")], ("/proc", "cannot write")),
    "pretrain unwritable": Case(lambda t: ["pretrain", "--data", str(seg_set(t / "d")), "--out",
                                           str(UNWRITABLE / "o")], ("/proc", "cannot write")),
    "export unwritable": Case(lambda t: ["export", _run_dir(t), "--out", str(UNWRITABLE / "e.safetensors")],
                              ("/proc", "cannot write")),
    "data subset unwritable": Case(lambda t: ["data", "subset", "/proc", "--fraction", "0.5"],
                                   ("/proc", "cannot write")),
    "evaluate unwritable": Case(lambda t: ["evaluate", "--run", "/proc", "--data", str(seg_set(t / "d"))],
                                ("/proc", "cannot write")),
    "--seeds -1": Case(lambda t: ["finetune", "--data", str(seg_set(t / "d")), "--out", str(t / "o"),
                                  "--seeds", "-1"], ("--seeds", "-1")),
    "--seeds 0,0": Case(lambda t: ["finetune", "--data", str(seg_set(t / "d")), "--out", str(t / "o"),
                                   "--seeds", "0,0"], ("--seeds", "repeated")),
    "data subset --seed -1": Case(lambda t: ["data", "subset", str(seg_set(t / "d")), "--seed", "-1"],
                                  ("--seed", "-1")),
    "pretrain --resume-from pickled": Case(
        lambda t: ["pretrain", "--data", str(seg_set(t / "d")), "--out", str(t / "o"), "--resume-from", _pickled(t)],
        ("{tmp}/evil.ckpt", "pickled Python objects")),
    "data convert monuseg on GlaS": Case(
        lambda t: ["data", "convert", "monuseg", _glas_like(t), "--out", str(t / "o")],
        ("{tmp}/glas", "looks like glas, not monuseg")),
    "tile --size 100000": Case(lambda t: ["tile", _slide(t), "--out", str(t / "o"), "--size", "100000"],
                               ("s.tiff", "smaller than one tile")),
    "data check truncated image": Case(lambda t: ["data", "check", _truncated(t)], ("s0.png", "cannot decode")),
    "data check bad mask value": Case(lambda t: ["data", "check", _bad_value(t)], ("s1.png", "mask values [7]")),
    "data check size mismatch": Case(lambda t: ["data", "check", _size_mismatch(t)], ("s2.png", "differs")),
    "data check empty split": Case(lambda t: ["data", "check", _empty_split(t)], ("test/images", "no images")),
    "unknown key": Case(lambda t: ["synth", "--out", str(t / "o"), "renderr.x=1"], ("unknown key 'renderr",)),
    "YAML error": Case(lambda t: ["synth", "--config", _yaml(t), "--out", str(t / "o")],
                       ("c.yaml", "YAML syntax error")),
    "truncated slide": Case(lambda t: ["slides", "info", _truncated_slide(t)], ("broken.tiff",)),
    "slide without µm/px": Case(lambda t: ["tile", _png_slide(t), "--out", str(t / "o")], ("plain.png", "µm/px")),
}


def _glas_like(tmp: Path) -> str:
    """A re-packed GlaS copy (testA_<n> ids), without dataset.yaml."""
    root = seg_set(tmp / "glas", split="testA")
    (root / "dataset.yaml").unlink()
    for p in (root / "testA").rglob("s*.png"):
        p.rename(p.with_name(p.name.replace("s", "testA_")))
    return str(root)


def _yaml(tmp: Path) -> str:
    (tmp / "c.yaml").write_text("n: 2\nkind: [segmentation\n")
    return str(tmp / "c.yaml")


def _truncated_slide(tmp: Path) -> str:
    full = Path(_slide(tmp)).read_bytes()
    (tmp / "broken.tiff").write_bytes(full[:4000])
    return str(tmp / "broken.tiff")


def _png_slide(tmp: Path) -> str:
    Image.fromarray(np.full((600, 600, 3), 200, np.uint8)).save(tmp / "plain.png")
    return str(tmp / "plain.png")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_row(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    argv = case.setup(tmp_path)
    before = _tree(tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for word in case.expect:
        assert word.replace("{tmp}", str(tmp_path)) in errors[0], errors[0]
    assert _tree(tmp_path) - before <= {"d/.pathseg_check_cache.json"}, "something was written"


def test_per_slide_failures_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _slide(tmp_path)
    bad = _truncated_slide(tmp_path)
    code = main(["tile", good, bad, "--out", str(tmp_path / "o"), "--size", "128"])
    err = capsys.readouterr().err
    assert code == 2
    assert any(ln.startswith("error:") and "broken.tiff" in ln for ln in err.splitlines())
    assert "1 of 2 slide(s) failed" in err.strip().splitlines()[-1]
    assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1
    assert (tmp_path / "o" / "s" / "done.json").is_file()  # the good slide is finished and kept


def test_bug_exit_1_and_interrupt_130(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import pathseg.synth.command as synth

    def boom(cfg: object) -> int:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(synth, "synth_command", boom)
    assert main(["synth", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: internal error (ZeroDivisionError") and "please report" in err[0]

    def interrupted(cfg: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "synth_command", interrupted)
    assert main(["synth", "--out", str(tmp_path / "o")]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["error: interrupted"]

    def lightning_style(cfg: object) -> int:  # Lightning: graceful shutdown, then sys.exit(1)
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)

    monkeypatch.setattr(synth, "synth_command", lightning_style)
    assert main(["synth", "--out", str(tmp_path / "o")]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["error: interrupted"]


def test_pickled_checkpoint_is_never_unpickled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pathseg.errors import PathsegError
    from pathseg.io import load_checkpoint_weights_only

    with pytest.raises(PathsegError, match="pickled Python objects"):
        load_checkpoint_weights_only(_pickled(tmp_path))
    (tmp_path / "raw.ckpt").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(PathsegError, match=r"raw\.ckpt"):
        load_checkpoint_weights_only(tmp_path / "raw.ckpt")
    assert "pwned" not in capsys.readouterr().out
    torch.save({"state_dict": {"w": torch.ones(2)}, "global_step": 3}, tmp_path / "ok.ckpt")
    assert load_checkpoint_weights_only(tmp_path / "ok.ckpt")["global_step"] == 3


ENGINE_CASES: dict[str, Case] = {
    "finetune mask values": Case(lambda t: ["finetune", "--data", _bad_value(t), "--out", str(t / "o"),
                                            "--test-split", "train", "trainer.max_steps=1"], ("s1.png", "mask values")),
    "evaluate mask values": Case(lambda t: ["evaluate", "--run", str(t / "run"), "--data", _bad_value(t),
                                            "--split", "train"], ("s1.png", "mask values")),
    "finetune size mismatch": Case(lambda t: ["finetune", "--data", _size_mismatch(t), "--out", str(t / "o"),
                                              "--test-split", "train", "trainer.max_steps=1"], ("s2.png", "differs")),
    "finetune resnet50 weights for resnet18": Case(
        lambda t: ["finetune", "--data", str(seg_set(t / "d")), "--encoder", _r50(t), "--backbone", "resnet18",
                   "--out", str(t / "o"), "--test-split", "train", "trainer.max_steps=1"],
        ("enc.safetensors", "the file looks like resnet50, the model is resnet18")),
}


@pytest.mark.parametrize("name", list(ENGINE_CASES))
def test_bad_input_row_needing_engine(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = ENGINE_CASES[name]
    argv = case.setup(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(errors) == 1, err
    for word in case.expect:
        assert word in errors[0], errors[0]
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.partial").exists()  # refused before any output


@pytest.mark.slow
def test_ctrl_c_in_pretrain_exits_130(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    root = seg_set(tmp_path / "d", n=8, size=(64, 64))
    cmd = [sys.executable, "-m", "pathseg.cli.main", "pretrain", "--data", str(root), "--out", str(tmp_path / "o"),
           "--backbone", "resnet18", "--batch-size", "4", "--num-workers", "0", "--crop-size", "32",
           "trainer.max_steps=100000", "trainer.accelerator=cpu"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    time.sleep(20)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "error: interrupted"


def test_help_lists_most_used_nested_keys(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    out = capsys.readouterr().out
    section = out.split("nested keys", 1)[1]
    assert "most used: trainer.max_steps" in section and "optim.lr" in section.splitlines()[1]
    lines = [ln.split()[0] for ln in section.splitlines()[2:] if ln.startswith("  ")]
    assert lines[0] == "trainer.max_steps=" + lines[0].split("=", 1)[1]
    assert any(ln.startswith("optim.lr=") for ln in lines) and any(ln.startswith("inference.") for ln in lines)
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    assert "trainer.max_steps=" in capsys.readouterr().out
