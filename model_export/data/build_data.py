"""``skin-capture-model build-data``: real photos + simulated capture faults -> rated training set.

Writes ``OUT/images/{train,val}/NNNNN.jpg`` (JPEG quality 95, the source's size: clean originals
are re-encoded the same way so the encoder is no cue) and ``OUT/dataset.csv`` in the training
pipeline's format (``image`` relative to the CSV, ``rater_1..4``, ``cohort``, ``split``, the eight
canonical reason columns, plus ``source_path``, ``fault`` and ``params`` JSON), the fitted rater
model (``rater_model.json``) and ``build_summary.json``.

Splits: DermNet by condition folder (a condition is wholly train or wholly val), FUSeg by the
challenge's own train/validation split (so by source photo); every source used by
``rated/ratings.csv`` is excluded from both.

Imperfect originals: each original gets a cue-informed expected rating ``mu0`` from no-reference
cues (exposure, clipping, fine-detail ratio, noise) pushed through the same calibrated curves as
the faults; originals with ``mu0 < SCREEN_MU0`` are dropped, so a dark or soft original never
teaches "good". Non-photographs (X-rays, fluorescence micrographs: no skin colour and greyscale
or green-dominant) are kept as *poor* (the rated set's micrograph, cal-174, was rated 1,1,1,1).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from model_export.data import degradations as deg
from model_export.data import raters, scene_faults
from model_export.data.build_plan import (
    CSV_FIELDS,
    DEFAULT_RECIPES,
    DERMNET_SHARE,
    JPEG_QUALITY,
    RECIPE_SETS,
    SCREEN_MU0,
    Item,
    is_non_photo,
    load_manifest,
    original_cues,
    original_mu0,
    plan,
    rated_sources,
    split_sources,
)

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# worker
# ---------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(shared_data: str, out_dir: str, model_json: str) -> None:
    cv2.setNumThreads(1)
    _WORKER["shared"] = Path(shared_data)
    _WORKER["out"] = Path(out_dir)
    _WORKER["model"] = raters.RaterModel.from_json(model_json)


def apply_recipe(
    image: np.ndarray,
    recipe: list[tuple[str, float]],
    rng: np.random.Generator,
    mask: np.ndarray | None,
) -> tuple[np.ndarray, list[tuple[str, float]], list[dict[str, Any]]]:
    """Apply the faults in order; returns image, measured components and each fault's params."""
    components: list[tuple[str, float]] = []
    params: list[dict[str, Any]] = []
    current = image
    for name, severity in recipe:
        fn = scene_faults.reframe if name == "reframe" else deg.FAULTS[name]
        result = fn(current, severity, rng, mask)
        # geometric faults move the lesion; later faults should not use a stale mask
        if name in ("off_centre", "zoom_out", "reframe", "cut_off"):
            mask = None
        current = result.image
        components.extend(result.components)
        params.append({"fault": name, "severity": round(severity, 3), **result.params})
    return current, components, params


