"""Every command of the README's CLI tour runs, in order, in-process, with tiny overrides appended.

The commands are read from the first ``bash`` block after "## A tour of the CLI". They run in a temporary working
directory; ``../shared/data`` is replaced by a small copy (a few GlaS images, the two slides) and ``configs/`` by
the repository's configs. The overrides only shrink the work (steps, batch, crop, image count); paths and names
are those of the README, so a command reading what an earlier one wrote must find it under the same name.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from pathseg.cli.main import _find, all_commands, main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CPU = ["trainer.accelerator=cpu"]
PRETRAIN = ["--batch-size", "4", "--num-workers", "0", "--crop-size", "64", "trainer.max_steps=2",
            "trainer.log_every_n_steps=1", "trainer.progress_bar=false", "checkpoint.every_n_steps=0", *CPU]
TINY: dict[str, list[str]] = {
    "synth": ["--n", "8", "--size", "96"],
    "pretrain": PRETRAIN,
    "finetune": ["--seeds", "0", "--crop-size", "64", "trainer.max_steps=2", "trainer.val_every_steps=1",
                 "trainer.batch_size=2", "trainer.num_workers=0", "inference.num_examples=1", *CPU],
    "evaluate": ["--device", "cpu", "--no-pictures"],
    "wsss": ["stage1.epochs=1", "stage2.epochs=1", "stage1.max_steps=2", "stage2.max_steps=2",
             "stage1.batch_size=4", "stage2.batch_size=2", "pseudo.max_images=4"],
}
URL_TINY = ["--batch-size", "2", "method_args.views.patch_size=96", "method_args.superpixels.region_size=16"]


def tour_commands(text: str) -> list[list[str]]:
    """The tour's commands as argument lists (continuation lines joined, comments dropped)."""
    section = text.split("## A tour of the CLI", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def _mini_shared(dst: Path, shared: Path) -> Path:
    """A few GlaS images (train and testA), the grade table and the slides."""
    for split, n in (("train", 6), ("testA", 3)):
        for kind in ("images", "masks"):
            (dst / "glas" / split / kind).mkdir(parents=True)
            for p in sorted((shared / "glas" / split / kind).iterdir())[:n]:
                shutil.copy(p, dst / "glas" / split / kind / p.name)
    shutil.copy(shared / "glas" / "grade.csv", dst / "glas" / "grade.csv")
    (dst / "slides").symlink_to(shared / "slides")
    return dst


def _localise(args: list[str], shared: Path) -> list[str]:
    out = []
    for a in args:
        a = a.replace("../shared/data", str(shared))
        if a.startswith("configs/"):
            a = str(REPO / a)
        out.append(a)
    return out


def test_tour_is_parsed_and_names_real_commands() -> None:
    commands = tour_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 15
    known = all_commands()
    for cmd in commands:
        assert cmd[0] == "pathseg"
        found, _ = _find(known, cmd[1:])
        assert found is not None, cmd
    names = [" ".join(c[1:3]) for c in commands]
    assert any(n.startswith("data import") for n in names)
    # what the tour pretrains on is made by the tour, and the exported encoder is the one fine-tuned
    pre = next(c for c in commands if c[1] == "pretrain")
    data = pre[pre.index("--data") + 1]
    assert any(c[1] == "synth" and c[c.index("--out") + 1] == data for c in commands)
    export = next(c for c in commands if c[1] == "export")
    ft = next(c for c in commands if c[1] == "finetune")
    assert export[export.index("--out") + 1] == ft[ft.index("--encoder") + 1]


@pytest.mark.slow
def test_readme_tour_runs(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    shared = _mini_shared(tmp_path / "shared", shared_data)
    work = tmp_path / "clone"
    work.mkdir()
    monkeypatch.chdir(work)
    known = all_commands()
    for cmd in tour_commands(README.read_text(encoding="utf-8")):
        found, _ = _find(known, cmd[1:])
        assert found is not None
        extra = list(TINY.get(found.name, []))
        if found.name == "pretrain" and any("url_" in a for a in cmd):
            extra += URL_TINY
        argv = _localise(cmd[1:], shared) + extra
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 0, f"{' '.join(cmd)}\n{err[-3000:]}"
