"""The rated photos (model_export.data.rated): loading
the shared sets and the operating threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_export.data.rated import load_rated_photos, operating_threshold, source_groups


@pytest.mark.shared
def test_the_shared_rated_sets_load_with_their_stated_labels(shared_dir: Path) -> None:
    photos = load_rated_photos(shared_dir / "data")
    by_set = {name: [p for p in photos if p.rated_set == name] for name in ("rated", "rated2")}
    # the counts ../shared/data/README.md states
    assert sum(p.label for p in by_set["rated"]) == 149 and len(by_set["rated"]) == 200
    assert sum(p.label for p in by_set["rated2"]) == 202 and len(by_set["rated2"]) == 240
    assert all(len(p.ratings) == 4 and p.path.is_file() for p in photos)
    assert {p.fault for p in by_set["rated2"]} >= {"messenger", "sheen", "cut_off", "none"}
    # the two sets share no source photo, so tuning on one and testing on the other is clean
    sources = {name: {p.source_path for p in group} for name, group in by_set.items()}
    assert not sources["rated"] & sources["rated2"]
    assert len(set(source_groups(photos))) == len(sources["rated"]) + len(sources["rated2"])


def test_operating_threshold_keeps_the_sensitivity_floor() -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(200, int), np.zeros(60, int)]
    scores = np.r_[rng.normal(0.7, 0.15, 200), rng.normal(0.4, 0.15, 60)]
    for floor in (0.8, 0.9, 0.95):
        threshold = operating_threshold(labels, scores, floor)
        assert (scores[labels == 1] >= threshold).mean() >= floor
    # with no floor to respect it is the plain Youden point, which rejects most poor photos
    assert (scores[labels == 0] < operating_threshold(labels, scores, 0.0)).mean() > 0.7
    # the threshold falls between two observed scores, not on one
    assert not np.isclose(scores, operating_threshold(labels, scores, 0.9)).any()
