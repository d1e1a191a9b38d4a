"""Dataset CSV loading, validation errors, the good/poor label rule and split assignment."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from model_export.data.dataset import (
    DatasetError,
    assign_splits,
    load_csv,
    load_datasets,
    majority_label,
)


def _write(folder: Path, rows: list[dict[str, object]], images: bool = True) -> Path:
    (folder / "img").mkdir(exist_ok=True)
    if images:
        for row in rows:
            path = folder / str(row["image"])
            if not path.exists():
                path.write_bytes(b"not decoded by the loader")
    csv_path = folder / "ratings.csv"
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def _row(name: str, *ratings: object, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {"image": f"img/{name}.jpg", "cohort": "pcp"}
    row.update({f"rater_{i + 1}": r for i, r in enumerate(ratings)})
    row.update(extra)
    return row


@pytest.mark.parametrize(
    ("ratings", "label"),
    [
        ([3, 3, 4, 3], 1),
        ([1, 2, 2, 3], 0),
        ([2, 2, 5, 5], 1),  # 2-2 tie, mean 3.5 >= 3
        ([2, 2, 3, 3], 0),  # 2-2 tie, mean 2.5
        ([1, 2, 4, 5], 1),  # tie, mean exactly 3
        ([3, np.nan, 2, np.nan], 0),  # blanks ignored: 1-1 tie, mean 2.5
        ([np.nan, 4, np.nan, np.nan], 1),
    ],
)
def test_majority_label(ratings: list[float], label: int) -> None:
    assert majority_label(np.array(ratings, float)) == label


def test_loads_rows_blanks_reasons_and_ignores_extra_columns(tmp_path: Path) -> None:
    rows = [
        _row("a", 4, 4, "", 5, split="train", blur=0, dark="", source_path="x/y.jpg"),
        _row("b", 1, 2, 2, "", split="VAL", blur=1, dark=1, source_path="x/z.jpg"),
    ]
    ds = load_csv(_write(tmp_path, rows))
    assert ds.reason_names == ("blur", "dark")  # source_path is not a 0/1 column
    a, b = ds.images
    assert a.path == tmp_path / "img/a.jpg"
    assert np.isnan(a.ratings[2]) and a.label == 1 and b.label == 0
    assert b.split == "val"
    assert np.isnan(a.reasons[1]) and b.reasons.tolist() == [1.0, 1.0]
    np.testing.assert_allclose(a.cumulative_targets(5), [1, 1, 1, 1 / 3])


@pytest.mark.parametrize(
    ("rows", "images", "message"),
    [
        ([_row("a", 3, 6)], True, "out of range"),
        ([_row("a", 3, 0)], True, "out of range"),
        ([_row("a", 3, 2.5)], True, "out of range"),
        ([_row("a", 3, "good")], True, "not a number"),
        ([_row("a", "", "")], True, "row without ratings"),
        ([_row("a", 3, 4), _row("a", 2, 2)], True, "duplicate image"),
        ([_row("a", 3, 4)], False, "missing file"),
    ],
)
def test_validation_errors(
    tmp_path: Path, rows: list[dict[str, object]], images: bool, message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        load_csv(_write(tmp_path, rows, images=images))


def test_missing_columns_and_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_csv(tmp_path / "nope.csv")
    (tmp_path / "x.csv").write_text("image,cohort\nimg/a.jpg,pcp\n")
    with pytest.raises(DatasetError, match="no rater columns"):
        load_csv(tmp_path / "x.csv")
    (tmp_path / "y.csv").write_text("image,rater_1\nimg/a.jpg,3\n")
    with pytest.raises(DatasetError, match="cohort"):
        load_csv(tmp_path / "y.csv")


def test_duplicate_across_csvs(tmp_path: Path) -> None:
    first = _write(tmp_path, [_row("a", 3, 4)])
    second = tmp_path / "second.csv"
    second.write_text(first.read_text())
    with pytest.raises(DatasetError, match="duplicate image"):
        load_datasets([first, second])


def test_assign_splits_is_stratified_and_deterministic(tmp_path: Path) -> None:
    rows = [_row(f"g{i}", 4, 4) for i in range(20)] + [_row(f"p{i}", 1, 2) for i in range(10)]
    csv_path = _write(tmp_path, rows)
    first, second = load_csv(csv_path), load_csv(csv_path)
    second.images.reverse()
    counts = assign_splits(first, 0.2, 0.1, seed=3)
    assign_splits(second, 0.2, 0.1, seed=3)
    assert counts == {"val": 6, "test": 3, "train": 21}
    assert {im.path: im.split for im in first.images} == {im.path: im.split for im in second.images}
    val = [im for im in first.images if im.split == "val"]
    assert sum(im.label for im in val) == 4 and len(val) - 4 == 2


@pytest.mark.shared
def test_shared_rated_set_label_counts(shared_dir: Path) -> None:
    csv_path = shared_dir / "data" / "rated" / "ratings.csv"
    if not csv_path.is_file():
        pytest.skip("no rated set in ../shared")
    ds = load_csv(csv_path)
    assert len(ds) == 200
    assert int(ds.labels().sum()) == 149
    assert "source_path" not in ds.reason_names and "blur" in ds.reason_names
