"""How well does the perceptual distance rank the rated photos (AUC good vs poor, Spearman with
the mean rating), per set and per fault, and how does a curve fitted on rated/ only label
rated2? Reads ``distances.json`` (from ``distances.py``), writes ``analysis.json``."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

HERE = Path(__file__).parent
FRAMING = {"cut_off", "shift_crop"}  # the distance cannot see where the finding ends


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    return None if labels.min() == labels.max() else float(roc_auc_score(labels, scores))


def main() -> None:
    rows = json.loads((HERE / "distances.json").read_text())
    report: dict[str, object] = {}
    by_set: dict[str, list[dict]] = defaultdict(list)
    for r in rows.values():
        by_set[r["set"]].append(r)
    for name, items in by_set.items():
        for subset, keep in (
            ("all", lambda r: True),
            ("faulted, no framing", lambda r: r["fault"] not in FRAMING | {"none"}),
        ):
            chosen = [r for r in items if keep(r)]
            y = np.array([r["label"] for r in chosen])
            d = np.log(np.array([r["distance"] for r in chosen]) + 1e-4)
            m = np.array([r["mean_rating"] for r in chosen])
            report[f"{name} {subset}"] = {
                "n": len(chosen),
                "poor": int((y == 0).sum()),
                "auc": auc(y, -d),
                "spearman_mean_rating": float(spearmanr(-d, m).statistic),
            }
    # A curve fitted on rated/'s faulted (non-framing) photos, applied to rated2.
    fit = [r for r in by_set["rated"] if r["fault"] not in FRAMING | {"none"}]
    x = np.log(np.array([[r["distance"]] for r in fit]) + 1e-4)
    clf = LogisticRegression(C=1.0).fit(x, [r["label"] for r in fit])
    d50 = float(np.exp(-clf.intercept_[0] / clf.coef_[0, 0]))
    report["curve fitted on rated/"] = {
        "distance_at_p_good_0.5": d50,
        "slope": float(clf.coef_[0, 0]),
    }
    per_fault: dict[str, dict[str, object]] = {}
    for r in by_set["rated2"] + by_set["rated"]:
        key = f"{r['set']}:{r['fault']}"
        entry = per_fault.setdefault(
            key,
            {
                "good": 0,
                "poor": 0,
                "poor_called_good": 0,
                "good_called_poor": 0,
                "distances_poor": [],
                "distances_good": [],
            },
        )
        called_good = r["distance"] < d50
        if r["label"]:
            entry["good"] += 1
            entry["good_called_poor"] += int(not called_good)
            entry["distances_good"].append(round(r["distance"], 3))
        else:
            entry["poor"] += 1
            entry["poor_called_good"] += int(called_good)
            entry["distances_poor"].append(round(r["distance"], 3))
    report["per_fault_at_rated_curve"] = per_fault
    (HERE / "analysis.json").write_text(json.dumps(report, indent=1))
    for k, v in report.items():
        if k != "per_fault_at_rated_curve":
            print(k, v)
    for k, v in sorted(per_fault.items()):
        print(
            k,
            {a: b for a, b in v.items() if not a.startswith("distances")},
            "poor d",
            sorted(v["distances_poor"])[:12],
            "good d",
            sorted(v["distances_good"])[-8:],
        )


if __name__ == "__main__":
    main()
