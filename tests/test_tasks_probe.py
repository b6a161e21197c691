"""Probes: kNN against a brute-force vote, linear probe on separable features, the probe command."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pathseg.cli.main import main
from pathseg.tasks.probe import knn_predict, linear_probe
from tasks_helpers import make_classification_set


def brute_knn(train_x, train_y, test_x, num_classes, k, t):
    out = []
    for q in test_x.tolist():
        sims = []
        for x, y in zip(train_x.tolist(), train_y.tolist()):
            dot = sum(a * b for a, b in zip(q, x))
            norm = math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in x))
            sims.append((dot / norm, y))
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * num_classes
        for s, y in sims[:k]:
            votes[y] += math.exp(s / t)
        out.append([v / sum(votes) for v in votes])
    return torch.tensor(out)


def test_knn_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(30, 5, generator=g), torch.randn(7, 5, generator=g)
    train_y = torch.randint(0, 3, (30,), generator=g)
    got = knn_predict(train_x, train_y, test_x, 3, k=5, temperature=0.5)
    torch.testing.assert_close(got, brute_knn(train_x, train_y, test_x, 3, 5, 0.5), atol=1e-5, rtol=1e-5)
    assert knn_predict(train_x, train_y, test_x, 3, k=100).shape == (7, 3)  # k larger than the train set


def test_linear_probe_separates_separable_features():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(3, 8, generator=g) * 4
    y = torch.arange(60) % 3
    x = centres[y] + torch.randn(60, 8, generator=g)
    probs = linear_probe(x[:45], y[:45], x[45:], 3, epochs=100, lr=0.1)
    assert (probs.argmax(1) == y[45:]).float().mean() == 1.0
    torch.testing.assert_close(probs.sum(1), torch.ones(15))


@pytest.mark.parametrize("kind", ["knn", "linear"])
def test_probe_command(tmp_path, capsys, kind):
    data = make_classification_set(tmp_path / "c")
    out = tmp_path / kind
    code = main(["probe", "--kind", kind, "--data", str(data), "--out", str(out), "--image-size", "32",
                 "--seeds", "0,1", "--label-fraction", "0.5", "--k", "3", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == kind and metrics["per_seed"]["0"]["num_train_images"] == 6
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc"):
        assert key in metrics and f"{key}_std" in metrics
    assert (out / "features.safetensors").is_file() and (out / "confusion_matrix.png").is_file()


def test_probe_refuses_segmentation_data(tmp_path, capsys):
    from tasks_helpers import make_segmentation_set

    data = make_segmentation_set(tmp_path / "d", splits={"train": 1, "test": 1})
    assert main(["probe", "--data", str(data), "--out", str(tmp_path / "p")]) == 2
    assert "classification data set" in capsys.readouterr().err
