"""Per-reason F1 of a run's reason heads (``skin-capture-model reason-f1``).

Reads ``RUN/eval/scores.csv`` (written by ``evaluate``) and the dataset CSVs' 0/1 reason columns;
the rated photos' 12 finer columns are mapped onto the contract's eight reasons first.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from model_export.degradations import RATED_REASON_MAP, REASONS, map_rated_reasons


def _labels(row: dict[str, str]) -> dict[str, int] | None:
    if any(col in row for col in RATED_REASON_MAP if col not in REASONS):
        return map_rated_reasons(row)
    try:
        return {r: int(float(row[r])) for r in REASONS if row.get(r, "").strip() != ""}
    except ValueError:
        return None


def reason_f1(
    scores_csv: Path, dataset_csvs: list[Path], threshold: float = 0.5
) -> dict[str, dict[str, Any]]:
    """F1, precision, recall and support per split and reason (decision: probability >= 0.5)."""
    labels: dict[str, dict[str, int]] = {}
    for dataset_csv in dataset_csvs:
        with dataset_csv.open(newline="") as f:
            for row in csv.DictReader(f):
                lab = _labels(row)
                if lab is not None:
                    labels[str((dataset_csv.parent / row["image"]).resolve())] = lab
    counts: dict[str, dict[str, list[int]]] = {}
    with scores_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            lab = labels.get(str(Path(row["image"]).resolve()))
            if lab is None:
                continue
            per_split = counts.setdefault(row["split"], {})
            for reason, truth in lab.items():
                column = f"reason_{reason}"
                if column not in row:
                    continue
                pred = int(float(row[column]) >= threshold)
                tp_fp_fn = per_split.setdefault(reason, [0, 0, 0])
                tp_fp_fn[0] += int(pred and truth)
                tp_fp_fn[1] += int(pred and not truth)
                tp_fp_fn[2] += int(truth and not pred)
    report: dict[str, dict[str, Any]] = {}
    for split, per_reason in counts.items():
        report[split] = {}
        for reason, (tp, fp, fn) in per_reason.items():
            precision = tp / (tp + fp) if tp + fp else float("nan")
            recall = tp / (tp + fn) if tp + fn else float("nan")
            f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
            report[split][reason] = {
                "f1": f1,
                "precision": precision,
                "recall": recall,
                "support": tp + fn,
            }
    return report


def format_table(report: dict[str, dict[str, Any]]) -> str:
    lines = ["| split | reason | F1 | precision | recall | support |", "|---|---|---|---|---|---|"]
    for split, per_reason in sorted(report.items()):
        for reason in REASONS:
            if reason in per_reason:
                m = per_reason[reason]
                lines.append(
                    f"| {split} | {reason} | {m['f1']:.3f} | {m['precision']:.3f} | "
                    f"{m['recall']:.3f} | {m['support']} |"
                )
    return "\n".join(lines)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "reason-f1", help="per-reason F1 of an evaluated run"
    )
    parser.add_argument("--run", type=Path, required=True, help="run folder (evaluated)")
    parser.add_argument("--csv", type=Path, nargs="+", required=True, help="dataset CSVs")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    report = reason_f1(args.run / "eval" / "scores.csv", list(args.csv))
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0 if report else 1
