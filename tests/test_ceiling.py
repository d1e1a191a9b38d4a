"""Label ceilings of a built dataset (``skin-capture-model label-ceiling``)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from model_export.cli import main
from model_export.data.degradations import REASONS
from model_export.data.raters import CURVE_OF_FAMILY, RaterModel
from model_export.evaluation.ceiling import CeilingError, best_f1, label_ceiling


def test_best_f1_decides_tied_scores_together() -> None:
    # >= 0.9: 1 of 1 right (F1 2/3); >= 0.8 takes both tied 0.8s: 2 of 3 (F1 0.8); all: 2/3
    f1, threshold = best_f1(np.array([0.9, 0.8, 0.8, 0.1]), np.array([1, 0, 1, 0]))
    assert f1 == pytest.approx(0.8)
    assert threshold == pytest.approx(0.8)
    assert math.isnan(best_f1(np.array([0.3, 0.2]), np.array([0, 0]))[0])


def _model() -> RaterModel:
    curves = {name: (1.0, 0.2) for name in set(CURVE_OF_FAMILY.values())}
    return RaterModel(curves=curves, bias=[0.0] * 4, sigma=[0.5] * 4, notice_drop=0.7)


def _write_build(tmp_path: Path, rows: list[tuple[str, float, float, int]]) -> Path:
    """rows: (cohort, blur strength, mu, blur named); ratings follow mu."""
    (tmp_path / "rater_model.json").write_text(_model().to_json())
    path = tmp_path / "dataset.csv"
    columns = ["image", "rater_1", "rater_2", "rater_3", "rater_4", "cohort", "split"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, [*columns, *REASONS, "params"])
        writer.writeheader()
        for i, (cohort, strength, mu, named) in enumerate(rows):
            rating = int(np.clip(round(mu), 1, 5))
            writer.writerow(
                {
                    "image": f"images/val/{i:05d}.jpg",
                    **{f"rater_{k}": rating for k in range(1, 5)},
                    "cohort": cohort,
                    "split": "val",
                    **dict.fromkeys(REASONS, 0),
                    "blur": named,
                    "params": json.dumps({"mu": mu, "components": [["blur", strength]]}),
                }
            )
    return path


def test_exact_fault_strength_reaches_the_ceiling_of_consistent_labels(tmp_path: Path) -> None:
    # blur named exactly where the strength (so the expected drop) is large; mu falls with it
    strengths = [0.0, 0.2, 0.5, 0.8, 1.1, 1.4, 1.8, 2.5]
    rows = [
        ("a" if i % 2 else "b", x, 4.1 - 1.2 * x, int(x >= 1.0)) for i, x in enumerate(strengths)
    ]
    report = label_ceiling(_write_build(tmp_path, rows))
    everything = report["val"]["all"]
    assert everything["n"] == 8
    assert everything["auc"] == pytest.approx(1.0)
    assert everything["reasons"]["blur"]["f1"] == pytest.approx(1.0)
    assert everything["reasons"]["blur"]["support"] == 4
    assert math.isnan(everything["reasons"]["dark"]["f1"])  # no dark fault, no positives
    assert set(report["val"]) == {"all", "a", "b"}


def test_labels_the_strength_cannot_explain_lower_the_ceiling(tmp_path: Path) -> None:
    # the mildest blur is named (rater noise) and a strong one is not
    strengths = [0.0, 0.2, 0.5, 0.8, 1.1, 1.4, 1.8, 2.5]
    named = [0, 1, 0, 0, 1, 0, 1, 1]
    rows = [("a", x, 4.1 - 1.2 * x, n) for x, n in zip(strengths, named, strict=True)]
    f1 = label_ceiling(_write_build(tmp_path, rows))["val"]["all"]["reasons"]["blur"]["f1"]
    # best: threshold at 1.8 (2 of 2 right, 2 missed: F1 4/6) or at 1.1 (3 of 4: F1 6/8)
    assert f1 == pytest.approx(0.75)


def test_cli_reports_a_table_and_refuses_a_csv_without_rater_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_build(tmp_path, [("a", 0.0, 4.0, 0), ("a", 2.0, 1.5, 1)])
    assert main(["label-ceiling", "--csv", str(path)]) == 0
    assert "| val | all | 2 | 1.000 |" in capsys.readouterr().out
    (tmp_path / "rater_model.json").unlink()
    assert main(["label-ceiling", "--csv", str(path)]) == 2
    with pytest.raises(CeilingError, match="no rater model"):
        label_ceiling(path)
