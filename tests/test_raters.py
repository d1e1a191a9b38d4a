"""Simulated raters: valid ratings, monotone in severity; calibration on ../shared when present."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from model_export.data import raters
from model_export.data.degradations import REASONS


def toy_model() -> raters.RaterModel:
    curves = {name: (2.0, 0.5) for name in set(raters.CURVE_OF_FAMILY.values())}
    return raters.RaterModel(
        curves=curves, bias=[-0.1, 0.1, 0.0, 0.05], sigma=[0.3, 0.3, 0.3, 0.3], notice_drop=0.6
    )


def test_ratings_are_integers_1_to_5_and_reasons_canonical() -> None:
    model = toy_model()
    rng = np.random.default_rng(0)
    for strength in np.linspace(0, 5, 30):
        ratings, reasons, mu = model.rate(raters.HI, [("blur", float(strength))], rng)
        assert len(ratings) == 4 and all(1 <= r <= 5 and isinstance(r, int) for r in ratings)
        assert set(reasons) == set(REASONS) and set(reasons.values()) <= {0, 1}
        assert raters.LO <= mu <= raters.HI


@pytest.mark.parametrize("family", ["blur", "dark", "colour", "framing", "noise"])
def test_mean_rating_falls_monotonically_with_strength(family: str) -> None:
    model = toy_model()
    rng = np.random.default_rng(1)
    means = []
    for strength in (0.0, 1.0, 2.0, 3.0, 4.0):
        panel = [model.rate(raters.HI, [(family, strength)], rng)[0] for _ in range(300)]
        means.append(float(np.mean(panel)))
    assert all(a > b for a, b in itertools.pairwise(means)), means
    assert means[0] >= 3.8 and means[-1] <= 1.6


def test_strong_fault_names_its_reason_and_none_names_nothing() -> None:
    model = toy_model()
    rng = np.random.default_rng(2)
    _, reasons, _ = model.rate(raters.HI, [("motion", 5.0)], rng)
    assert reasons["motion"] == 1 and sum(reasons.values()) == 1
    _, reasons, _ = model.rate(raters.HI, [], rng)
    assert sum(reasons.values()) == 0


def test_combined_faults_are_rated_worse_than_either_alone() -> None:
    model = toy_model()
    single = model.expected_rating(raters.HI, [("blur", 1.8)])
    both = model.expected_rating(raters.HI, [("blur", 1.8), ("dark", 1.8)])
    assert both < single


def test_majority_vote_rule() -> None:
    assert raters.is_good([3, 3, 3, 2])
    assert not raters.is_good([2, 2, 2, 3])
    assert raters.is_good([4, 4, 2, 2])  # tie: mean 3.0
    assert not raters.is_good([3, 3, 1, 2])  # tie: mean 2.25


def test_model_json_roundtrip() -> None:
    model = toy_model()
    again = raters.RaterModel.from_json(model.to_json())
    assert again.curves == model.curves and again.sigma == model.sigma


@pytest.mark.shared
def test_calibration_on_rated_photos(shared_dir: Path) -> None:
    model, items = raters.calibrate(shared_dir / "data")
    assert len(items) == 200
    report = model.fit_report
    # the fitted curves rank the faulted rated photos like the real raters do
    assert report["spearman_faulted"] > 0.7
    assert report["good_poor_agreement"] > 0.8
    low, high = report["sim_pairwise_spearman"]
    assert 0.7 < low <= high < 0.95  # real raters: 0.80-0.88
    # people rarely call a mild colour cast poor
    assert model.expected_rating(raters.HI, [("colour", 8.0)]) > 3.5


@pytest.mark.parametrize(
    "components",
    [
        [("blur", 1.35)],  # expected drop near notice_drop: about half the draws name it
        [("glare", 1.25), ("bright", 1.2)],  # two families of one reason
        [("motion", 1.45), ("noise", 1.3), ("colour", 0.5)],
        [],
    ],
)
def test_reason_probabilities_match_the_named_reasons_rate_samples(
    components: list[tuple[str, float]],
) -> None:
    model = raters.RaterModel(
        curves={name: (2.0, 0.5) for name in set(raters.CURVE_OF_FAMILY.values())},
        bias=[0.0, 0.0, 0.0, 0.0],
        sigma=[0.2, 0.35, 0.5, 0.3],
        notice_drop=0.7,
    )
    rng = np.random.default_rng(3)
    draws = 6000
    named = dict.fromkeys(REASONS, 0)
    for _ in range(draws):
        _, reasons, _ = model.rate(raters.HI, components, rng)
        for reason, flag in reasons.items():
            named[reason] += flag
    expected = model.reason_probabilities(components)
    assert set(expected) == set(REASONS)
    for reason in REASONS:
        # binomial standard error <= 0.0065 at 6000 draws: 0.025 is about 4 of them
        assert abs(named[reason] / draws - expected[reason]) < 0.025, reason
    in_between = [p for p in expected.values() if 0.05 < p < 0.95]
    assert in_between or not components  # the cases exercise the probabilities, not just 0 / 1
