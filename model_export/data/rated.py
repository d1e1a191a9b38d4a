"""The photos that people rated (``rated/``, ``rated2/`` in ../shared/data): loading, grouping by
source photo, and the clinical operating threshold chosen on them.

They are the only real quality judgements the project has (four raters each, 1-5): model
issue 18 trains on them, chooses the shipped threshold on them and measures generalisation on
them (``model_export.evaluation.generalisation``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_export.data.dataset import majority_label

RATED_REASON_NAMES: tuple[str, ...] = (
    "blur",
    "motion",
    "dark",
    "bright",
    "glare",
    "colour",
    "framing",
    "distance",
    "resolution",
    "compression",
    "noise",
    "obstruction",
)


@dataclass(frozen=True)
class RatedPhoto:
    """One photo rated by people, with what is known about it."""

    path: Path
    rated_set: str
    cohort: str
    source_path: str
    fault: str
    ratings: tuple[int, ...]
    label: int
    reasons: dict[str, int]


def load_rated_set(
    folder: Path, rated_set: str, ratings_name: str = "ratings.csv"
) -> list[RatedPhoto]:
    """``folder`` holds ``ratings_name`` (training format) and optionally ``faults.csv`` (the
    fault of each image; else a ``fault`` column of the ratings, else "unknown")."""
    faults: dict[str, str] = {}
    faults_csv = folder / "faults.csv"
    if faults_csv.is_file():
        with faults_csv.open(newline="") as handle:
            faults = {row["image"]: row["fault"] for row in csv.DictReader(handle)}
    photos: list[RatedPhoto] = []
    with (folder / ratings_name).open(newline="") as handle:
        for row in csv.DictReader(handle):
            ratings = tuple(
                int(row[k]) for k in sorted(row) if k.startswith("rater_") and row[k].strip()
            )
            label = majority_label(np.asarray(ratings, dtype=np.float64))
            reasons = {
                name: int(row[name]) for name in RATED_REASON_NAMES if row.get(name, "").strip()
            }
            photos.append(
                RatedPhoto(
                    path=folder / row["image"],
                    rated_set=rated_set,
                    cohort=row["cohort"],
                    source_path=row.get("source_path", ""),
                    fault=faults.get(row["image"], row.get("fault") or "unknown"),
                    ratings=ratings,
                    label=label,
                    reasons=reasons,
                )
            )
    return photos


#: The folders of ../shared/data that hold photos rated by people, each its own rated set.
RATED_SET_FOLDERS = ("rated", "rated2")


def load_rated_photos(shared_data: Path) -> list[RatedPhoto]:
    """Both rated sets under ``shared_data`` (``rated/`` and ``rated2/`` where present)."""
    photos: list[RatedPhoto] = []
    for name in RATED_SET_FOLDERS:
        if (shared_data / name / "ratings.csv").is_file():
            photos.extend(load_rated_set(shared_data / name, name))
    return photos


def source_groups(photos: Sequence[RatedPhoto]) -> np.ndarray:
    """A group id per photo: photos made from one original share it (no leak across folds)."""
    ids: dict[str, int] = {}
    return np.asarray([ids.setdefault(p.source_path or str(p.path), len(ids)) for p in photos])


def operating_threshold(labels: np.ndarray, scores: np.ndarray, min_sensitivity: float) -> float:
    """The Youden-best threshold among those that accept at least ``min_sensitivity`` of the
    good photos (positive class = good). Halfway between neighbouring scores, like
    ``metrics.youden_threshold``."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores)
    allowed = tpr >= min_sensitivity
    j = np.where(allowed, tpr - fpr, -np.inf)
    best = int(np.argmax(j))
    chosen = float(thresholds[best])
    if not math.isfinite(chosen):
        return float(np.nextafter(scores.max(), np.inf))
    lower = scores[scores < chosen]
    return (chosen + float(lower.max())) / 2.0 if lower.size else chosen
