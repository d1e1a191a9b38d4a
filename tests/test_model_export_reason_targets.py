"""Expected reason targets for build-data training rows (``reason_targets = "expected"``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from model_export.config import ConfigError, load_config
from model_export.data.dataset import load_datasets
from model_export.data.raters import CURVE_OF_FAMILY, RaterModel
from model_export.data.reason_targets import apply_expected_reason_targets
from model_export.training.train import train
from tests.model_export_helpers import write_config, write_dataset


def _rater_model() -> RaterModel:
    curves = {name: (2.0, 0.5) for name in set(CURVE_OF_FAMILY.values())}
    return RaterModel(curves=curves, bias=[0.0] * 4, sigma=[0.2, 0.3, 0.4, 0.5], notice_drop=0.7)


def _make_built(csv_path: Path) -> dict[str, list[list[object]]]:
    """Turn a helper dataset into a build-data-like one: a ``params`` column (poor rows: a blur
    of varied strength and a darkening; good rows: no fault) and the rater model beside it.
    Returns {image: components}."""
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    components: dict[str, list[list[object]]] = {}
    for i, row in enumerate(rows):
        poor = row["blur"] == "1"
        comps: list[list[object]] = [["blur", 1.0 + 0.1 * i], ["dark", 1.3]] if poor else []
        row["params"] = json.dumps({"mu": 3.0, "components": comps})
        components[row["image"]] = comps
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (csv_path.parent / "rater_model.json").write_text(_rater_model().to_json())
    return components


def test_training_rows_get_the_rater_models_probabilities(tmp_path: Path) -> None:
    built = write_dataset(tmp_path / "built", n_good=8, n_poor=8)
    components = _make_built(built)
    real = write_dataset(tmp_path / "real", n_good=4, n_poor=4, seed=1)  # no params
    dataset = load_datasets([built, real], k_levels=5, reason_names=["blur", "dark"])
    out, report = apply_expected_reason_targets(dataset)

    model = _rater_model()
    n_train_built = 0
    for before, after in zip(dataset.images, out.images, strict=True):
        if before.split != "train" or before.source_csv != built:
            np.testing.assert_array_equal(after.reasons, before.reasons)  # untouched
            continue
        n_train_built += 1
        comps = components[str(before.path.relative_to(built.parent))]
        expected = model.reason_probabilities([(str(f), float(x)) for f, x in comps])  # type: ignore[arg-type]
        np.testing.assert_allclose(after.reasons, [expected["blur"], expected["dark"]], atol=1e-6)
    assert n_train_built > 0
    assert report.rows_replaced == n_train_built
    assert report.rows_kept == sum(
        im.split == "train" for im in dataset.images if im.source_csv == real
    )
    assert report.csvs_without_params == [str(real)]
    # soft targets: some strictly between 0 and 1
    replaced = [
        a.reasons
        for b, a in zip(dataset.images, out.images, strict=True)
        if b.split == "train" and b.source_csv == built
    ]
    values = np.concatenate(replaced)
    assert np.any((values > 0.05) & (values < 0.95))
    assert np.all((values >= 0) & (values <= 1))
    assert 0.0 <= (report.agreement_with_named or 0.0) <= 1.0


def test_a_csv_without_a_rater_model_keeps_its_labels(tmp_path: Path) -> None:
    built = write_dataset(tmp_path / "built", n_good=6, n_poor=6)
    _make_built(built)
    (built.parent / "rater_model.json").unlink()
    dataset = load_datasets([built], k_levels=5, reason_names=["blur", "dark"])
    out, report = apply_expected_reason_targets(dataset)
    assert report.rows_replaced == 0
    for before, after in zip(dataset.images, out.images, strict=True):
        np.testing.assert_array_equal(after.reasons, before.reasons)


def test_config_refuses_an_unknown_reason_target_mode(tmp_path: Path) -> None:
    csv_path = write_dataset(tmp_path / "d")
    with pytest.raises(ConfigError, match="reason_targets"):
        load_config(write_config(tmp_path, csv_path, reason_targets="sampled"))


@pytest.mark.torch
def test_training_with_expected_targets_records_them(tmp_path: Path) -> None:
    csv_path = write_dataset(tmp_path / "d", n_good=8, n_poor=8)
    _make_built(csv_path)
    config = load_config(write_config(tmp_path, csv_path, reason_targets="expected", epochs=2))
    train(config, progress=False)
    summary = json.loads((Path(config.out_dir) / "train_summary.json").read_text())
    targets = summary["reason_targets"]
    n_train = sum(1 for line in csv_path.read_text().splitlines()[1:] if ",train," in line)
    assert targets["mode"] == "expected"
    assert targets["rows_replaced"] == n_train > 0
    assert set(targets["mean_target_expected"]) == {"blur", "dark"}
