"""Pictures written by every run (matplotlib, Agg backend, PNG): curves, prediction overlays, confusion matrix."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pathseg.io import atomic_path


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: object, path: str | os.PathLike[str]) -> None:
    plt = _plt()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")  # type: ignore[attr-defined]
    plt.close(fig)


def read_csv_log(path: str | os.PathLike[str]) -> dict[str, list[tuple[int, float]]]:
    """``{column: [(step, value), ...]}`` from a Lightning CSV log (empty cells skipped)."""
    series: dict[str, list[tuple[int, float]]] = {}
    p = Path(path)
    if not p.is_file():
        return series
    with p.open(newline="") as fh:
        for row in csv.DictReader(fh):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                try:
                    series.setdefault(key, []).append((step, float(value)))
                except ValueError:
                    continue
    return series


def plot_curves(csv_path: str | os.PathLike[str], out: str | os.PathLike[str], title: str = "") -> bool:
    """Loss curve (left) and validation metrics (right) against the step; ``False`` if the log is empty."""
    series = read_csv_log(csv_path)
    if not series:
        return False
    plt = _plt()
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.5))
    has_val = False
    for key, points in series.items():
        steps, values = zip(*points)
        if "loss" in key:
            line = ax_loss.plot(steps, values, lw=0.8, alpha=0.35)[0]
            ax_loss.plot(steps, _ema(values), lw=1.6, color=line.get_color(), label=f"{key} (smoothed)")
        elif key.startswith("val_"):
            ax_val.plot(steps, values, marker="o", label=key)
            has_val = True
    ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
    ax_val.set(xlabel="step", ylabel="metric", title="validation", ylim=(0, 1))
    if not has_val:
        ax_val.text(0.5, 0.5, "no validation split", ha="center", va="center", transform=ax_val.transAxes)
    for ax in (ax_loss, ax_val):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    _save(fig, out)
    return True


def _ema(values: Sequence[float], alpha: float = 0.2) -> list[float]:
    out: list[float] = []
    for v in values:
        out.append(v if not out else (1 - alpha) * out[-1] + alpha * v)
    return out


def colorize(mask: np.ndarray, palette: Sequence[tuple[int, int, int]], ignore_index: int = 255) -> np.ndarray:
    """``[H, W]`` labels → ``[H, W, 3]`` uint8 colours; ignored pixels grey."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:] = (128, 128, 128)
    for i, color in enumerate(palette[:256]):
        lut[i] = color
    lut[ignore_index % 256] = (128, 128, 128)
    return lut[np.clip(mask, 0, 255).astype(np.uint8)]


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct colours from matplotlib's tab10/tab20."""
    plt = _plt()
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")
    return [tuple(int(255 * c) for c in cmap(i % cmap.N)[:3]) for i in range(num_classes)]  # type: ignore[misc]


def plot_overlays(
    examples: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    out: str | os.PathLike[str],
    palette: Sequence[tuple[int, int, int]],
    ignore_index: int = 255,
    alpha: float = 0.45,
    class_names: Sequence[str] = (),
) -> bool:
    """One row per example: image | ground truth over image | prediction over image.

    Args:
        examples: ``(id, image [H, W, 3] uint8, ground truth [H, W], prediction [H, W])``.
        out: PNG path.
        palette: Colour per class; classes coloured black (0, 0, 0) are not painted.
        ignore_index: Ground-truth value drawn without overlay.
        alpha: Opacity of the label colours.
        class_names: Names for the legend.
    """
    if not examples:
        return False
    plt = _plt()
    from matplotlib.patches import Patch
    aspect = max(e[1].shape[0] / max(e[1].shape[1], 1) for e in examples)
    row_height = min(6.0, max(1.5, 3.3 * aspect + 0.4))
    fig, axes = plt.subplots(len(examples), 3, figsize=(10, row_height * len(examples) + 0.4), squeeze=False)
    for row, (sid, image, gt, pred) in zip(axes, examples):
        img = image.astype(np.float32)
        for ax, (name, labels) in zip(row, [("image", None), ("ground truth", gt), ("prediction", pred)]):
            if labels is None:
                shown = image
            else:
                colour = colorize(labels, palette, ignore_index).astype(np.float32)
                # ignored pixels and classes coloured black (usually the background) are left unpainted
                keep = ((labels == ignore_index) | (colour.sum(axis=-1) == 0))[..., None]
                shown = np.where(keep, img, (1 - alpha) * img + alpha * colour).astype(np.uint8)
            ax.imshow(shown)
            ax.set_title(f"{sid}: {name}" if name == "image" else name, fontsize=9)
            ax.axis("off")
    if class_names:
        handles = [Patch(color=(c[0] / 255, c[1] / 255, c[2] / 255), label=n)
                   for n, c in zip(class_names, palette) if sum(c) > 0]
        if handles:
            fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=9)
    _save(fig, out)
    return True


def plot_confusion(
    matrix: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str], out: str | os.PathLike[str],
    title: str = "confusion matrix (rows normalised)",
) -> None:
    """Row-normalised confusion matrix (rows = ground truth) with class names and the percentages."""
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = m.shape[0]
    names = list(class_names) if len(class_names) == k else [str(i) for i in range(k)]
    plt = _plt()
    size = max(3.5, 0.6 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set(xlabel="prediction", ylabel="ground truth", title=title)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{100 * norm[i, j]:.0f}%", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, out)
