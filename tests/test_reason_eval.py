"""Per-reason F1 and its thresholds (``skin-capture-model reason-f1``), and folding tuned
thresholds into an exported model's reason outputs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from model_export.data.degradations import REASONS
from model_export.evaluation.reason_eval import reason_f1, tune_thresholds


def _write(
    tmp_path: Path, truth: list[int], probs: list[float], split: list[str]
) -> tuple[Path, Path]:
    dataset = tmp_path / "dataset.csv"
    scores = tmp_path / "scores.csv"
    with dataset.open("w", newline="") as f:
        w = csv.DictWriter(f, ["image", *REASONS])
        w.writeheader()
        for i, t in enumerate(truth):
            w.writerow({"image": f"img{i}.png", **dict.fromkeys(REASONS, 0), "blur": t})
    with scores.open("w", newline="") as f:
        w = csv.DictWriter(f, ["image", "split", *[f"reason_{r}" for r in REASONS]])
        w.writeheader()
        for i, p in enumerate(probs):
            row = {f"reason_{r}": 0.0 for r in REASONS}
            row["reason_blur"] = p
            w.writerow(
                {"image": str((tmp_path / f"img{i}.png").resolve()), "split": split[i], **row}
            )
    return scores, dataset


def test_f1_at_one_and_at_per_reason_thresholds(tmp_path: Path) -> None:
    # blur: 4 positives scored 0.3-0.45 (under 0.5), 4 negatives scored 0.05-0.2
    truth = [1, 1, 1, 1, 0, 0, 0, 0]
    probs = [0.3, 0.35, 0.4, 0.45, 0.05, 0.1, 0.15, 0.2]
    scores, dataset = _write(tmp_path, truth, probs, ["val"] * 8)
    at_half = reason_f1(scores, [dataset])["val"]["blur"]
    assert at_half["f1"] == 0.0 and at_half["support"] == 4 and at_half["recall"] == 0.0
    tuned = tune_thresholds(scores, [dataset], "val")
    assert 0.2 < tuned["blur"] <= 0.3  # the highest-F1 cut nearest 0.5 separates the two groups
    table = reason_f1(scores, [dataset], tuned)["val"]
    assert table["blur"]["f1"] == 1.0 and table["blur"]["threshold"] == tuned["blur"]
    # a reason with no positives and no alarms keeps a finite, central threshold
    assert tuned["dark"] == 0.5


def test_reported_on_another_split_than_tuned(tmp_path: Path) -> None:
    truth = [1, 0, 1, 0]
    probs = [0.3, 0.1, 0.1, 0.3]  # the test split contradicts what val suggests
    scores, dataset = _write(tmp_path, truth, probs, ["val", "val", "test", "test"])
    tuned = tune_thresholds(scores, [dataset], "val")
    report = reason_f1(scores, [dataset], tuned)
    assert report["val"]["blur"]["f1"] == 1.0
    assert report["test"]["blur"]["f1"] == 0.0


def test_tuning_on_several_splits_pools_them(tmp_path: Path) -> None:
    # "val" alone: positives at 0.6, negatives at 0.3 -> a cut in (0.3, 0.6]; a second set whose
    # positives score only 0.4 pulls the pooled cut below 0.4, which keeps val separated too
    truth = [1, 1, 0, 0, 1, 1, 0, 0]
    probs = [0.6, 0.6, 0.3, 0.3, 0.4, 0.4, 0.1, 0.1]
    split = ["val"] * 4 + ["external:v2"] * 4
    scores, dataset = _write(tmp_path, truth, probs, split)
    val_only = tune_thresholds(scores, [dataset], "val")["blur"]
    pooled = tune_thresholds(scores, [dataset], ["val", "external:v2"])["blur"]
    assert 0.3 < val_only <= 0.6 and val_only > 0.4
    assert 0.3 < pooled <= 0.4
    report = reason_f1(scores, [dataset], {"blur": pooled})
    assert report["val"]["blur"]["f1"] == 1.0 and report["external:v2"]["blur"]["f1"] == 1.0


def test_folded_thresholds_move_the_decision_point() -> None:
    torch = pytest.importorskip("torch")
    from model_export.export.onnx_graph import ExportCheckError, fold_reason_thresholds
    from model_export.model.features import build_trunk
    from model_export.model.network import PatchMILQualityNet, QualityHead

    torch.manual_seed(0)
    head = QualityHead(n_reasons=2, embed_dim=8, hidden_dim=16)
    model = PatchMILQualityNet(head, build_trunk("random", seed=0)).eval()
    patches = torch.rand(3, 3, 32, 32)
    positions = torch.zeros(3, 2)
    with torch.inference_mode():
        before = model(patches, positions)[4][0].numpy()
    thresholds = {"blur": 0.3, "dark": 0.8}
    fold_reason_thresholds(model, ["blur", "dark"], thresholds)
    with torch.inference_mode():
        after = model(patches, positions)[4][0].numpy()
    for i, t in enumerate(thresholds.values()):
        logit = np.log(before[i] / (1 - before[i])) - np.log(t / (1 - t))
        assert after[i] == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-5)
        assert (after[i] >= 0.5) == (before[i] >= t)
    with pytest.raises(ExportCheckError):
        fold_reason_thresholds(model, ["blur", "dark"], {"glare": 0.4})
    with pytest.raises(ExportCheckError):
        fold_reason_thresholds(model, ["blur", "dark"], {"blur": 1.0})