def process_item(item: Item) -> dict[str, Any] | None:
    """Degrade, rate and write one image; a ``screened`` record when its original is screened
    out, a ``skipped`` one when a fault could not apply (its params carry ``skip``)."""
    from desktop_app.core.image_io import load_rgb

    shared: Path = _WORKER["shared"]
    model: raters.RaterModel = _WORKER["model"]
    image = load_rgb(shared / item.source_path)
    cues = original_cues(image)
    non_photo = is_non_photo(cues)
    mu0 = original_mu0(model, cues)
    if not non_photo and mu0 < SCREEN_MU0:
        return {"screened": True, "source_path": item.source_path, "mu0": mu0}
    mask = None
    if item.mask_path:
        mask = cv2.imread(str(shared / item.mask_path), cv2.IMREAD_GRAYSCALE)
        if mask is None or mask.shape != image.shape[:2] or not np.any(mask > 0):
            mask = None
    rng = np.random.default_rng(item.seed)
    degraded, components, params = apply_recipe(image, item.recipe, rng, mask)
    skip = next((step["skip"] for step in params if "skip" in step), None)
    if skip is not None:  # e.g. cut_off found no subject to cut: the item would be mislabelled
        fault = "+".join(name for name, _ in item.recipe)
        return {"skipped": skip, "source_path": item.source_path, "fault": fault}
    # a FUSeg photo's own lesion size is a (mild) distance fault; crops enlarge the lesion,
    # a zoom-out reports its own distance
    distance = scene_faults.lesion_distance(mask)
    if distance is not None and all(step["fault"] != "zoom_out" for step in params):
        for step in params:
            if step["fault"] in ("reframe", "off_centre", "cut_off"):
                distance += math.log2(step["zoom"])
        components.append(("distance", distance))
    ratings, reasons, mu = model.rate(mu0, components, rng)
    rel = Path("images") / item.split / f"{item.index:05d}.jpg"
    path = _WORKER["out"] / rel
    ok = cv2.imwrite(
        str(path), degraded[:, :, ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise OSError(f"cannot write {path}")
    fault = "+".join(name for name, _ in item.recipe) or "none"
    if non_photo:
        fault = f"non_photo:{fault}"
    row: dict[str, Any] = {
        "image": rel.as_posix(),
        **{f"rater_{i + 1}": r for i, r in enumerate(ratings)},
        "cohort": item.cohort,
        "split": item.split,
        **reasons,
        "source_path": item.source_path,
        "fault": fault,
        "params": json.dumps(
            {
                "steps": params,
                "components": [[f, round(x, 4)] for f, x in components],
                "mu0": round(mu0, 3),
                "mu": round(mu, 3),
                "cues": {k: round(v, 4) for k, v in cues.items()},
            },
            sort_keys=True,
        ),
    }
    return row


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------
def build(
    shared: Path,
    out: Path,
    n_train: int = 2400,
    n_val: int = 600,
    seed: int = 0,
    workers: int = 2,
    val_share: float = 0.2,
    exclude_val_of: Path | None = None,
    recipes: str = DEFAULT_RECIPES,
    only_faults: Sequence[str] | None = None,
    val_split_name: str = "val",
) -> dict[str, Any]:
    """Build the dataset; returns the summary written to ``build_summary.json``.

    ``exclude_val_of``: an earlier build's folder. Images whose original shares a DermNet
    condition or a source photo with that build's validation split are dropped after the build,
    so this one can add training images to it (``--n-val 0``) without leaking into its
    validation.

    ``recipes``: a key of :data:`RECIPE_SETS` (``v1`` rebuilds the data of models <= 1.2.0).
    ``only_faults``: restrict the build to clean originals and these single faults (weights
    from the recipe set), e.g. to add examples of the families a recipe set introduced.
    ``val_split_name``: the ``split`` value written for validation rows; another name than
    ``val`` makes a separate validation set that training and the Youden threshold leave alone
    and that ``evaluate --external`` reports under that name.
    """
    weights = _recipe_weights(recipes, only_faults)
    started = time.perf_counter()
    shared_data = shared if (shared / "manifest.csv").exists() else shared / "data"
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)

    model, rated_items = raters.calibrate(shared_data, seed)
    (out / "rater_model.json").write_text(model.to_json())
    t_calibrated = time.perf_counter()

    rng = np.random.default_rng(seed)
    excluded = rated_sources(shared_data)
    pools = split_sources(load_manifest(shared_data), excluded, rng, val_share)
    items = plan(pools, {"train": n_train, "val": n_val}, rng, weights, bool(only_faults))

    results = _process_items(items, workers, (str(shared_data), str(out), model.to_json()))
    screened = [r for r in results if r.get("screened")]
    skipped = [r for r in results if r.get("skipped")]
    rows = [r for r in results if not r.get("screened") and not r.get("skipped")]
    kept, dropped_for_other_val = _keep_requested(rows, n_train, n_val, exclude_val_of, out)

    with open(out / "dataset.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows({**r, "split": val_split_name} if r["split"] == "val" else r for r in kept)

    summary = summarise(kept, screened, model, rated_items, shared_data)
    summary["runtime_s"] = {
        "calibration": round(t_calibrated - started, 1),
        "total": round(time.perf_counter() - started, 1),
        "workers": min(workers, 2),
    }
    summary["excluded_rated_sources"] = len(excluded)  # rated/ and rated2/
    summary["skipped_items"] = {  # a fault that could not apply (cut_off: no subject found)
        "n": len(skipped),
        "reasons": dict(Counter(str(r["skipped"]) for r in skipped)),
    }
    summary["recipes"] = {"set": recipes, "only_faults": list(only_faults or [])}
    summary["val_split_name"] = val_split_name
    if exclude_val_of is not None:
        summary["dropped_for_validation_of"] = {
            "build": str(exclude_val_of),
            "images": dropped_for_other_val,
        }
    summary["val_dermnet_conditions"] = sorted({r["condition"] for r in pools["val"]["dermnet"]})
    (out / "build_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _recipe_weights(recipes: str, only_faults: Sequence[str] | None) -> dict[str, float]:
    """The single-fault weights of the recipe set, restricted to ``only_faults`` if given."""
    if recipes not in RECIPE_SETS:
        raise ValueError(f"unknown recipe set {recipes!r}; known: {sorted(RECIPE_SETS)}")
    weights = RECIPE_SETS[recipes]
    if only_faults:
        unknown = sorted(set(only_faults) - set(weights))
        if unknown:
            raise ValueError(f"faults not in recipe set {recipes}: {unknown}")
        weights = {name: weights[name] for name in only_faults}
    return weights


def _process_items(
    items: list[Item], workers: int, init_args: tuple[str, str, str]
) -> list[dict[str, Any]]:
    """:func:`process_item` on every item (in up to two spawned worker processes)."""
    if workers <= 1:
        _init_worker(*init_args)
        return [r for r in map(process_item, items) if r is not None]
    ctx = mp.get_context("spawn")  # fork after cv2/BLAS threads can deadlock
    with ctx.Pool(min(workers, 2), initializer=_init_worker, initargs=init_args) as pool:
        return [r for r in pool.imap(process_item, items, chunksize=8) if r is not None]


def _keep_requested(
    rows: list[dict[str, Any]],
    n_train: int,
    n_val: int,
    exclude_val_of: Path | None,
    out: Path,
) -> tuple[list[dict[str, Any]], int]:
    """Keep the requested counts and the planned cohort shares (minus images whose source is
    in ``exclude_val_of``'s validation); delete the surplus files. Returns the kept rows and how
    many were dropped for that other validation split."""
    kept: list[dict[str, Any]] = []
    for split, n in (("train", n_train), ("val", n_val)):
        for cohort, share in (("dermnet", DERMNET_SHARE), ("fuseg", 1 - DERMNET_SHARE)):
            chosen = [r for r in rows if r["split"] == split and r["cohort"] == cohort]
            kept.extend(chosen[: round(n * share)])
    dropped_for_other_val = 0
    if exclude_val_of is not None:
        before = len(kept)
        other_val = ValidationSources.of_build(exclude_val_of)
        kept = [r for r in kept if r["source_path"] not in other_val]
        dropped_for_other_val = before - len(kept)
    kept_images = {r["image"] for r in kept}
    for r in rows:
        if r["image"] not in kept_images:
            (out / r["image"]).unlink(missing_ok=True)
    return kept, dropped_for_other_val


@dataclass(frozen=True)
class ValidationSources:
    """An earlier build's validation split: its DermNet conditions and its source photos."""

    dermnet_conditions: frozenset[str]
    source_paths: frozenset[str]

    @classmethod
    def of_build(cls, build_dir: Path) -> ValidationSources:
        summary = json.loads((build_dir / "build_summary.json").read_text())
        val_name = summary.get("val_split_name", "val")  # a build may name its validation rows
        with open(build_dir / "dataset.csv", newline="") as fh:
            sources = {r["source_path"] for r in csv.DictReader(fh) if r["split"] == val_name}
        return cls(frozenset(summary.get("val_dermnet_conditions", [])), frozenset(sources))

    def __contains__(self, source_path: object) -> bool:
        """Same source photo, or (DermNet, split by condition) the same condition folder."""
        if not isinstance(source_path, str):
            return False
        parts = Path(source_path).parts
        return source_path in self.source_paths or (
            len(parts) >= 2 and parts[0] == "dermnet" and parts[1] in self.dermnet_conditions
        )


def summarise(
    rows: list[dict[str, Any]],
    screened: list[dict[str, Any]],
    model: raters.RaterModel,
    rated_items: list[raters.RatedItem],
    shared_data: Path,
) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for split in ("train", "val"):
        for cohort in ("dermnet", "fuseg"):
            sel = [r for r in rows if r["split"] == split and r["cohort"] == cohort]
            poor = sum(not raters.is_good([r[f"rater_{i}"] for i in range(1, 5)]) for r in sel)
            counts[f"{split}/{cohort}"] = {
                "n": len(sel),
                "poor": poor,
                "poor_share": round(poor / max(1, len(sel)), 3),
                "sources": len({r["source_path"] for r in sel}),
            }
    fault_counts: dict[str, dict[str, int]] = {}
    for r in rows:
        key = r["fault"].split(":")[0] if r["fault"].startswith("non_photo") else r["fault"]
        key = "combo" if "+" in key else key
        entry = fault_counts.setdefault(key, {"n": 0, "poor": 0})
        entry["n"] += 1
        entry["poor"] += int(not raters.is_good([r[f"rater_{i}"] for i in range(1, 5)]))
    total_poor = sum(not raters.is_good([r[f"rater_{i}"] for i in range(1, 5)]) for r in rows)
    return {
        "n_images": len(rows),
        "poor_share": round(total_poor / max(1, len(rows)), 3),
        "per_split_cohort": counts,
        "per_fault": dict(sorted(fault_counts.items())),
        "reason_counts": {k: int(sum(int(r[k]) for r in rows)) for k in deg.REASONS},
        "screened_out_items": len(screened),
        "screened_out_sources": sorted({s["source_path"] for s in screened}),
        "non_photo_items": sum(r["fault"].startswith("non_photo") for r in rows),
        "calibration": model.fit_report,
        "rated_originals_check": screening_check(rated_items, model, shared_data),
    }


def screening_check(
    rated_items: list[raters.RatedItem], model: raters.RaterModel, data_dir: Path
) -> dict[str, Any]:
    """How the cue-informed mu0 relates to the real ratings of the rated *originals*."""
    from scipy import stats

    from desktop_app.core.image_io import load_rgb

    if not rated_items:
        return {}
    originals = [it for it in rated_items if it.family is None and it.fault == "none"]
    mu0s, real = [], []
    for it in originals:
        cues = original_cues(load_rgb(data_dir / "rated" / it.image))
        mu0s.append(original_mu0(model, cues))
        real.append(it.mean)
    mu0_arr, real_arr = np.array(mu0s), np.array(real)
    flagged = mu0_arr <= np.quantile(mu0_arr, 0.25)
    return {
        "n_originals": len(originals),
        "spearman_mu0_vs_real": round(float(stats.spearmanr(mu0_arr, real_arr).statistic), 3),
        "real_mean_all": round(float(real_arr.mean()), 3),
        "n_mu0_bottom_quartile": int(flagged.sum()),
        "real_mean_mu0_bottom_quartile": round(float(real_arr[flagged].mean()), 3),
        "real_mean_mu0_rest": round(float(real_arr[~flagged].mean()), 3),
        "min_mu0": round(float(mu0_arr.min()), 3),
        "n_real_poor": int(sum(not raters.is_good(it.ratings) for it in originals)),
    }


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "build-data", help="build the rated training set from ../shared/data"
    )
    parser.add_argument("--shared", type=Path, required=True, help="../shared/data (or ../shared)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--n-train", type=int, default=2400)
    parser.add_argument("--n-val", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes (at most 2)")
    parser.add_argument(
        "--exclude-val-of",
        type=Path,
        help="an earlier build: drop images whose source is in its validation split "
        "(same photo or DermNet condition), to add training images to it",
    )
    parser.add_argument(
        "--recipes",
        choices=sorted(RECIPE_SETS),
        default=DEFAULT_RECIPES,
        help="fault recipe set (v1: the data of models up to 1.2.0; v4 adds chat-app "
        "recompression, sheen and cut-off findings)",
    )
    parser.add_argument(
        "--only-faults",
        nargs="+",
        metavar="FAULT",
        help="only clean originals and these single faults (no reframes or combinations)",
    )
    parser.add_argument(
        "--val-split-name",
        default="val",
        help="split name written for validation rows (another name: a separate set that "
        "evaluate --external reports under that name)",
    )
    parser.set_defaults(func=run)
    return parser


def sample_subset(csv_path: Path, out_csv: Path, n_per_split: dict[str, int], seed: int) -> int:
    """Write a random subset of a built dataset CSV (same image paths, so caches are reused).

    Per split: shuffle the rows with ``random.Random(seed)``, keep the first n, sort by image.
    Returns the number of rows written.
    """
    import random

    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    rng = random.Random(seed)
    kept: list[dict[str, str]] = []
    for split, n in n_per_split.items():
        pool = [r for r in rows if r["split"] == split]
        rng.shuffle(pool)
        kept += sorted(pool[:n], key=lambda r: r["image"])
    with out_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    return len(kept)


def add_sample_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sample-data", help="random per-split subset of a built dataset CSV"
    )
    parser.add_argument("--csv", type=Path, required=True, help="dataset.csv from build-data")
    parser.add_argument("--out", type=Path, required=True, help="subset CSV (same folder)")
    parser.add_argument("--n-train", type=int, required=True)
    parser.add_argument("--n-val", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(
        func=lambda a: (
            0
            if sample_subset(a.csv, a.out, {"train": a.n_train, "val": a.n_val}, a.seed) > 0
            else 1
        )
    )
    return parser


def run(args: argparse.Namespace) -> int:
    summary = build(
        args.shared,
        args.out,
        args.n_train,
        args.n_val,
        args.seed,
        args.workers,
        exclude_val_of=args.exclude_val_of,
        recipes=args.recipes,
        only_faults=args.only_faults,
        val_split_name=args.val_split_name,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "screened_out_sources"}, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skin-capture-model")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))
