"""What ``build-data`` builds: the recipe sets and mixes, the no-reference cues and expected
rating of each original, the train/validation split of the sources, and the planned items (one
original, one recipe each). :mod:`model_export.data.build_data` executes the plan."""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model_export.data import degradations as deg
from model_export.data import fault_kit, raters
from model_export.data.rated import RATED_SET_FOLDERS

JPEG_QUALITY = 95
SCREEN_MU0 = 3.0
NON_PHOTO_MU0 = 1.2

# Pool statistics of the cues (measured on 600 random photos of ../shared/data, seed 0).
POOL_MEDIAN_LUMINANCE = 0.266  # mean linear luminance
POOL_LOW_DETAIL_RATIO = 2.6  # fine/mid detail ratio (log2); pool 10th pct 2.44, median 3.02
# a Gaussian blur of sigma 1 (2) lowers the detail ratio by 0.93 (1.84) (median, 40 photos)
DETAIL_DEFICIT_TO_SIGMA = 1.1

# Recipe mix per item.
P_CLEAN = 0.17
P_REFRAME = 0.05
P_COMBO = 0.20
# Single-fault weights per recipe set. v1 built the data of models up to 1.2.0 and is kept so
# those builds reproduce exactly (a new entry changes every later random draw). v2 adds three
# enlargement / tone families that the rated photos showed the v1 mix lacked: a nearest-neighbour
# enlargement (v1 only had smooth ones, which the model learnt as blur; blocky pixelated photos
# passed), darkening by a tone curve without extra noise, and washout by sRGB gain + offset.
# v3 adds two everyday faults no earlier set or rated photo had, chosen for plausibility and not
# from any validation result: a shadow cast across the subject and a smudged (hazy) lens.
# v4 adds three families that the rated2 photos show matter and no earlier set simulated:
# chat-app forwarding (repeated shrink + 4:2:0 JPEG), broad specular sheen on oily/moist skin
# and the finding cut off at the frame's edge also without a lesion mask (see v4_faults).
RECIPE_SETS: dict[str, dict[str, float]] = {
    "v1": {
        "defocus": 1.2,
        "motion": 1.2,
        "low_light": 1.1,
        "sensor_noise": 0.8,
        "over_exposure": 1.0,
        "flash_glare": 0.9,
        "colour_cast": 1.0,
        "jpeg": 0.7,
        "resolution": 0.8,
        "off_centre": 1.0,
        "zoom_out": 0.8,
        "obstruction": 1.0,
    },
}
RECIPE_SETS["v2"] = {**RECIPE_SETS["v1"], "pixelation": 0.6, "tone_dark": 0.6, "levels_bright": 0.6}
RECIPE_SETS["v3"] = {**RECIPE_SETS["v2"], "cast_shadow": 0.6, "lens_haze": 0.6}
RECIPE_SETS["v4"] = {**RECIPE_SETS["v3"], "recompression_chain": 0.6, "sheen": 0.6, "cut_off": 0.6}
DEFAULT_RECIPES = "v3"  # no model has been trained on v4 yet
DERMNET_SHARE = 0.55
OVERSAMPLE = 1.08  # screened-out originals are dropped; plan a few extra items

CSV_FIELDS = [
    "image",
    "rater_1",
    "rater_2",
    "rater_3",
    "rater_4",
    "cohort",
    "split",
    *deg.REASONS,
    "source_path",
    "fault",
    "params",
]


