"""Expected reason targets for built training rows (config ``reason_targets = "expected"``).

A ``build-data`` row's reason columns are *sampled*: a reason is 1 when at least two of four
simulated raters, each with their own noise, notice one of the row's faults
(:meth:`model_export.raters.RaterModel.rate`). The builder records what it applied (the
``params`` column: each fault component's family and strength) and the rater model it sampled
with (``rater_model.json`` beside the CSV), so the probability of that event is known exactly
(:meth:`~model_export.raters.RaterModel.reason_probabilities`). Training the reason heads on
those probabilities keeps the published label format in the CSV (and everywhere the labels are
*measured*) while removing the four-rater sampling noise from what the heads are fitted to.

Only training rows change. Validation rows keep the 0/1 reasons the raters named, so
thresholds and F1 are chosen and reported against sampled labels, as for any real rated set.
Rows of CSVs without ``params`` or without a rater model beside them (real ratings, such as
``../shared/data/rated``) keep their labels.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from model_export.data.dataset import RatedDataset
from model_export.data.degradations import REASONS
from model_export.data.raters import RaterModel

logger = logging.getLogger(__name__)

RATER_MODEL_FILE = "rater_model.json"


@dataclass(frozen=True)
class ExpectedTargetsReport:
    """What :func:`apply_expected_reason_targets` changed (for logs and the train summary)."""

    rows_replaced: int
    rows_kept: int
    csvs_without_params: list[str]
    agreement_with_named: float | None  # share of (row, reason) where p >= 0.5 equals the 0/1
    mean_target_named: dict[str, float]  # mean 0/1 label of replaced rows, per reason
    mean_target_expected: dict[str, float]  # mean probability of replaced rows, per reason

    def to_dict(self) -> dict[str, object]:
        return {
            "rows_replaced": self.rows_replaced,
            "rows_kept": self.rows_kept,
            "csvs_without_params": self.csvs_without_params,
            "agreement_with_named": self.agreement_with_named,
            "mean_target_named": self.mean_target_named,
            "mean_target_expected": self.mean_target_expected,
        }


def _expected_by_image(csv_path: Path) -> dict[Path, dict[str, float]] | None:
    """{resolved image path: {reason: probability}} for a build-data CSV; None when the CSV has
    no ``params`` column or no rater model beside it."""
    model_path = csv_path.parent / RATER_MODEL_FILE
    if not model_path.is_file():
        return None
    model = RaterModel.from_json(model_path.read_text(encoding="utf-8"))
    table: dict[Path, dict[str, float]] = {}
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if "params" not in (reader.fieldnames or []):
            return None
        for row in reader:
            image = Path((row.get("image") or "").strip())
            image = image if image.is_absolute() else csv_path.parent / image
            params = json.loads(row["params"])
            components = [(str(f), float(x)) for f, x in params.get("components", [])]
            table[image.resolve()] = model.reason_probabilities(components)
    return table


def _per_reason(names: tuple[str, ...], values: np.ndarray) -> dict[str, float]:
    return {n: round(float(v), 4) for n, v in zip(names, values, strict=True)}


def apply_expected_reason_targets(
    dataset: RatedDataset, splits: tuple[str, ...] = ("train",)
) -> tuple[RatedDataset, ExpectedTargetsReport]:
    """A copy of ``dataset`` whose rows in ``splits`` carry expected reason probabilities
    (float ``[R]`` in [0, 1], in ``dataset.reason_names`` order) where their CSV allows it.

    A reason the builder does not know (not in ``degradations.REASONS``) keeps its label, and so
    does an unknown (NaN) cell.
    """
    tables: dict[Path, dict[Path, dict[str, float]] | None] = {}
    images = list(dataset.images)
    names = dataset.reason_names
    replaced, kept = 0, 0
    agree: list[float] = []
    named_sum = np.zeros(len(names))
    expected_sum = np.zeros(len(names))
    for i, im in enumerate(images):
        if im.split not in splits:
            continue
        if im.source_csv not in tables:
            tables[im.source_csv] = _expected_by_image(im.source_csv)
        table = tables[im.source_csv]
        probabilities = None if table is None else table.get(im.path.resolve())
        if probabilities is None:
            kept += 1
            continue
        targets = im.reasons.astype(np.float32).copy()
        for r, name in enumerate(names):
            if name in REASONS and not np.isnan(targets[r]):
                targets[r] = probabilities[name]
        known = ~np.isnan(im.reasons)
        agree.append(float(np.mean((targets[known] >= 0.5) == (im.reasons[known] >= 0.5))))
        named_sum += np.nan_to_num(im.reasons)
        expected_sum += np.nan_to_num(targets)
        images[i] = replace(im, reasons=targets)
        replaced += 1
    report = ExpectedTargetsReport(
        rows_replaced=replaced,
        rows_kept=kept,
        csvs_without_params=sorted(str(p) for p, t in tables.items() if t is None),
        agreement_with_named=round(float(np.mean(agree)), 4) if agree else None,
        mean_target_named=_per_reason(names, named_sum / max(replaced, 1)),
        mean_target_expected=_per_reason(names, expected_sum / max(replaced, 1)),
    )
    logger.info(
        "expected reason targets: %d %s rows replaced, %d kept (agreement with the named 0/1 "
        "at 0.5: %s)",
        replaced,
        "/".join(splits),
        kept,
        report.agreement_with_named,
    )
    out = RatedDataset(
        images, dataset.reason_names, dataset.k_levels, dataset.acceptable_level, dataset.sources
    )
    return out, report
