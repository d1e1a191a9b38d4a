"""Baseline scores: right direction on generated images; AUC table shape; BRISQUE model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_degradations import make_skin_photo

from model_export.evaluation import baselines


def test_laplacian_variance_falls_with_blur() -> None:
    image, _ = make_skin_photo()
    blurred = cv2.GaussianBlur(image, (0, 0), 2.0)
    assert baselines.laplacian_variance(blurred) < baselines.laplacian_variance(image)


def test_exposure_scores_penalise_dark_and_blown_images() -> None:
    image, _ = make_skin_photo()
    dark = (image * 0.15).astype(np.uint8)
    blown = np.clip(image.astype(np.int32) * 3, 0, 255).astype(np.uint8)
    ok = baselines.exposure_scores(image)["exposure"]
    assert baselines.exposure_scores(dark)["exposure"] < ok
    assert baselines.exposure_scores(blown)["exposure"] < ok


def test_brisque_features_shape_and_finiteness() -> None:
    image, _ = make_skin_photo()
    features = baselines.brisque_features(image)
    assert features.shape == (36,) and np.all(np.isfinite(features))


def test_bundled_brisque_model_rates_blur_worse() -> None:
    svr = baselines.load_brisque_svr()
    if svr is None:
        pytest.skip("the brisque package (its model files) is not installed")
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 40, (96, 128, 3)), 0, 255).astype(np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 0.8)
    sharp = svr.predict(baselines.brisque_features(image))
    blurred = svr.predict(baselines.brisque_features(cv2.GaussianBlur(image, (0, 0), 3.0)))
    assert blurred > sharp


def test_auc_table_per_cohort() -> None:
    labels = np.array([1, 1, 0, 0, 1, 0])
    cohorts = np.array(["a", "a", "a", "b", "b", "b"])
    table = baselines.auc_table({"s": np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.3])}, labels, cohorts)
    assert table["s"] == {"all": 1.0, "a": 1.0, "b": 1.0}
