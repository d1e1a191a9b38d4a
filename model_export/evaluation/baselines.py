"""``skin-capture-model baselines``: classic no-reference quality scores and their ROC AUC.

Scores (higher = better quality, so that AUC is of "good" vs "poor"):

* ``laplacian_var``: log variance of the Laplacian of the grey image (focus measure).
* ``exposure_midgrey``: minus the distance of the mean sRGB luma from mid-grey (0.5).
* ``exposure_clipped``: minus the fraction of blown (max channel >= 250) plus crushed
  (max channel <= 5) pixels.
* ``exposure``: the sum of the two exposure scores.
* ``brisque``: minus the BRISQUE score. Features follow Mittal et al. 2012 (MSCN coefficients with
  a 7x7 Gaussian window, sigma 7/6; GGD fit of the MSCN and AGGD fits of the four pairwise
  products; two scales: 36 features), computed here with numpy/OpenCV; the quality regressor is
  the LIVE-trained epsilon-SVR (RBF) bundled with the ``brisque`` PyPI package (its
  ``models/svm.txt`` + ``normalize.pickle``), evaluated in numpy. (The package's own ``score()``
  fails under numpy 2, so only its model files are used.) If the package is not installed, a
  logistic regression on the same 36 features is fitted on the dataset's train split instead,
  and the report says so.

Labels: good = majority of the four ratings >= 3 (a 2-2 tie by mean >= 3). AUC is reported per
cohort and overall, on the chosen split of the dataset CSV and on ``rated/``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import special

from model_export.data.raters import is_good

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# simple scores
# ---------------------------------------------------------------------------------------------
def laplacian_variance(image: np.ndarray) -> float:
    """log10 variance of the 3x3 Laplacian of the grey image (uint8 RGB ``[H, W, 3]``)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(np.log10(cv2.Laplacian(grey, cv2.CV_64F).var() + 1e-6))


def exposure_scores(image: np.ndarray) -> dict[str, float]:
    """Exposure statistics as quality scores (higher = better exposed)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    brightest = image.max(axis=2)
    midgrey = -abs(float(grey.mean()) - 0.5)
    clipped = -(float(np.mean(brightest >= 250)) + float(np.mean(brightest <= 5)))
    return {"exposure_midgrey": midgrey, "exposure_clipped": clipped, "exposure": midgrey + clipped}


# ---------------------------------------------------------------------------------------------
# BRISQUE
# ---------------------------------------------------------------------------------------------
_ALPHAS = np.arange(0.2, 10.0, 0.001)
_RHO = special.gamma(2 / _ALPHAS) ** 2 / (special.gamma(1 / _ALPHAS) * special.gamma(3 / _ALPHAS))


def _aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit (moment matching): alpha, mean, sigma_l^2, sigma_r^2."""
    x = x.ravel().astype(np.float64)
    left, right = x[x < 0], x[x >= 0]
    sl = float(np.sqrt(np.mean(left**2))) if left.size else 1e-6
    sr = float(np.sqrt(np.mean(right**2))) if right.size else 1e-6
    gamma = sl / max(sr, 1e-12)
    r_hat = float(np.mean(np.abs(x))) ** 2 / max(float(np.mean(x**2)), 1e-12)
    big_r = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
    alpha = float(_ALPHAS[np.argmin((_RHO - big_r) ** 2)])
    const = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = (sr - sl) * const * special.gamma(2 / alpha) / special.gamma(1 / alpha)
    return alpha, float(mean), sl**2, sr**2


def _mscn(grey: np.ndarray) -> np.ndarray:
    mu = cv2.GaussianBlur(grey, (7, 7), 7 / 6, borderType=cv2.BORDER_CONSTANT)
    var = cv2.GaussianBlur(grey * grey, (7, 7), 7 / 6, borderType=cv2.BORDER_CONSTANT)
    sigma = np.sqrt(np.abs(var - mu * mu))
    return np.asarray((grey - mu) / (sigma + 1.0 / 255.0))