# ---------------------------------------------------------------------------------------------
# cues on originals
# ---------------------------------------------------------------------------------------------
def original_cues(image: np.ndarray) -> dict[str, float]:
    """No-reference cues of one uint8 RGB photo ``[H, W, 3]``."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)

    def energy(sigma: float) -> float:
        lap = cv2.Laplacian(cv2.GaussianBlur(grey, (0, 0), sigma), cv2.CV_32F)
        return float(np.mean(lap * lap)) + 1e-3

    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    conv = np.abs(cv2.filter2D(grey, -1, kernel)[1:-1, 1:-1])
    noise = math.sqrt(math.pi / 2) / 6 * float(conv.mean())  # Immerkaer (1996)
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    cr, cb = ycc[..., 1], ycc[..., 2]
    skin = float(np.mean((cr >= 133) & (cr <= 180) & (cb >= 77) & (cb <= 135)))
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    chroma = float(np.hypot(lab[..., 1], lab[..., 2]).mean())
    mean_rgb = image.reshape(-1, 3).mean(axis=0)
    return {
        "luminance": float(fault_kit.luminance(image).mean()),
        "clipped": fault_kit.clipped_fraction(image),
        "detail_ratio": math.log2(energy(1.0) / energy(2.0)),
        "noise": noise,
        "skin": skin,
        "chroma": chroma,
        "green_dominance": float(mean_rgb[1] / (max(mean_rgb[0], mean_rgb[2]) + 1e-6)),
    }


def is_non_photo(cues: dict[str, float]) -> bool:
    """X-ray / fluorescence micrograph: no skin colour and greyscale or green-dominant."""
    return cues["skin"] < 0.03 and (cues["chroma"] < 3.0 or cues["green_dominance"] > 1.25)


def cue_components(cues: dict[str, float]) -> list[tuple[str, float]]:
    """Cues as fault components (family, strength) on the calibrated strength scales."""
    dark = max(0.0, math.log2(POOL_MEDIAN_LUMINANCE / max(cues["luminance"], 1e-4)) - 1.0)
    bright = max(0.0, cues["clipped"] - 0.03)
    blur = max(0.0, POOL_LOW_DETAIL_RATIO - cues["detail_ratio"]) * DETAIL_DEFICIT_TO_SIGMA
    return [("dark", dark), ("bright", bright), ("blur", blur), ("noise", cues["noise"])]


def original_mu0(model: raters.RaterModel, cues: dict[str, float]) -> float:
    if is_non_photo(cues):
        return NON_PHOTO_MU0
    return model.expected_rating(raters.HI, cue_components(cues))


# ---------------------------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------------------------
@dataclass
class Item:
    index: int
    split: str
    cohort: str
    source_path: str
    mask_path: str
    recipe: list[tuple[str, float]]  # (fault name, severity); empty = clean original
    seed: int


def load_manifest(shared_data: Path) -> list[dict[str, str]]:
    with open(shared_data / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def rated_sources(shared_data: Path) -> set[str]:
    """Source photos of every rated set present (``rated/``, ``rated2/``): no synthetic build
    may draw them, so a model trained on a build can be tested on any rated set."""
    sources: set[str] = set()
    for folder in RATED_SET_FOLDERS:
        ratings = shared_data / folder / "ratings.csv"
        if ratings.is_file():
            with open(ratings, newline="") as fh:
                sources.update(row["source_path"] for row in csv.DictReader(fh))
    return sources


def split_sources(
    rows: list[dict[str, str]], excluded: set[str], rng: np.random.Generator, val_share: float
) -> dict[str, dict[str, list[dict[str, str]]]]:
    """{split: {cohort: [manifest rows]}}; DermNet by condition, FUSeg by challenge split."""
    pools: dict[str, dict[str, list[dict[str, str]]]] = {
        s: {"dermnet": [], "fuseg": []} for s in ("train", "val")
    }
    dermnet = [r for r in rows if r["source"] == "dermnet" and r["path"] not in excluded]
    conditions = sorted({r["condition"] for r in dermnet})
    rng.shuffle(conditions)
    per_condition = Counter(r["condition"] for r in dermnet)
    val_conditions: set[str] = set()
    count = 0
    for condition in conditions:
        if count >= val_share * len(dermnet):
            break
        val_conditions.add(condition)
        count += per_condition[condition]
    for r in dermnet:
        pools["val" if r["condition"] in val_conditions else "train"]["dermnet"].append(r)
    for r in rows:
        if r["source"] == "fuseg" and r["path"] not in excluded:
            split = "val" if Path(r["path"]).name.startswith("validation") else "train"
            pools[split]["fuseg"].append(r)
    return pools


def draw_recipe(
    rng: np.random.Generator,
    has_mask: bool,
    weights: dict[str, float] | None = None,
    singles_only: bool = False,
) -> list[tuple[str, float]]:
    """One item's recipe: [] (clean original), a reframe, a combination, or one fault.

    ``weights``: single-fault weights (default: the default recipe set). ``singles_only``: no
    reframes or combinations, only clean originals and single faults from ``weights`` (a build
    that adds examples of chosen families).
    """
    weights = RECIPE_SETS[DEFAULT_RECIPES] if weights is None else weights
    u = rng.random()
    if u < P_CLEAN:
        return []
    if not singles_only:
        if u < P_CLEAN + P_REFRAME:
            return [("reframe", 0.0)]
        if u < P_CLEAN + P_REFRAME + P_COMBO:
            combo = deg.COMBINATIONS[int(rng.integers(0, len(deg.COMBINATIONS)))]
            return [(name, float(rng.uniform(0.1, 0.9))) for name in combo]
    names = list(weights)
    p = np.array([weights[n] for n in names])
    name = names[int(rng.choice(len(names), p=p / p.sum()))]
    return [(name, float(rng.random()))]


def plan(
    pools: dict[str, dict[str, list[dict[str, str]]]],
    n_per_split: dict[str, int],
    rng: np.random.Generator,
    weights: dict[str, float] | None = None,
    singles_only: bool = False,
) -> list[Item]:
    items: list[Item] = []
    for split, n in n_per_split.items():
        wanted = {
            "dermnet": round(n * DERMNET_SHARE * OVERSAMPLE),
            "fuseg": round(n * (1 - DERMNET_SHARE) * OVERSAMPLE),
        }
        for cohort, k in wanted.items():
            pool = pools[split][cohort]
            if not pool:
                continue
            order: list[int] = []
            while len(order) < k:  # every source once before any is reused
                order.extend(rng.permutation(len(pool)).tolist())
            for i in order[:k]:
                row = pool[i]
                items.append(
                    Item(
                        index=len(items),
                        split=split,
                        cohort=cohort,
                        source_path=row["path"],
                        mask_path=row["mask"],
                        recipe=draw_recipe(rng, bool(row["mask"]), weights, singles_only),
                        seed=int(rng.integers(0, 2**31 - 1)),
                    )
                )
    return items
