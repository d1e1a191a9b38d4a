"""Per-reason F1 of a run's reason heads (``skin-capture-model reason-f1``).

Reads ``RUN/eval/scores.csv`` (written by ``evaluate``) and the dataset CSVs' 0/1 reason columns;
the rated photos' 12 finer columns are mapped onto the contract's eight reasons first.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from model_export.data.degradations import RATED_REASON_MAP, REASONS, map_rated_reasons


def _labels(row: dict[str, str]) -> dict[str, int] | None:
    if any(col in row for col in RATED_REASON_MAP if col not in REASONS):
        return map_rated_reasons(row)
    try:
        return {r: int(float(row[r])) for r in REASONS if row.get(r, "").strip() != ""}
    except ValueError:
        return None


# split -> reason -> [(reason output, true label)]
ReasonPairs = dict[str, dict[str, list[tuple[float, int]]]]


def load_reason_pairs(scores_csv: Path, dataset_csvs: list[Path]) -> ReasonPairs:
    """Each scored image's reason outputs paired with its 0/1 reason labels, per split."""
    labels: dict[str, dict[str, int]] = {}
    for dataset_csv in dataset_csvs:
        with dataset_csv.open(newline="") as f:
            for row in csv.DictReader(f):
                lab = _labels(row)
                if lab is not None:
                    labels[str((dataset_csv.parent / row["image"]).resolve())] = lab
    pairs: ReasonPairs = {}
    with scores_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            lab = labels.get(str(Path(row["image"]).resolve()))
            if lab is None:
                continue
            per_split = pairs.setdefault(row["split"], {})
            for reason, truth in lab.items():
                column = f"reason_{reason}"
                if column in row:
                    per_split.setdefault(reason, []).append((float(row[column]), truth))
    return pairs


def f1_table(
    pairs: ReasonPairs, threshold: float | Mapping[str, float] = 0.5
) -> dict[str, dict[str, Any]]:
    """F1, precision, recall and support per split and reason (decision: output >=
    ``threshold``, one for all reasons or one per reason; 0.5 for a reason not named)."""
    per_reason_threshold = (
        dict(threshold) if isinstance(threshold, Mapping) else dict.fromkeys(REASONS, threshold)
    )
    report: dict[str, dict[str, Any]] = {}
    for split, per_reason in pairs.items():
        report[split] = {}
        for reason, items in per_reason.items():
            t = per_reason_threshold.get(reason, 0.5)
            tp = sum(1 for p, truth in items if p >= t and truth)
            fp = sum(1 for p, truth in items if p >= t and not truth)
            fn = sum(1 for p, truth in items if p < t and truth)
            precision = tp / (tp + fp) if tp + fp else float("nan")
            recall = tp / (tp + fn) if tp + fn else float("nan")
            f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
            report[split][reason] = {
                "threshold": t,
                "f1": f1,
                "precision": precision,
                "recall": recall,
                "support": tp + fn,
            }
    return report


def reason_f1(
    scores_csv: Path,
    dataset_csvs: list[Path],
    threshold: float | Mapping[str, float] = 0.5,
) -> dict[str, dict[str, Any]]:
    """:func:`f1_table` of a run's ``scores.csv`` against the dataset CSVs' reason labels."""
    return f1_table(load_reason_pairs(scores_csv, dataset_csvs), threshold)


def best_thresholds(pairs: ReasonPairs, split: str | Sequence[str] = "val") -> dict[str, float]:
    """Per reason, the decision threshold with the best F1 on ``split`` (grid 0.05 ... 0.95; ties
    go to the threshold nearest 0.5). Several splits are pooled into one set, so a validation set
    of other fault families can count beside the main one. Report F1 on another split: on the
    tuning split it is optimistic."""
    names = [split] if isinstance(split, str) else list(split)
    pooled: dict[str, list[tuple[float, int]]] = {}
    for name in names:
        for reason, items in pairs.get(name, {}).items():
            pooled.setdefault(reason, []).extend(items)
    on_split = {"tuning": pooled}
    grid = [round(0.05 * k, 2) for k in range(1, 20)]
    best: dict[str, tuple[tuple[float, float], float]] = {}  # reason -> ((F1, -|t - 0.5|), t)
    for t in grid:
        for reason, m in f1_table(on_split, t)["tuning"].items():
            key = (m["f1"] if m["f1"] == m["f1"] else -1.0, -abs(t - 0.5))  # NaN F1 ranks last
            if reason not in best or key > best[reason][0]:
                best[reason] = (key, t)
    return {reason: t for reason, (_key, t) in best.items()}


def tune_thresholds(
    scores_csv: Path, dataset_csvs: list[Path], split: str | Sequence[str] = "val"
) -> dict[str, float]:
    """:func:`best_thresholds` for a run's ``scores.csv`` and the dataset CSVs."""
    return best_thresholds(load_reason_pairs(scores_csv, dataset_csvs), split)


def format_table(report: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| split | reason | threshold | F1 | precision | recall | support |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, per_reason in sorted(report.items()):
        for reason in REASONS:
            if reason in per_reason:
                m = per_reason[reason]
                lines.append(
                    f"| {split} | {reason} | {m['threshold']:.2f} | {m['f1']:.3f} | "
                    f"{m['precision']:.3f} | {m['recall']:.3f} | {m['support']} |"
                )
    return "\n".join(lines)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "reason-f1", help="per-reason F1 of an evaluated run"
    )
    parser.add_argument("--run", type=Path, required=True, help="run folder (evaluated)")
    parser.add_argument("--csv", type=Path, nargs="+", required=True, help="dataset CSVs")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--tune-on",
        metavar="SPLIT",
        nargs="+",
        help="choose each reason's threshold for best F1 on this split (e.g. val), or on several "
        "splits pooled (e.g. val external:val_v2), instead of 0.5",
    )
    parser.add_argument(
        "--save-thresholds", type=Path, help="write the tuned thresholds as JSON (for export)"
    )
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    pairs = load_reason_pairs(args.run / "eval" / "scores.csv", list(args.csv))
    thresholds: float | dict[str, float] = 0.5
    if args.tune_on:
        thresholds = best_thresholds(pairs, args.tune_on)
        if args.save_thresholds:
            args.save_thresholds.write_text(json.dumps(thresholds, indent=2), encoding="utf-8")
    report = f1_table(pairs, thresholds)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0 if report else 1
