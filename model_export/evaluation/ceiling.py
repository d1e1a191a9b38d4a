"""Label ceilings of a built dataset (``skin-capture-model label-ceiling``).

A built image's labels are *sampled*: four simulated raters add their own noise to the expected
rating ``mu`` and to each fault's expected rating drop (
:mod:`model_export.data.raters`). So no model,
however good, reaches AUC 1 or reason F1 1 on them. This module measures how far a perfect
estimator of the applied faults would get, from what ``build-data`` recorded per row:

- quality: AUC of the true expected rating ``mu`` against the majority-vote good/poor label;
- reasons: per reason, F1 of the largest true expected drop among the row's faults of that
  reason, at the drop threshold best for F1 on the same rows (an optimistic, in-sample choice:
  it is a ceiling).

A target above the ceiling cannot be met by a better model on these labels; one just under it
asks the model to measure the fault as precisely as the builder knew it (e.g. distance needs a
FUSeg wound's area almost as well as its mask gives it).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from model_export.data.dataset import DatasetError, majority_label
from model_export.data.degradations import FAMILY_REASON, REASONS
from model_export.data.raters import RaterModel
from model_export.metrics import roc_auc

RATER_COLUMNS = ("rater_1", "rater_2", "rater_3", "rater_4")


class CeilingError(DatasetError):
    """The dataset cannot be read as a ``build-data`` output."""


def best_f1(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Best F1 of ``scores >= t`` over every threshold t among the scores (``[M]`` each,
    ``truth`` 0/1) and that threshold; (NaN, NaN) without positives."""
    positives = int(truth.sum())
    if positives == 0:
        return math.nan, math.nan
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_truth = scores[order], truth[order]
    tp = np.cumsum(sorted_truth)
    predicted = np.arange(1, len(scores) + 1)
    # a threshold can only sit where the next score is lower (ties are decided together)
    last_of_tie = np.r_[sorted_scores[1:] < sorted_scores[:-1], True]
    f1 = 2 * tp / (predicted + positives)
    f1 = np.where(last_of_tie, f1, -1.0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(sorted_scores[best])


def reason_drops(model: RaterModel, components: list[list[Any]]) -> dict[str, float]:
    """Largest expected rating drop per reason among (family, strength) components; 0 where the
    row has no fault of that reason."""
    drops = dict.fromkeys(REASONS, 0.0)
    for family, strength in components:
        reason = FAMILY_REASON.get(str(family))
        if reason is not None:
            drops[reason] = max(drops[reason], model.drop(str(family), float(strength)))
    return drops


def _read_rows(dataset_csv: Path) -> list[dict[str, Any]]:
    rows = []
    with dataset_csv.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"params", "split", "cohort", *RATER_COLUMNS, *REASONS} - set(
            reader.fieldnames or []
        )
        if missing:
            raise CeilingError(
                f"{dataset_csv} is not a build-data output (no column {', '.join(sorted(missing))})"
            )
        for line, row in enumerate(reader, start=2):
            try:
                params = json.loads(row["params"])
                ratings = np.array([float(row[c]) for c in RATER_COLUMNS])
                rows.append(
                    {
                        "split": row["split"],
                        "cohort": row["cohort"],
                        "mu": float(params["mu"]),
                        "components": params["components"],
                        "label": majority_label(ratings),
                        "reasons": {r: int(float(row[r])) for r in REASONS},
                    }
                )
            except (KeyError, ValueError, TypeError) as exc:
                raise CeilingError(f"{dataset_csv}:{line}: cannot read the row ({exc})") from exc
    return rows


def label_ceiling(
    dataset_csv: Path, rater_model_json: Path | None = None, splits: list[str] | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Ceilings per split and cohort (``"all"`` and each cohort): ``n``, ``auc`` (true ``mu``
    against the label) and ``reasons`` {reason: {f1, drop_threshold, support}}.

    ``rater_model_json`` defaults to the ``rater_model.json`` that ``build-data`` wrote beside
    the CSV (the model that sampled these labels)."""
    model_path = rater_model_json or dataset_csv.parent / "rater_model.json"
    if not model_path.is_file():
        raise CeilingError(f"no rater model at {model_path} (build-data writes it beside the CSV)")
    model = RaterModel.from_json(model_path.read_text(encoding="utf-8"))
    rows = _read_rows(dataset_csv)
    for row in rows:
        row["drops"] = reason_drops(model, row["components"])
    wanted = splits or sorted({r["split"] for r in rows})
    report: dict[str, dict[str, dict[str, Any]]] = {}
    for split in wanted:
        in_split = [r for r in rows if r["split"] == split]
        if not in_split:
            continue
        report[split] = {}
        for cohort in ["all", *sorted({r["cohort"] for r in in_split})]:
            sub = [r for r in in_split if cohort == "all" or r["cohort"] == cohort]
            labels = np.array([r["label"] for r in sub])
            mus = np.array([r["mu"] for r in sub])
            reasons: dict[str, dict[str, Any]] = {}
            for reason in REASONS:
                truth = np.array([r["reasons"][reason] for r in sub])
                f1, threshold = best_f1(np.array([r["drops"][reason] for r in sub]), truth)
                reasons[reason] = {
                    "f1": f1,
                    "drop_threshold": threshold,
                    "support": int(truth.sum()),
                }
            report[split][cohort] = {
                "n": len(sub),
                "auc": roc_auc(labels, mus),
                "reasons": reasons,
            }
    return report


def format_report(report: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "| split | cohort | n | AUC ceiling | " + " | ".join(REASONS) + " |",
        "|---|---|---|---|" + "---|" * len(REASONS),
    ]
    for split, per_cohort in report.items():
        for cohort, m in per_cohort.items():
            cells = [
                f"{m['reasons'][r]['f1']:.3f} ({m['reasons'][r]['support']})"
                if m["reasons"][r]["support"]
                else "-"
                for r in REASONS
            ]
            lines.append(
                f"| {split} | {cohort} | {m['n']} | {m['auc']:.3f} | " + " | ".join(cells) + " |"
            )
    lines.append("")
    lines.append("Reason cells: F1 ceiling (positives).")
    return "\n".join(lines)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "label-ceiling",
        help="AUC and per-reason F1 a perfect fault estimator would reach on a built dataset",
    )
    parser.add_argument("--csv", type=Path, required=True, help="a build-data dataset.csv")
    parser.add_argument(
        "--rater-model", type=Path, help="rater_model.json (default: the one beside the CSV)"
    )
    parser.add_argument("--split", nargs="+", help="splits to report (default: all)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    report = label_ceiling(args.csv, args.rater_model, args.split)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report else 1