def _scale_features(grey: np.ndarray) -> list[float]:
    m = _mscn(grey)
    alpha, _, sl2, sr2 = _aggd(m)
    feats = [alpha, (sl2 + sr2) / 2]
    for shifted in (
        m[:, :-1] * m[:, 1:],
        m[:-1, :] * m[1:, :],
        m[:-1, :-1] * m[1:, 1:],
        m[1:, :-1] * m[:-1, 1:],
    ):
        feats.extend(_aggd(shifted))
    return feats


def brisque_features(image: np.ndarray) -> np.ndarray:
    """36 BRISQUE features ``[36]`` of a uint8 RGB image (grey in [0, 1], two scales)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255.0
    half = cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    return np.array(_scale_features(grey) + _scale_features(half), dtype=np.float64)


@dataclass
class BrisqueSVR:
    """The LIVE-trained BRISQUE epsilon-SVR (RBF kernel) from libsvm's text model format."""

    support_vectors: np.ndarray  # [S, 36]
    coefs: np.ndarray  # [S]
    rho: float
    gamma: float
    feature_min: np.ndarray  # [36]
    feature_max: np.ndarray  # [36]

    def predict(self, features: np.ndarray) -> float:
        scaled = -1 + 2.0 * (features - self.feature_min) / (self.feature_max - self.feature_min)
        d2 = np.sum((self.support_vectors - scaled[None, :]) ** 2, axis=1)
        return float(np.dot(self.coefs, np.exp(-self.gamma * d2)) - self.rho)


def load_brisque_svr() -> BrisqueSVR | None:
    """The ``brisque`` package's bundled model, located without importing the package."""
    spec = importlib.util.find_spec("brisque")
    if spec is None or not spec.submodule_search_locations:
        return None
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    svm_path, norm_path = models / "svm.txt", models / "normalize.pickle"
    if not svm_path.exists() or not norm_path.exists():
        return None
    header: dict[str, str] = {}
    svs: list[np.ndarray] = []
    coefs: list[float] = []
    in_sv = False
    for line in svm_path.read_text().splitlines():
        if not in_sv:
            if line.strip() == "SV":
                in_sv = True
            else:
                key, _, value = line.partition(" ")
                header[key] = value
            continue
        parts = line.split()
        if not parts:
            continue
        coefs.append(float(parts[0]))
        vec = np.zeros(36)
        for token in parts[1:]:
            idx, val = token.split(":")
            vec[int(idx) - 1] = float(val)
        svs.append(vec)
    with open(norm_path, "rb") as fh:
        norm = pickle.load(fh)  # a dict of two float lists shipped with the package
    return BrisqueSVR(
        support_vectors=np.array(svs),
        coefs=np.array(coefs),
        rho=float(header["rho"]),
        gamma=float(header["gamma"]),
        feature_min=np.array(norm["min_"], dtype=np.float64),
        feature_max=np.array(norm["max_"], dtype=np.float64),
    )


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------
def read_rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as fh:
        return list(csv.DictReader(fh))


def label_of(row: dict[str, str]) -> int:
    return int(is_good([int(row[f"rater_{i}"]) for i in range(1, 5)]))


