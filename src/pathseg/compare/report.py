"""The comparison's report: ``results.csv``, ``results.md`` and plots (from the cells' ``metrics.json``).

``results.md`` holds, per task, the mean ± sample std over seeds of the summary metric per method x label
fraction (best mean per column in bold), then a paired comparison of every method against each baseline
(random init, MoCo v2) over the same seeds (same label subsets, same fine-tuning seeds): the mean paired
difference and the sign count (better / worse / tied seeds), then the cost of every method.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pathseg.compare.config import CompareConfig

if TYPE_CHECKING:
    from pathseg.compare.runner import CellResult

log = logging.getLogger(__name__)
FIXED = ["method", "task", "fraction", "seed", "metric", "score", "cost_s"]
Table = dict[tuple[str, str, float], dict[int, float]]  # (method, task, fraction) -> seed -> score


def seed_rows(results: Sequence[CellResult]) -> list[dict[str, Any]]:
    """One row per cell x seed: the summary score, every scalar per-seed metric and the cost in seconds.

    ``cost_s`` is the cell's wall time divided evenly over its seeds.
    """
    rows = []
    for r in results:
        per_seed = r.metrics.get("per_seed", {})
        metric = r.cell.metric(r.metrics)
        for seed in r.cell.config.seeds:
            m = per_seed.get(str(seed), {})
            row: dict[str, Any] = {"method": r.cell.method, "task": r.cell.task.name, "fraction": r.cell.fraction,
                                   "seed": seed, "metric": metric, "score": m.get(metric),
                                   "cost_s": round(r.seconds / len(r.cell.config.seeds), 3)}
            row.update({k: v for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)})
            rows.append(row)
    return rows


def csv_text(rows: list[dict[str, Any]]) -> str:
    """CSV with the fixed columns first, then every metric column in order of appearance."""
    columns = list(FIXED)
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def score_table(rows: list[dict[str, Any]]) -> Table:
    """Scores by (method, task, fraction) and seed (rows without a score are left out)."""
    table: Table = {}
    for row in rows:
        if row["score"] is not None:
            table.setdefault((row["method"], row["task"], row["fraction"]), {})[row["seed"]] = float(row["score"])
    return table


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def paired(a: dict[int, float], b: dict[int, float]) -> tuple[float, int, int, int, int] | None:
    """Mean of ``a - b`` over the seeds both have, and the counts better / worse / tied / paired seeds."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    return (sum(diffs) / len(diffs), sum(d > 0 for d in diffs), sum(d < 0 for d in diffs),
            sum(d == 0 for d in diffs), len(diffs))


