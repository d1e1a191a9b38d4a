"""Rated-image datasets in the clinic CSV format, and the good/poor label rule.

CSV format (one row per image; UTF-8, comma separated, header row):

* ``image``: path to the image file, relative to the CSV's folder (absolute paths also work).
* ``rater_1`` ... ``rater_n``: each rater's ordinal rating, an integer 1..K (K = number of
  levels, 5 by default); a blank cell means that rater did not rate the image. At least one
  rating per row.
* ``cohort``: free text (e.g. ``patient``, ``pcp``, ``dermnet``); metrics are reported per cohort.
* ``split`` (optional): ``train``, ``val`` or ``test`` (or any other name, reported as its own
  external set); blank = assigned by the training run.
* reason columns (optional): 0/1 (blank = unknown), one per capture fault named in the config.
* any other column (e.g. ``source_path``) is ignored.

Label rule: an image is *good* when a strict majority of its raters rated it at or above the
acceptable level (3 of 5: "acceptable"); a tie (e.g. 2-2) is broken by the mean rating
``>= acceptable level``. This reproduces ``../shared/data/rated/ratings.csv`` (149 good, 51 poor).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

RATER_COLUMN = re.compile(r"^rater_(\d+)$")
RESERVED_COLUMNS = frozenset({"image", "cohort", "split"})
KNOWN_SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """The dataset CSV cannot be used; the message names the file, row and column."""


@dataclass(frozen=True)
class RatedImage:
    """One row of a dataset CSV.

    ``ratings`` float ``[n_raters]`` with NaN for blanks; ``reasons`` float ``[R]`` with NaN for
    unknown (blank) cells, in the order of :attr:`RatedDataset.reason_names`.
    """

    path: Path
    ratings: np.ndarray
    cohort: str
    split: str
    reasons: np.ndarray
    label: int
    source_csv: Path
    row_number: int

    @property
    def mean_rating(self) -> float:
        return float(np.nanmean(self.ratings))

    def cumulative_targets(self, k_levels: int) -> np.ndarray:
        """float32 ``[K-1]``: fraction of this image's raters with rating > k, k = 1..K-1."""
        rated = self.ratings[~np.isnan(self.ratings)]
        ks = np.arange(1, k_levels, dtype=np.float64)
        return np.asarray((rated[None, :] > ks[:, None]).mean(axis=1), dtype=np.float32)


@dataclass
class RatedDataset:
    """Rows of one or more CSVs; ``reason_names`` in the order of each row's ``reasons``."""

    images: list[RatedImage]
    reason_names: tuple[str, ...]
    k_levels: int
    acceptable_level: int
    sources: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def labels(self) -> np.ndarray:
        return np.array([im.label for im in self.images], dtype=np.int64)

    def subset(self, indices: Iterable[int]) -> RatedDataset:
        return RatedDataset(
            [self.images[i] for i in indices],
            self.reason_names,
            self.k_levels,
            self.acceptable_level,
            list(self.sources),
        )

    def split_indices(self, split: str) -> list[int]:
        return [i for i, im in enumerate(self.images) if im.split == split]

    def summary(self) -> dict[str, object]:
        """Counts for logs and the model card."""
        by_split: dict[str, dict[str, int]] = {}
        for im in self.images:
            entry = by_split.setdefault(im.split or "(unassigned)", {"good": 0, "poor": 0})
            entry["good" if im.label else "poor"] += 1
        return {
            "images": len(self.images),
            "good": int(sum(im.label for im in self.images)),
            "poor": int(sum(1 - im.label for im in self.images)),
            "cohorts": dict(Counter(im.cohort for im in self.images)),
            "splits": by_split,
            "raters_per_image_mean": float(
                np.mean([np.sum(~np.isnan(im.ratings)) for im in self.images])
            )
            if self.images
            else 0.0,
            "reason_names": list(self.reason_names),
            "sources": [str(p) for p in self.sources],
        }