def score_images(
    rows: list[dict[str, str]], root: Path, svr: BrisqueSVR | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-score arrays ``[n]`` and the BRISQUE feature matrix ``[n, 36]``."""
    from desktop_app.core.image_io import load_rgb

    scores: dict[str, list[float]] = {}
    feats: list[np.ndarray] = []
    for row in rows:
        image = load_rgb(root / row["image"])
        values = {"laplacian_var": laplacian_variance(image), **exposure_scores(image)}
        f = brisque_features(image)
        feats.append(f)
        if svr is not None:
            values["brisque"] = -svr.predict(f)
        for key, value in values.items():
            scores.setdefault(key, []).append(value)
    return {k: np.array(v) for k, v in scores.items()}, np.array(feats)


def auc_table(
    scores: dict[str, np.ndarray], labels: np.ndarray, cohorts: np.ndarray
) -> dict[str, dict[str, Any]]:
    from sklearn.metrics import roc_auc_score

    table: dict[str, dict[str, Any]] = {}
    for name, values in scores.items():
        entry: dict[str, Any] = {}
        for cohort in ("all", *sorted(set(cohorts.tolist()))):
            sel = np.ones(len(labels), bool) if cohort == "all" else cohorts == cohort
            y = labels[sel]
            entry[cohort] = (
                round(float(roc_auc_score(y, values[sel])), 3) if 0 < y.sum() < len(y) else None
            )
        table[name] = entry
    return table


def _fit_brisque_logistic(
    train_feats: np.ndarray, train_labels: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    clf.fit(train_feats, train_labels)
    return lambda f: np.asarray(clf.predict_proba(f)[:, 1])


def run_baselines(
    csv_path: Path, split: str, rated_dir: Path | None, max_train: int = 800
) -> dict[str, Any]:
    svr = load_brisque_svr()
    rows = [r for r in read_rows(csv_path) if r["split"] == split]
    scores, feats = score_images(rows, csv_path.parent, svr)
    labels = np.array([label_of(r) for r in rows])
    sets: list[tuple[str, dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]] = [
        (split, scores, feats, labels, np.array([r["cohort"] for r in rows]))
    ]
    if rated_dir is not None and (rated_dir / "ratings.csv").exists():
        rated_rows = read_rows(rated_dir / "ratings.csv")
        r_scores, r_feats = score_images(rated_rows, rated_dir, svr)
        sets.append(
            (
                "rated",
                r_scores,
                r_feats,
                np.array([label_of(r) for r in rated_rows]),
                np.array([r["cohort"] for r in rated_rows]),
            )
        )
    brisque_note = "LIVE-trained SVR from the brisque package's model files (numpy evaluation)"
    if svr is None:
        train_rows = [r for r in read_rows(csv_path) if r["split"] == "train"][:max_train]
        _, train_feats = score_images(train_rows, csv_path.parent, None)
        predict = _fit_brisque_logistic(train_feats, np.array([label_of(r) for r in train_rows]))
        for _, sc, fe, _, _ in sets:
            sc["brisque"] = predict(fe)
        brisque_note = (
            f"brisque package absent: logistic regression on the 36 BRISQUE features fitted on "
            f"{len(train_rows)} train-split images"
        )
    report: dict[str, Any] = {"brisque_model": brisque_note, "sets": {}}
    for name, sc, _, y, cohorts in sets:
        report["sets"][name] = {
            "n": len(y),
            "n_good": int(y.sum()),
            "n_poor": int(len(y) - y.sum()),
            "auc": auc_table(sc, y, cohorts),
        }
    return report


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"BRISQUE: {report['brisque_model']}", ""]
    for name, data in report["sets"].items():
        cohorts = list(next(iter(data["auc"].values())).keys())
        lines.append(
            f"**{name}** ({data['n']} images: {data['n_good']} good, {data['n_poor']} poor) "
            "- ROC AUC, good vs poor"
        )
        lines.append("")
        lines.append("| score | " + " | ".join(cohorts) + " |")
        lines.append("| --- |" + " --- |" * len(cohorts))
        for score, entry in data["auc"].items():
            cells = ["n/a" if entry[c] is None else f"{entry[c]:.3f}" for c in cohorts]
            lines.append(f"| {score} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "baselines", help="Laplacian variance, exposure statistics and BRISQUE with ROC AUC"
    )
    parser.add_argument("--csv", type=Path, required=True, help="dataset.csv from build-data")
    parser.add_argument("--split", default="val", help="split of the CSV to evaluate")
    parser.add_argument(
        "--rated",
        type=Path,
        default=Path("../shared/data/rated"),
        help="rated/ folder for the second evaluation set (skipped if absent)",
    )
    parser.add_argument("--out", type=Path, help="output stem (default: next to the CSV)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    report = run_baselines(args.csv, args.split, args.rated if args.rated.exists() else None)
    stem = args.out or args.csv.parent / f"baselines_{args.split}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(report, indent=2))
    markdown = to_markdown(report)
    Path(f"{stem}.md").write_text(markdown + "\n")
    print(markdown)
    return 0