def _score_section(cfg: CompareConfig, table: Table, task: str, metric: str) -> list[str]:
    fr = list(cfg.fractions)
    lines = [f"## {task} ({metric}, mean ± std over seeds {list(cfg.seeds)})", "",
             "| method | " + " | ".join(f"{f:g} labels" for f in fr) + " |", "|---" * (len(fr) + 1) + "|"]
    best = {f: max((mean_std(list(v.values()))[0] for (m, t, ff), v in table.items() if t == task and ff == f),
                   default=None) for f in fr}
    for method in (m.name for m in cfg.methods):
        cells = []
        for f in fr:
            scores = table.get((method, task, f))
            if not scores:
                cells.append("n/a")
                continue
            mean, std = mean_std(list(scores.values()))
            text = f"{mean:.4f} ± {std:.4f}"
            cells.append(f"**{text}**" if best[f] is not None and mean == best[f] else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _paired_section(cfg: CompareConfig, table: Table, task: str) -> list[str]:
    lines = []
    names = [m.name for m in cfg.methods]
    for base in (b for b in cfg.baselines if b in names):
        lines += [f"Paired against {base} (mean difference; seeds better/worse/tied):", "",
                  "| method | " + " | ".join(f"{f:g} labels" for f in cfg.fractions) + " |",
                  "|---" * (len(cfg.fractions) + 1) + "|"]
        for method in (n for n in names if n != base):
            cells = []
            for f in cfg.fractions:
                p = paired(table.get((method, task, f), {}), table.get((base, task, f), {}))
                cells.append("n/a" if p is None else f"{p[0]:+.4f} ({p[1]}/{p[2]}/{p[3]} of {p[4]})")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def cost_by_method(rows: list[dict[str, Any]], pretrain_s: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Per method: (pretraining seconds, fine-tuning seconds summed over every cell and seed)."""
    cost: dict[str, tuple[float, float]] = {}
    for row in rows:
        pre, fine = cost.get(row["method"], (pretrain_s.get(row["method"], 0.0), 0.0))
        cost[row["method"]] = (pre, fine + float(row["cost_s"]))
    return cost


def markdown(cfg: CompareConfig, rows: list[dict[str, Any]], pretrain_s: dict[str, float]) -> str:
    """The whole ``results.md``."""
    table = score_table(rows)
    lines = ["# Comparison results", "", f"Unlabeled data: `{cfg.unlabeled or 'none'}`; seeds {list(cfg.seeds)}; "
             f"label fractions {list(cfg.fractions)}. Per-seed numbers are in `results.csv`.", ""]
    for t in cfg.tasks:
        metric = next((r["metric"] for r in rows if r["task"] == t.name), t.metric or "score")
        lines += _score_section(cfg, table, t.name, metric) + _paired_section(cfg, table, t.name)
    lines += ["## Cost (seconds)", "", "| method | pretraining | fine-tuning (all cells) |", "|---|---|---|"]
    for method, (pre, fine) in cost_by_method(rows, pretrain_s).items():
        lines.append(f"| {method} | {pre:.1f} | {fine:.1f} |")
    return "\n".join(lines) + "\n"


def plot_scores(cfg: CompareConfig, rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """One picture per task: summary metric vs label fraction, mean with std error bars per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table, paths = score_table(rows), []
    for t in cfg.tasks:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for m in cfg.methods:
            pts = [(f, *mean_std(list(table[(m.name, t.name, f)].values())))
                   for f in cfg.fractions if table.get((m.name, t.name, f))]
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                            capsize=3, label=m.name)
        metric = next((r["metric"] for r in rows if r["task"] == t.name), "score")
        ax.set(xlabel="label fraction", ylabel=metric, title=t.name)
        if len(cfg.fractions) > 1 and min(cfg.fractions) > 0:
            ax.set_xscale("log")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(_save(fig, folder / f"{t.name}_{metric}.png"))
    return paths


def plot_cost(rows: list[dict[str, Any]], pretrain_s: dict[str, float], path: Path) -> Path:
    """Stacked bars: pretraining and fine-tuning seconds per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cost = cost_by_method(rows, pretrain_s)
    names = list(cost)
    fig, ax = plt.subplots(figsize=(max(4, len(names)), 3.5))
    pre = [cost[n][0] for n in names]
    ax.bar(names, pre, label="pretraining")
    ax.bar(names, [cost[n][1] for n in names], bottom=pre, label="fine-tuning")
    ax.set(ylabel="seconds", title="cost per method")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from pathseg.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def write_report(cfg: CompareConfig, results: Sequence[CellResult], pretrain_s: dict[str, float],
                 out: Path) -> list[dict[str, Any]]:
    """Write ``results.csv``, ``results.md`` and ``plots/*.png`` into ``out``; returns the CSV rows."""
    from pathseg.io import atomic_write_text

    rows = seed_rows(results)
    atomic_write_text(out / "results.csv", csv_text(rows))
    atomic_write_text(out / "results.md", markdown(cfg, rows, pretrain_s))
    plot_scores(cfg, rows, out / "plots")
    plot_cost(rows, pretrain_s, out / "plots" / "cost.png")
    log.info("compare: wrote %s, results.md and plots/", out / "results.csv")
    return rows