def majority_label(ratings: np.ndarray, acceptable_level: int = 3) -> int:
    """1 (good) when most raters rated >= ``acceptable_level``; a tie goes by the mean rating.

    ``ratings`` float ``[n]``, NaN = blank (ignored).
    """
    rated = ratings[~np.isnan(ratings)]
    if rated.size == 0:
        raise ValueError("no ratings")
    votes_good = int(np.sum(rated >= acceptable_level))
    votes_poor = rated.size - votes_good
    if votes_good != votes_poor:
        return int(votes_good > votes_poor)
    return int(float(rated.mean()) >= acceptable_level)


def _parse_rating(text: str, k_levels: int, where: str) -> float:
    text = text.strip()
    if text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(
            f"{where}: rating '{text}' is not a number (expected 1..{k_levels})"
        ) from None
    if not value.is_integer() or not 1 <= value <= k_levels:
        raise DatasetError(
            f"{where}: rating {text} is out of range (expected an integer 1..{k_levels})"
        )
    return value


def _parse_flag(text: str, where: str) -> float:
    text = text.strip()
    if text == "":
        return math.nan
    if text in ("0", "1", "0.0", "1.0"):
        return float(text)
    raise DatasetError(f"{where}: reason flag '{text}' must be 0, 1 or blank")


def detect_reason_columns(header: Sequence[str], rows: Sequence[dict[str, str]]) -> list[str]:
    """Columns (other than image/rater_*/cohort/split) whose cells are all 0, 1 or blank."""
    found = []
    for column in header:
        if column in RESERVED_COLUMNS or RATER_COLUMN.match(column):
            continue
        values = {(row.get(column) or "").strip() for row in rows}
        if values and values <= {"0", "1", ""} and values != {""}:
            found.append(column)
    return found


def _read_rows(csv_path: Path) -> tuple[list[str], list[dict[str, str]], list[str]]:
    """Header, rows and rater columns (in number order) of a dataset CSV, whose required
    columns are checked."""
    if not csv_path.is_file():
        raise DatasetError(f"dataset CSV not found: {csv_path}")
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        rows = list(reader)
    if "image" not in header:
        raise DatasetError(f"{csv_path}: no 'image' column (header: {', '.join(header)})")
    if "cohort" not in header:
        raise DatasetError(f"{csv_path}: no 'cohort' column")
    rater_columns = sorted(
        (c for c in header if RATER_COLUMN.match(c)),
        key=lambda c: int(RATER_COLUMN.match(c).group(1)),  # type: ignore[union-attr]
    )
    if not rater_columns:
        raise DatasetError(f"{csv_path}: no rater columns (rater_1, rater_2, ...)")
    if not rows:
        raise DatasetError(f"{csv_path}: no rows")
    return header, rows, rater_columns


def load_csv(
    csv_path: str | Path,
    k_levels: int = 5,
    acceptable_level: int = 3,
    reason_names: Sequence[str] | None = None,
    check_files: bool = True,
) -> RatedDataset:
    """Read and validate one dataset CSV (see the module docstring).

    ``reason_names`` None: use every 0/1 column found; a name listed but absent from the CSV is
    treated as unknown (NaN) for all rows. Raises :class:`DatasetError` on the first problem
    class found, listing up to ten offending rows.
    """
    csv_path = Path(csv_path)
    header, rows, rater_columns = _read_rows(csv_path)
    names = list(reason_names) if reason_names is not None else detect_reason_columns(header, rows)
    missing_reasons = [n for n in names if n not in header]
    if missing_reasons:
        logger.warning(
            "%s: reason columns %s absent; treated as unknown", csv_path, missing_reasons
        )

    base = csv_path.parent
    images: list[RatedImage] = []
    missing_files: list[str] = []
    no_ratings: list[str] = []
    seen: dict[Path, int] = {}
    duplicates: list[str] = []
    for offset, row in enumerate(rows):
        line = offset + 2  # header is line 1
        where = f"{csv_path.name} line {line}"
        image_text = (row.get("image") or "").strip()
        if not image_text:
            raise DatasetError(f"{where}: empty 'image' cell")
        path = Path(image_text)
        path = path if path.is_absolute() else base / path
        key = path.resolve()
        if key in seen:
            duplicates.append(f"line {line} repeats line {seen[key]} ({image_text})")
            continue
        seen[key] = line
        ratings = np.array(
            [_parse_rating(row.get(c) or "", k_levels, f"{where} {c}") for c in rater_columns],
            dtype=np.float64,
        )
        if np.all(np.isnan(ratings)):
            no_ratings.append(f"line {line} ({image_text})")
            continue
        if check_files and not path.is_file():
            missing_files.append(f"line {line}: {path}")
            continue
        reasons = np.array(
            [
                _parse_flag(row.get(n) or "", f"{where} {n}") if n in header else math.nan
                for n in names
            ],
            dtype=np.float32,
        )
        images.append(
            RatedImage(
                path=path,
                ratings=ratings,
                cohort=(row.get("cohort") or "").strip() or "unspecified",
                split=(row.get("split") or "").strip().lower(),
                reasons=reasons,
                label=majority_label(ratings, acceptable_level),
                source_csv=csv_path,
                row_number=line,
            )
        )
    problems = []
    if duplicates:
        problems.append(f"duplicate image: {_first(duplicates)}")
    if no_ratings:
        problems.append(f"row without ratings: {_first(no_ratings)}")
    if missing_files:
        problems.append(f"missing file: {_first(missing_files)}")
    if problems:
        raise DatasetError(f"{csv_path}: " + "; ".join(problems))
    return RatedDataset(images, tuple(names), k_levels, acceptable_level, [csv_path])


