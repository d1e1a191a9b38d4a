"""Metric functions against known values and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from model_export.metrics import (
    binary_report,
    bootstrap_ci,
    brier_score,
    calibration_bins,
    confusion_at,
    roc_auc,
    roc_curve,
    wilson_ci,
    youden_threshold,
    youden_threshold_ci,
)


def test_auc_known_values() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.2, 0.9]) == 1.0
    assert roc_auc([0, 1], [0.9, 0.2]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5  # all tied
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


@pytest.mark.parametrize("seed", range(8))
def test_auc_and_roc_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    scores = np.round(rng.random(n) + 0.3 * y, 2)  # rounding creates ties
    assert roc_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    fpr, tpr, thr = roc_curve(y, scores)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(y, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    threshold, j = youden_threshold(y, scores)
    assert j == pytest.approx(np.max(sk_tpr - sk_fpr))
    c = confusion_at(y, scores, threshold)
    assert c.sensitivity - (1 - c.specificity) == pytest.approx(j)
    tn, fp, fn, tp = confusion_matrix(y, scores >= threshold, labels=[0, 1]).ravel()
    assert (c.tp, c.fp, c.tn, c.fn) == (tp, fp, tn, fn)


def test_youden_threshold_known_case() -> None:
    y = [0, 0, 0, 1, 1, 1]
    s = [0.1, 0.2, 0.6, 0.4, 0.7, 0.9]
    threshold, j = youden_threshold(y, s)
    # best J = 2/3 at ">= 0.7" (tpr 2/3, fpr 0) and at ">= 0.4" (tpr 1, fpr 1/3): higher one wins,
    # placed halfway to the next lower score 0.6
    assert j == pytest.approx(2 / 3)
    assert threshold == pytest.approx(0.65)


def test_confusion_rates_known_values() -> None:
    c = confusion_at([1, 1, 1, 1, 0, 0, 0], [0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.3], 0.5)
    assert (c.tp, c.fn, c.fp, c.tn) == (3, 1, 1, 2)
    assert c.sensitivity == 0.75 and c.specificity == pytest.approx(2 / 3)
    assert c.ppv == 0.75 and c.npv == pytest.approx(2 / 3)


def test_wilson_known_values() -> None:
    lo, hi = wilson_ci(8, 10)
    assert (lo, hi) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    assert wilson_ci(0, 10)[0] == 0.0 and wilson_ci(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in wilson_ci(0, 0))


def test_bootstrap_ci_brackets_auc_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (60, 600):
        y = rng.integers(0, 2, n)
        s = rng.random(n) + 0.6 * y
        lo, hi = bootstrap_ci(roc_auc, y, s, n_boot=500, seed=1)
        assert lo < roc_auc(y, s) < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2
    assert bootstrap_ci(roc_auc, [1, 0], [0.3, 0.2], n_boot=50) == bootstrap_ci(
        roc_auc, [1, 0], [0.3, 0.2], n_boot=50
    )


def test_calibration_and_brier() -> None:
    y = [0, 0, 1, 1]
    s = [0.05, 0.15, 0.85, 0.95]
    bins = calibration_bins(y, s, n_bins=2)
    assert bins["count"] == [2, 2] and bins["observed"] == [0.0, 1.0]
    assert bins["mean_score"] == pytest.approx([0.1, 0.9])
    assert brier_score(y, s) == pytest.approx(np.mean([0.0025, 0.0225, 0.0225, 0.0025]))


def test_binary_report_fields() -> None:
    report = binary_report([1, 1, 0, 0, 1], [0.9, 0.6, 0.4, 0.7, 0.8], threshold=0.65, n_boot=200)
    assert report["n_good"] == 3 and report["confusion"] == {"tp": 2, "fp": 1, "tn": 1, "fn": 1}
    assert report["sensitivity"]["value"] == pytest.approx(2 / 3)
    lo, hi = report["sensitivity"]["ci95"]
    assert lo < 2 / 3 < hi
    assert report["auc"]["value"] == pytest.approx(
        roc_auc_score([1, 1, 0, 0, 1], [0.9, 0.6, 0.4, 0.7, 0.8])
    )


def test_youden_threshold_interval_holds_the_true_cut_point_and_narrows() -> None:
    # good ~ N(1.2, 1), poor ~ N(0, 1): J is maximal at the midpoint, 0.6
    def interval(n: int) -> tuple[float, float, float]:
        rng = np.random.default_rng(n)
        y = (rng.random(n) < 0.6).astype(int)
        s = rng.normal(loc=1.2 * y, scale=1.0)
        lo, hi = youden_threshold_ci(y, s, n_boot=200, seed=0)
        return lo, youden_threshold(y, s)[0], hi

    lo_small, point_small, hi_small = interval(80)
    lo_big, point_big, hi_big = interval(20000)
    assert lo_small <= point_small <= hi_small and lo_big <= point_big <= hi_big
    assert lo_big <= 0.6 <= hi_big
    # the argmax of a flat J converges slowly (about n^(-1/3)), but it does converge
    assert hi_big - lo_big < 0.7 * (hi_small - lo_small)


def test_youden_threshold_interval_is_nan_without_both_classes() -> None:
    lo, hi = youden_threshold_ci(np.ones(30, int), np.linspace(0, 1, 30), n_boot=50)
    assert math.isnan(lo) and math.isnan(hi)


def test_decision_agreement_counts_each_kind_of_flip() -> None:
    from model_export.export.int8 import decision_agreement

    labels = np.array([1, 1, 0, 0, 1, 0])
    fp32 = np.array([True, True, False, False, False, True])
    int8 = np.array([True, False, True, False, False, True])
    got = decision_agreement(labels, fp32, int8)
    assert got == {
        "n": 6,
        "same": 4,
        "share": pytest.approx(4 / 6),
        "int8_only_accepts": 1,
        "int8_only_accepts_poor": 1,
        "int8_only_rejects": 1,
        "int8_only_rejects_good": 1,
    }


def test_report_line_shows_the_threshold_interval_only_when_it_exists() -> None:
    from model_export.evaluation.evaluate import format_report

    threshold = {"value": 0.65, "method": "youden", "chosen_on": "val", "ci95": [0.55, 0.81]}
    shown = format_report({"threshold": threshold, "splits": {}}).splitlines()[0]
    assert shown == "threshold 0.6500 (youden on val; 95 % bootstrap interval 0.550-0.810)"
    threshold["ci95"] = [math.nan, math.nan]  # e.g. a validation split of one class in resamples
    assert "interval" not in format_report({"threshold": threshold, "splits": {}})


@pytest.mark.parametrize("seed", range(4))
def test_bootstrap_auc_is_sklearns_auc(seed: int) -> None:
    # binary_report's bootstrap uses the rank formula (fast on 2000 resamples): the same AUC
    from model_export.metrics import _rank_auc

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.random(500) + 0.4 * y, 2)
    assert _rank_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert math.isnan(_rank_auc(np.ones(5, np.int64), s[:5]))
