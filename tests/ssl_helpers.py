"""Helpers of the pretraining tests: tiny H&E-like data sets in the canonical layout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pathseg.data.layout import ClassInfo, DatasetInfo, write_dataset_info
from pathseg.io import write_png


def he_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random pink/purple blob image (uint8 ``[size, size, 3]``)."""
    yy, xx = np.mgrid[:size, :size]
    img = np.empty((size, size, 3), np.float64)
    img[:] = (235, 200, 225)
    for _ in range(int(rng.integers(4, 10))):
        cy, cx, r = [*rng.uniform(0, size, 2).tolist(), rng.uniform(size / 12, size / 5)]
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img[blob] = rng.choice([(120, 60, 160), (200, 90, 150), (150, 80, 170)])
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_unlabeled(root: Path, n: int = 16, size: int = 48, splits: tuple[str, ...] = ("train",)) -> Path:
    """A canonical ``unlabeled`` data set with ``n`` images per split."""
    rng = np.random.default_rng(0)
    write_dataset_info(root, DatasetInfo(name="tiny", task="unlabeled"))
    for split in splits:
        for i in range(n):
            write_png(root / split / "images" / f"{split}_{i:03d}.png", he_image(rng, size))
    return root


def make_classification(root: Path, n: int = 8, size: int = 32) -> Path:
    """A two-class classification data set (train/test) whose classes differ in colour."""
    rng = np.random.default_rng(1)
    write_dataset_info(root, DatasetInfo(name="cls", task="classification",
                                         classes=[ClassInfo("a", 0), ClassInfo("b", 1)]))
    for split in ("train", "test"):
        lines = ["id,label"]
        for i in range(n):
            label = i % 2
            img = he_image(rng, size)
            if label:
                img = (img * 0.5).astype(np.uint8)
            write_png(root / split / "images" / f"{i:03d}.png", img)
            lines.append(f"{i:03d},{label}")
        (root / split / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def one_thread() -> Iterator[None]:
    """Generator body of a fixture running a test with one torch thread (OpenMP threads thrash on a busy 2-core box)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Killed(Exception):
    """Raised by :class:`Kill`."""


def make_kill(at: int) -> Any:
    """A Lightning callback that simulates a kill: raises :class:`Killed` when step ``at`` starts (the checkpoint
    of step ``at`` has been written)."""
    import lightning as L

    class Kill(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
            if trainer.global_step == at:
                raise Killed(f"killed at step {at}")

    return Kill()


def build_unit(tmp: Path, tiny: dict[str, Any], extra: dict[str, Any] | None = None,
               **args: Any) -> tuple[Any, Any]:
    """A tiny UNIT method on two random 80 px images written to ``tmp/real``, and one collated batch of them."""
    import torch

    from pathseg.config import from_dict
    from pathseg.ssl.api import BuildContext, load_methods

    spec = load_methods().get("unit")
    cfg = from_dict(spec.config, {**tiny, **args}, prefix="method_args.")
    real = tmp / "real"
    real.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        write_png(real / f"r{i}.png", rng.integers(0, 255, (80, 80, 3), dtype=np.uint8))
    ctx = BuildContext(backbone="resnet18", crop_size=64, mean=(0.5,) * 3, std=(0.5,) * 3, data=real,
                       extra=extra or {})
    torch.manual_seed(0)
    method = spec.build_model(cfg, ctx)
    data = spec.build_dataset(cfg, ctx, None)
    return method, torch.utils.data.default_collate([data[0], data[1]])