def _first(items: list[str], limit: int = 10) -> str:
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def load_datasets(
    csv_paths: Sequence[str | Path],
    k_levels: int = 5,
    acceptable_level: int = 3,
    reason_names: Sequence[str] | None = None,
    check_files: bool = True,
) -> RatedDataset:
    """Concatenate several CSVs; reason names are the union (first CSV's order first)."""
    if not csv_paths:
        raise DatasetError("no dataset CSV given")
    parts = [load_csv(p, k_levels, acceptable_level, reason_names, check_files) for p in csv_paths]
    names: list[str] = list(reason_names) if reason_names is not None else []
    if reason_names is None:
        for part in parts:
            names += [n for n in part.reason_names if n not in names]
    images: list[RatedImage] = []
    seen: dict[Path, Path] = {}
    for part in parts:
        index = {n: i for i, n in enumerate(part.reason_names)}
        for im in part.images:
            key = im.path.resolve()
            if key in seen:
                raise DatasetError(
                    f"duplicate image: {im.path} is in {seen[key]} and {im.source_csv}"
                )
            seen[key] = im.source_csv
            reasons = np.array(
                [im.reasons[index[n]] if n in index else math.nan for n in names], np.float32
            )
            images.append(
                RatedImage(
                    im.path,
                    im.ratings,
                    im.cohort,
                    im.split,
                    reasons,
                    im.label,
                    im.source_csv,
                    im.row_number,
                )
            )
    return RatedDataset(
        images, tuple(names), k_levels, acceptable_level, [Path(p) for p in csv_paths]
    )


def assign_splits(
    dataset: RatedDataset, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, int]:
    """Give rows with a blank split ``train``/``val``/``test``, stratified by label and cohort.

    Deterministic in ``seed`` and the image file names (not their order in the CSV). Returns the
    number of rows assigned per split. Rows with a split already set keep it.
    """
    groups: dict[tuple[int, str], list[int]] = {}
    for i, im in enumerate(dataset.images):
        if not im.split:
            groups.setdefault((im.label, im.cohort), []).append(i)
    counts: Counter[str] = Counter()
    for (label, cohort), members in sorted(groups.items()):
        members.sort(key=lambda i: _stable_key(dataset.images[i].path.name, seed))
        n = len(members)
        n_val = round(n * val_fraction)
        n_test = round(n * test_fraction)
        if n >= 3 and val_fraction > 0:
            n_val = max(n_val, 1)
        for rank, i in enumerate(members):
            split = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
            im = dataset.images[i]
            dataset.images[i] = RatedImage(
                im.path,
                im.ratings,
                im.cohort,
                split,
                im.reasons,
                im.label,
                im.source_csv,
                im.row_number,
            )
            counts[split] += 1
        logger.debug("split label=%d cohort=%s: %d rows", label, cohort, n)
    return dict(counts)


def _stable_key(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()
