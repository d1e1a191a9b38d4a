"""Simulated raters, calibrated on the 200 really rated photos in ``../shared/data/rated``.

Model: every measured fault component (family, strength; see :mod:`model_export.data.degradations`)
lowers the expected rating along a per-family logistic curve

    mu_family(x) = LO + (HI - LO) / (1 + exp((x - x50) / width))

fitted on the rated photos of that family (strength measured the same way, from the rated image
and its source). The drops ``HI - mu_family(x)`` of all components of one image combine as a
Minkowski sum (exponent 2: one bad fault dominates, several moderate ones add up) and are taken
off the original's own expected rating ``mu0`` (cue-informed, see
:mod:`model_export.data.build_data`).
Each of four raters then reports ``clip(round(mu + bias_j + N(0, sigma_j)), 1, 5)``; bias and
sigma are the real raters' (from ratings.csv). A reason is named when its component's drop
reaches ``notice_drop`` for at least two raters (each with the same rater noise), which is how
rated/ratings.csv defines its reason columns.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import optimize, stats

from model_export.data import degradations as deg
from model_export.data import fault_kit, scene_faults

logger = logging.getLogger(__name__)

HI = 4.15  # expected rating of a faultless photo (real mean of the 84 rated originals: 4.13)
LO = 1.0
MINKOWSKI = 2.0
N_RATERS = 4

# Rated fault name -> calibration family (the strength measure is the family's, see measure()).
RATED_FAULT_FAMILY: dict[str, str] = {
    "gauss_blur": "blur",
    "line_motion": "blur",
    "underexpose": "dark",
    "overexpose": "bright",
    "specular": "glare",
    "tint": "colour",
    "webp": "compression",
    "downsample": "resolution",
    "shift_crop": "framing",
    "finger": "obstruction",
}

# Families used by the generator -> which fitted curve they use.
CURVE_OF_FAMILY: dict[str, str] = {
    "blur": "blur",
    "motion": "blur",
    "dark": "dark",
    "bright": "bright",
    "glare": "glare",
    "colour": "colour",
    "compression": "compression",
    "resolution": "resolution",
    "framing": "framing",
    "framing_nomask": "framing_nomask",
    "obstruction": "obstruction",
    "noise": "noise",
    "distance": "distance",
}

# Families the rated set says nothing about: prior curves (x50, width), stated assumptions.
#  noise: high-pass noise sigma in sRGB levels; a sigma of ~14 levels is where skin texture
#         drowns (judged on generated samples), poor beyond.
PRIOR_CURVES: dict[str, tuple[float, float]] = {"noise": (14.0, 3.0)}

# Anchor points added to a family's fit where the rated photos cover only mild strengths (all
# rated fingers/spots are small): (strength, mean rating) at an extreme that is unambiguous.
ANCHORS: dict[str, list[tuple[float, float]]] = {
    "obstruction": [(0.0, HI), (0.6, 1.5), (0.9, 1.0)],  # most of the lesion hidden
    # the rated spots are all small (<= 1.3 % of the frame, rated 3-3.75): where glare becomes
    # poor is an assumption: 5 % of the frame burnt out ~ borderline, a quarter ~ unusable
    "glare": [(0.0, HI), (0.05, 2.8), (0.25, 1.5)],
    "compression": [(0.0, HI), (0.5, 1.5)],  # SSIM 0.5: the image is destroyed
    "colour": [(0.0, HI)],
    "framing": [(0.0, HI), (1.0, 1.0)],  # lesion entirely out of frame
    "framing_nomask": [(0.0, HI)],
    # distance is fitted on the rated FUSeg *originals* (lesion size from the mask): x =
    # -log2(lesion linear size / frame); a lesion 1/200 of the frame is taken as unusable
    "distance": [(1.0, HI), (7.6, 1.5)],
    "resolution": [(0.0, HI)],
    "blur": [(0.0, HI)],
    "dark": [(0.0, HI)],
    "bright": [(0.0, HI)],
}


def curve(x: np.ndarray | float, x50: float, width: float) -> np.ndarray:
    """Expected mean rating at strength ``x`` (vectorised)."""
    z = np.clip((np.asarray(x, dtype=np.float64) - x50) / max(width, 1e-6), -50, 50)
    return LO + (HI - LO) / (1.0 + np.exp(z))


@dataclass
class RaterModel:
    """Fitted simulated-rater model (JSON-serialisable)."""

    curves: dict[str, tuple[float, float]]
    bias: list[float]
    sigma: list[float]
    notice_drop: float = 0.7
    fit_report: dict[str, Any] = field(default_factory=dict)

    def drop(self, family: str, strength: float) -> float:
        """Expected rating drop ``HI - mu_family(strength)`` of one component (>= 0)."""
        if family not in CURVE_OF_FAMILY:
            return 0.0
        x50, width = self.curves[CURVE_OF_FAMILY[family]]
        return float(HI - curve(strength, x50, width))

    def expected_rating(self, mu0: float, components: list[tuple[str, float]]) -> float:
        drops = [self.drop(f, x) for f, x in components]
        total = float(np.sum(np.power(np.maximum(drops, 0.0), MINKOWSKI)) ** (1 / MINKOWSKI))
        return max(LO, mu0 - total)

    def rate(
        self, mu0: float, components: list[tuple[str, float]], rng: np.random.Generator
    ) -> tuple[list[int], dict[str, int], float]:
        """Four integer ratings 1..5, the canonical reasons named by >= 2 raters, and mu."""
        mu = self.expected_rating(mu0, components)
        noise = rng.normal(0.0, 1.0, N_RATERS) * np.asarray(self.sigma)
        ratings = np.clip(np.rint(mu + np.asarray(self.bias) + noise), 1, 5).astype(int)
        reasons = dict.fromkeys(deg.REASONS, 0)
        for family, strength in components:
            reason = deg.FAMILY_REASON.get(family)
            if reason is None:
                continue
            drop = self.drop(family, strength)
            noticed = drop + rng.normal(0.0, 1.0, N_RATERS) * np.asarray(self.sigma)
            if int(np.sum(noticed >= self.notice_drop)) >= 2:
                reasons[reason] = 1
        return [int(r) for r in ratings], reasons, mu

    def reason_probabilities(self, components: list[tuple[str, float]]) -> dict[str, float]:
        """Probability that :meth:`rate` names each canonical reason for these components.

        :meth:`rate` names a reason when, for one of its components, at least two of the
        ``N_RATERS`` raters notice the drop (``drop + sigma_i * z >= notice_drop``), each
        component and rater with its own independent noise. This is that event's exact
        probability: the expected value of the 0/1 reason column, without the sampling noise of
        four raters (``{reason: p}`` over every reason in ``degradations.REASONS``).
        """
        sigma = np.asarray(self.sigma, dtype=np.float64)
        none_named = dict.fromkeys(deg.REASONS, 1.0)
        for family, strength in components:
            reason = deg.FAMILY_REASON.get(family)
            if reason is None:
                continue
            drop = self.drop(family, strength)
            notices = stats.norm.sf((self.notice_drop - drop) / sigma)  # [N_RATERS]
            misses = 1.0 - notices
            nobody = float(np.prod(misses))
            exactly_one = sum(
                float(notices[i] * np.prod(np.delete(misses, i))) for i in range(len(sigma))
            )
            none_named[reason] *= nobody + exactly_one
        return {reason: 1.0 - p for reason, p in none_named.items()}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RaterModel:
        data = json.loads(text)
        data["curves"] = {k: tuple(v) for k, v in data["curves"].items()}
        return cls(**data)


# ---------------------------------------------------------------------------------------------
# measuring the rated photos
# ---------------------------------------------------------------------------------------------
@dataclass
class RatedItem:
    image: str
    source_path: str
    cohort: str
    fault: str
    family: str | None
    strength: float
    ratings: list[int]
    reasons: dict[str, int]

    @property
    def mean(self) -> float:
        return float(np.mean(self.ratings))


def _locate_crop(source: np.ndarray, rated: np.ndarray, frac: float) -> tuple[int, int, int, int]:
    """Find where a zoomed crop (``frac`` of the frame, scaled back up) came from: template
    matching of the rated image shrunk back to ``frac`` within the source."""
    h, w = source.shape[:2]
    cw, ch = max(8, round(w * frac)), max(8, round(h * frac))
    small = cv2.resize(rated, (cw, ch), interpolation=cv2.INTER_AREA)
    res = cv2.matchTemplate(
        cv2.cvtColor(source, cv2.COLOR_RGB2GRAY),
        cv2.cvtColor(small, cv2.COLOR_RGB2GRAY),
        cv2.TM_CCOEFF_NORMED,
    )
    _, _, _, (x0, y0) = cv2.minMaxLoc(res)
    return int(x0), int(y0), cw, ch


def measure(
    family: str, source: np.ndarray, rated: np.ndarray, params: str, mask: np.ndarray | None
) -> tuple[str, float]:
    """(family actually used, strength) of a rated fault, measured like the generator does."""
    if family == "blur":  # PSF extent: Gaussian sigma, or a line's length / sqrt(12)
        values = dict(re.findall(r"(\w+)=([-\d.]+)", params))
        if "sigma" in values:
            return family, float(values["sigma"]) * 640 / max(source.shape[:2])
        return family, float(values["len"]) / math.sqrt(12) * 640 / max(source.shape[:2])
    if family == "resolution":
        return family, -math.log2(float(params.split("=")[1]))
    if family == "dark":
        return family, -fault_kit.exposure_stops(source, rated)
    if family == "bright":
        return family, fault_kit.washout(source, rated)
    if family == "glare":
        return family, fault_kit.highlight_fraction(source, rated)
    if family == "colour":
        return family, fault_kit.colour_shift(source, rated)
    if family == "compression":
        return family, fault_kit.ssim_loss(source, rated)
    if family == "framing":
        frac = float(params.split("=")[1])
        win = _locate_crop(source, rated, frac)
        h, w = source.shape[:2]
        has_mask = mask is not None and bool(np.any(mask > 0))
        return (
            "framing" if has_mask else "framing_nomask",
            scene_faults.framing_strength(h, w, win, mask if has_mask else None),
        )
    if family == "obstruction":
        changed = np.abs(source.astype(np.int16) - rated.astype(np.int16)).max(axis=2) > 25
        covered = float(changed.mean())
        if mask is not None and np.any(mask > 0):
            covered = max(covered, float(changed[mask > 0].mean()))
        return family, covered
    raise ValueError(f"unknown family {family}")


def load_rated(data_dir: Path) -> list[RatedItem]:
    """Read rated/ratings.csv + faults.csv and measure every faulted photo's strength."""
    from desktop_app.core.image_io import load_rgb

    rated_dir = data_dir / "rated"
    with open(rated_dir / "faults.csv", newline="") as fh:
        faults = {r["image"]: r for r in csv.DictReader(fh)}
    with open(data_dir / "manifest.csv", newline="") as fh:
        masks = {r["path"]: r["mask"] for r in csv.DictReader(fh)}
    items: list[RatedItem] = []
    with open(rated_dir / "ratings.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            fault = faults[row["image"]]["fault"]
            family = RATED_FAULT_FAMILY.get(fault)
            strength = 0.0
            mask_path = masks.get(row["source_path"], "")
            if family is None and fault == "none" and mask_path:
                mask = cv2.imread(str(data_dir / mask_path), 0)
                if mask is not None and np.any(mask > 0):
                    family = "distance"
                    strength = -math.log2(math.sqrt(float(np.mean(mask > 0))))
            elif family is not None:
                source = load_rgb(data_dir / row["source_path"])
                rated = load_rgb(rated_dir / row["image"])
                if rated.shape != source.shape:
                    rated = cv2.resize(rated, source.shape[1::-1], interpolation=cv2.INTER_AREA)
                mask = cv2.imread(str(data_dir / mask_path), 0) if mask_path else None
                family, strength = measure(
                    family, source, rated, faults[row["image"]]["params"], mask
                )
            items.append(
                RatedItem(
                    image=row["image"],
                    source_path=row["source_path"],
                    cohort=row["cohort"],
                    fault=fault,
                    family=family,
                    strength=float(strength),
                    ratings=[int(row[f"rater_{i}"]) for i in range(1, N_RATERS + 1)],
                    reasons=deg.map_rated_reasons(row),
                )
            )
    return items


# ---------------------------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------------------------
def _fit_curve(
    xs: np.ndarray, ys: np.ndarray, anchors: list[tuple[float, float]]
) -> tuple[float, float]:
    ax = np.array([a[0] for a in anchors], dtype=np.float64)
    ay = np.array([a[1] for a in anchors], dtype=np.float64)
    x_all = np.concatenate([xs, ax])
    y_all = np.concatenate([ys, ay])
    span = float(np.ptp(x_all)) or 1.0

    def residual(p: np.ndarray) -> np.ndarray:
        return np.asarray(curve(x_all, p[0], p[1]) - y_all)

    start = np.array([float(np.median(x_all)), span / 6])
    fit = optimize.least_squares(
        residual, start, bounds=([-10 * span, span / 100], [10 * span + np.max(x_all), 2 * span])
    )
    return float(fit.x[0]), float(fit.x[1])


def is_good(ratings: list[int] | np.ndarray) -> bool:
    """Majority of ratings >= 3; a 2-2 tie goes by the mean >= 3."""
    r = np.asarray(ratings)
    ok = int(np.sum(r >= 3))
    if ok * 2 == len(r):
        return bool(r.mean() >= 3)
    return ok * 2 > len(r)


def fit_raters(items: list[RatedItem], seed: int = 0) -> RaterModel:
    """Fit per-family curves, rater bias/noise and the reason-notice threshold; report the fit."""
    ratings = np.array([it.ratings for it in items], dtype=np.float64)
    mean = ratings.mean(axis=1, keepdims=True)
    bias = (ratings - mean).mean(axis=0)
    # residual sd around the 4-rater mean underestimates each rater's own sd by sqrt(3/4);
    # the rounding that the simulation applies again is taken out (uniform: 1/12)
    resid_var = ((ratings - mean - bias) ** 2).mean(axis=0) * N_RATERS / (N_RATERS - 1)
    sigma = np.sqrt(np.maximum(resid_var - 1 / 12, 0.02))

    curves: dict[str, tuple[float, float]] = dict(PRIOR_CURVES)
    families = sorted({it.family for it in items if it.family is not None})
    for family in families:
        sel = [it for it in items if it.family == family]
        xs = np.array([it.strength for it in sel])
        ys = np.array([it.mean for it in sel])
        curves[family] = _fit_curve(xs, ys, ANCHORS.get(family, [(0.0, HI)]))
    model = RaterModel(
        curves=curves, bias=[float(b) for b in bias], sigma=[float(s) for s in sigma]
    )
    model.notice_drop = _fit_notice(items, model)
    model.fit_report = calibration_report(items, model, seed)
    return model


def _fit_notice(items: list[RatedItem], model: RaterModel) -> float:
    """Drop threshold at which a fault's own reason gets named, best agreement on rated/."""
    faulted = [it for it in items if it.family is not None]
    best, best_acc = 0.7, -1.0
    for threshold in np.arange(0.2, 2.01, 0.05):
        hits = 0
        for it in faulted:
            assert it.family is not None
            reason = deg.FAMILY_REASON[it.family]
            predicted = model.drop(it.family, it.strength) >= threshold
            hits += int(predicted == bool(reason and it.reasons.get(reason, 0)))
        acc = hits / len(faulted)
        if acc > best_acc:
            best, best_acc = float(threshold), acc
    return round(best, 2)


def calibration_report(items: list[RatedItem], model: RaterModel, seed: int = 0) -> dict[str, Any]:
    """Spearman/MAE of the simulated expected rating vs the real mean rating, per family and
    overall; rater agreement and good/poor agreement of one simulated panel."""
    rng = np.random.default_rng(seed)
    report: dict[str, Any] = {"per_family": {}}
    sim_mu, real_mu, sim_good, real_good, sim_ratings = [], [], [], [], []
    for it in items:
        comps = [] if it.family is None else [(it.family, it.strength)]
        ratings, _, mu = model.rate(HI, comps, rng)
        sim_mu.append(mu)
        real_mu.append(it.mean)
        sim_good.append(is_good(ratings))
        real_good.append(is_good(it.ratings))
        sim_ratings.append(ratings)
    sim_arr, real_arr = np.array(sim_mu), np.array(real_mu)
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.family or "none", []).append(i)
    for family, idx in sorted(groups.items()):
        entry: dict[str, Any] = {
            "n": len(idx),
            "real_mean": round(float(real_arr[idx].mean()), 3),
            "sim_mean": round(float(sim_arr[idx].mean()), 3),
            "mae": round(float(np.abs(sim_arr[idx] - real_arr[idx]).mean()), 3),
            "real_poor": int(sum(not real_good[i] for i in idx)),
            "sim_poor": int(sum(not sim_good[i] for i in idx)),
        }
        if family != "none" and len(idx) >= 3 and np.ptp(real_arr[idx]) > 0:
            rho = stats.spearmanr(sim_arr[idx], real_arr[idx]).statistic
            entry["spearman"] = None if math.isnan(rho) else round(float(rho), 3)
        if family in model.curves:
            entry["curve_x50_width"] = [round(v, 4) for v in model.curves[family]]
        report["per_family"][family] = entry
    faulted = [i for i, it in enumerate(items) if it.family is not None]
    report["spearman_faulted"] = round(
        float(stats.spearmanr(sim_arr[faulted], real_arr[faulted]).statistic), 3
    )
    report["spearman_all"] = round(float(stats.spearmanr(sim_arr, real_arr).statistic), 3)
    report["good_poor_agreement"] = round(
        float(np.mean(np.array(sim_good) == np.array(real_good))), 3
    )
    sr = np.array(sim_ratings)
    pair = [
        stats.spearmanr(sr[:, a], sr[:, b]).statistic
        for a in range(N_RATERS)
        for b in range(a + 1, N_RATERS)
    ]
    report["sim_pairwise_spearman"] = [round(float(min(pair)), 3), round(float(max(pair)), 3)]
    report["notice_drop"] = model.notice_drop
    report["bias"] = [round(b, 3) for b in model.bias]
    report["sigma"] = [round(s, 3) for s in model.sigma]
    return report


def calibrate(data_dir: Path, seed: int = 0) -> tuple[RaterModel, list[RatedItem]]:
    items = load_rated(data_dir)
    return fit_raters(items, seed), items
