"""How the quality gate does on photos and faults it was not fitted on, and the model built from
the rated photos (``skin-capture-model generalisation``).

The learner is ``model_export.training.rated_finetune``:
an exported model's head fine-tuned on photos
rated by people. Every number here is measured on photos rated by people (``rated/``,
``rated2/``). What is held out, and from what:

* **rated2 out-of-family**: the head tuned and its threshold chosen on ``rated/`` only, tested
  on ``rated2/``, whose fault family is unlike ``rated/``'s and whose raters were used for
  nothing the model learned (the starting model's simulated raters were fitted on ``rated/``
  only). The reverse direction tunes on ``rated2/`` and tests on ``rated/``; there the starting
  model is not independent of the test set (its simulated raters were fitted on ``rated/``).
* **leave-one-fault-family-out**: for each fault kind of the rated sets, the head is tuned and
  the threshold chosen without any photo of that kind or of its source photos (and without the
  clean photos it is tested against), then tested on that kind's photos plus those clean ones.
* **in-family**: 5-fold cross-validation over both rated sets, grouped by source photo. Folds
  share fault recipes, so this says how well the tuning fits the rated families, not more. The
  shipped threshold is chosen on these out-of-fold scores, as the paper chose its threshold on
  rater-labelled validation.

The shipped head is then tuned on all rated photos.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_export.data.rated import (
    RATED_SET_FOLDERS,
    RatedPhoto,
    load_rated_photos,
    operating_threshold,
    source_groups,
)
from model_export.training.rated_finetune import FineTuneConfig, fine_tune, predict, rated_bags

logger = logging.getLogger(__name__)

MIN_SENSITIVITY = 0.90
ITA_BINS: tuple[tuple[str, float, float], ...] = (
    ("light (ITA > 41)", 41.0, math.inf),
    ("intermediate/tan (10 to 41)", 10.0, 41.0),
    ("brown/dark (ITA < 10)", -math.inf, 10.0),
)
Bag = tuple[np.ndarray, np.ndarray]


@dataclass
class RatedSet:
    """The rated photos with their descriptor bags from one model file, and the head to tune."""

    photos: list[RatedPhoto]
    bags: list[Bag]
    start: Any  # QualityHead
    reason_names: tuple[str, ...]
    config: FineTuneConfig

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([p.label for p in self.photos])

    def where(self, keep: Callable[[RatedPhoto], bool]) -> np.ndarray:
        return np.asarray([i for i, p in enumerate(self.photos) if keep(p)], dtype=int)

    def in_set(self, name: str) -> np.ndarray:
        return self.where(lambda p: p.rated_set == name)

    def in_cohort(self, name: str) -> np.ndarray:
        return self.where(lambda p: p.cohort == name)

    def with_fault(self, name: str) -> np.ndarray:
        return self.where(lambda p: p.fault == name)

    def tune(self, index: Sequence[int] | np.ndarray) -> Any:
        return fine_tune(
            self.start,
            [self.photos[i] for i in index],
            [self.bags[i] for i in index],
            self.reason_names,
            self.config,
        )

    def scores(self, head: Any, index: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return predict(head, [self.bags[i] for i in index])

    def out_of_fold(
        self, index: np.ndarray, folds: int, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold scores ``[len(index)]`` and reasons over ``index`` (grouped by source)."""
        from sklearn.model_selection import StratifiedGroupKFold

        labels = self.labels[index]
        groups = source_groups([self.photos[i] for i in index])
        scores = np.zeros(index.size)
        reasons = np.zeros((index.size, len(self.reason_names)))
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        for train, test in splitter.split(np.zeros(index.size), labels, groups):
            head = self.tune(index[train])
            scores[test], reasons[test] = self.scores(head, index[test])
        return scores, reasons

    def tune_with_threshold(self, index: np.ndarray, folds: int = 3) -> tuple[Any, float]:
        """A head tuned on ``index`` and its threshold from inner out-of-fold scores."""
        oof, _ = self.out_of_fold(index, folds)
        threshold = operating_threshold(self.labels[index], oof, MIN_SENSITIVITY)
        return self.tune(index), threshold


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if labels.size == 0 or labels.min() == labels.max():
        return math.nan
    return float(roc_auc_score(labels, scores))


def rates_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """AUC, and sensitivity (good accepted), specificity (poor rejected), PPV, NPV at
    ``threshold`` (positive class = good)."""
    from sklearn.metrics import confusion_matrix

    accepted = (scores >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, accepted, labels=[0, 1]).ravel()

    def ratio(a: int, b: int) -> float:
        return float(a / b) if b else math.nan

    return {
        "n": int(labels.size),
        "good": int(labels.sum()),
        "poor": int(labels.size - labels.sum()),
        "auc": _auc(labels, scores),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
    }


def reason_f1(
    photos: Sequence[RatedPhoto], reasons: np.ndarray, names: Sequence[str]
) -> dict[str, Any]:
    """F1 at 0.5 of each reason output against what >= 2 raters named (with the positives)."""
    from sklearn.metrics import f1_score

    out: dict[str, Any] = {}
    for j, name in enumerate(names):
        known = [i for i, p in enumerate(photos) if name in p.reasons]
        if not known:
            continue
        y = np.asarray([photos[i].reasons[name] for i in known])
        predicted = (reasons[known, j] >= 0.5).astype(int)
        out[name] = {
            "positives": int(y.sum()),
            "f1": float(f1_score(y, predicted, zero_division=0.0)) if y.sum() else math.nan,
        }
    return out


def by_fault(
    photos: Sequence[RatedPhoto], labels: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Per fault kind: good photos rejected and poor photos accepted at ``threshold``."""
    out: dict[str, Any] = {}
    for fault in sorted({p.fault for p in photos}):
        idx = np.asarray([i for i, p in enumerate(photos) if p.fault == fault])
        y, s = labels[idx], scores[idx]
        out[fault] = {
            "good": int(y.sum()),
            "poor": int(y.size - y.sum()),
            "good_rejected": int(((s < threshold) & (y == 1)).sum()),
            "poor_accepted": int(((s >= threshold) & (y == 0)).sum()),
        }
    return out


def direction(
    data: RatedSet, train_set: str, test_set: str, shipped_threshold: float
) -> dict[str, Any]:
    """Tune and choose the threshold on ``train_set``; test on ``test_set`` (sources apart).
    The rates are given at that threshold and at ``shipped_threshold`` (``at_shipped``)."""
    train = data.where(lambda p: p.rated_set == train_set)
    train_sources = {data.photos[i].source_path for i in train}
    test = data.where(lambda p: p.rated_set == test_set and p.source_path not in train_sources)
    head, threshold = data.tune_with_threshold(train)
    scores, reasons = data.scores(head, test)
    labels = data.labels[test]
    test_photos = [data.photos[i] for i in test]
    result = rates_at(labels, scores, threshold)
    result.update(
        {
            "tuned_on": train_set,
            "threshold": threshold,
            "at_shipped": rates_at(labels, scores, shipped_threshold),
            "reason_f1": reason_f1(test_photos, reasons, data.reason_names),
            "by_fault": by_fault(test_photos, labels, scores, threshold),
        }
    )
    return result


def leave_one_family_out(data: RatedSet, clean_folds: int = 5) -> dict[str, Any]:
    """Per fault kind F: tuned and thresholded without F, F's sources and one fold of the clean
    photos; tested on F's photos plus that clean fold. The mean and worst AUC count families
    with at least 3 poor and 3 good photos in their test."""
    from sklearn.model_selection import GroupKFold

    labels = data.labels
    clean = data.where(lambda p: p.fault == "none")
    groups = source_groups(data.photos)
    clean_fold = np.full(len(data.photos), -1)
    for k, (_, test) in enumerate(
        GroupKFold(n_splits=clean_folds).split(clean, groups=groups[clean])
    ):
        clean_fold[clean[test]] = k
    families = sorted({p.fault for p in data.photos} - {"none"})
    results: dict[str, Any] = {}
    for number, family in enumerate(families):
        family_idx = data.with_fault(family)
        family_sources = {data.photos[i].source_path for i in family_idx}
        test_clean = clean[clean_fold[clean] == number % clean_folds]
        held = set(family_idx.tolist()) | set(test_clean.tolist())
        train = np.asarray(
            [
                i
                for i, p in enumerate(data.photos)
                if i not in held and p.source_path not in family_sources
            ]
        )
        head, threshold = data.tune_with_threshold(train)
        test = np.concatenate([family_idx, test_clean])
        scores, _ = data.scores(head, test)
        entry = rates_at(labels[test], scores, threshold)
        fam_labels, fam_scores = labels[family_idx], scores[: family_idx.size]
        entry.update(
            {
                "rated_set": data.photos[int(family_idx[0])].rated_set,
                "family_good": int(fam_labels.sum()),
                "family_poor": int(fam_labels.size - fam_labels.sum()),
                "family_good_rejected": int(((fam_scores < threshold) & (fam_labels == 1)).sum()),
                "family_poor_accepted": int(((fam_scores >= threshold) & (fam_labels == 0)).sum()),
                "threshold": threshold,
            }
        )
        results[family] = entry
        logger.info("leave out %s: AUC %.3f", family, entry["auc"])
    counted = {f: r["auc"] for f, r in results.items() if r["family_poor"] >= 3 and r["good"] >= 3}
    worst = min(counted, key=lambda f: counted[f]) if counted else ""
    return {
        "families": results,
        "mean_auc": float(np.mean(list(counted.values()))) if counted else math.nan,
        "worst_auc": counted.get(worst, math.nan),
        "worst_family": worst,
        "families_in_mean": len(counted),
    }


def individual_typology_angle(image: np.ndarray) -> float:
    """ITA (degrees) of a uint8 RGB photo's typical skin: arctan((L* - 50) / b*) of the median
    colour of the half of its pixels nearest the frame's median colour (lesion and background
    are mostly left out that way)."""
    import cv2

    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    lab[:, 0] *= 100.0 / 255.0
    lab[:, 1:] -= 128.0
    distance = np.linalg.norm(lab - np.median(lab, axis=0), axis=1)
    skin = lab[distance <= np.percentile(distance, 50)]
    lightness, b = float(np.median(skin[:, 0])), float(np.median(skin[:, 2]))
    return math.degrees(math.atan2(lightness - 50.0, b))


def by_skin_tone(
    photos: Sequence[RatedPhoto],
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    ita: np.ndarray,
) -> dict[str, Any]:
    """False rejections (good rejected / good) and false acceptances (poor accepted / poor) by
    ITA bin of each photo's undegraded source."""
    out: dict[str, Any] = {}
    for name, lo, hi in ITA_BINS:
        idx = (ita > lo) & (ita <= hi)
        y, s = labels[idx], scores[idx]
        good, poor = int(y.sum()), int(y.size - y.sum())
        out[name] = {
            "n": int(idx.sum()),
            "good": good,
            "poor": poor,
            "false_reject_rate": float(((s < threshold) & (y == 1)).sum() / good)
            if good
            else math.nan,
            "false_accept_rate": float(((s >= threshold) & (y == 0)).sum() / poor)
            if poor
            else math.nan,
        }
    return out


def _cached_bags(photos: list[RatedPhoto], model_path: Path, cache_dir: Path) -> list[Bag]:
    key = hashlib.sha256(model_path.read_bytes()).hexdigest()[:16]
    names = hashlib.sha256("\n".join(str(p.path) for p in photos).encode()).hexdigest()[:8]
    cache = cache_dir / f"rated-bags-{key}-{names}.npz"
    if cache.is_file():
        stored = np.load(cache)
        return [(stored[f"arr_{2 * i}"], stored[f"arr_{2 * i + 1}"]) for i in range(len(photos))]
    bags = rated_bags(photos, model_path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, *[array for bag in bags for array in bag])
    return bags


def run_generalisation(
    shared_data: Path,
    model_path: Path,
    out_dir: Path,
    config: FineTuneConfig,
    leave_out_families: bool = True,
) -> tuple[dict[str, Any], Any]:
    """Every number of the model card's performance section, and the head tuned on all rated
    photos. Writes ``out_dir/report.json``."""
    import onnx

    from desktop_app.core.image_io import load_rgb
    from desktop_app.core.inference import QualityEngine
    from model_export.training.rated_finetune import head_from_onnx

    photos = load_rated_photos(shared_data)
    bags = _cached_bags(photos, model_path, out_dir / "cache")
    start = head_from_onnx(onnx.load(str(model_path)))
    reason_names = tuple(QualityEngine(model_path, providers="cpu").meta.reason_names)
    data = RatedSet(photos, bags, start, reason_names, config)
    labels = data.labels
    report: dict[str, Any] = {
        "model": model_path.name,
        "photos": len(photos),
        "config": asdict(config),
        "min_sensitivity": MIN_SENSITIVITY,
    }

    start_threshold = QualityEngine(model_path, providers="cpu").threshold
    start_scores, start_reasons = predict(start, bags)
    report["starting_model"] = _starting_model(data, start_scores, start_reasons, start_threshold)
    everything = np.arange(len(photos))
    oof, oof_reasons = data.out_of_fold(everything, folds=5)
    threshold = operating_threshold(labels, oof, MIN_SENSITIVITY)
    in_family = _in_family(data, oof, oof_reasons, threshold)
    ita = np.asarray(
        [individual_typology_angle(load_rgb(shared_data / p.source_path)) for p in photos]
    )
    in_family["by_skin_tone"] = by_skin_tone(photos, labels, oof, threshold, ita)
    in_family["starting_model_by_skin_tone"] = by_skin_tone(
        photos, labels, start_scores, start_threshold, ita
    )
    report["in_family_cv"] = in_family
    report["out_of_family"] = {
        "rated2_tuned_on_rated": direction(data, "rated", "rated2", threshold),
        "rated_tuned_on_rated2": direction(data, "rated2", "rated", threshold),
    }
    logger.info("out-of-family done")
    if leave_out_families:
        report["leave_one_family_out"] = leave_one_family_out(data)

    head = data.tune(everything)
    report["shipped_threshold"] = threshold
    report["in_family_cv_scores"] = {
        str(p.path.relative_to(shared_data)): round(float(v), 6)
        for p, v in zip(photos, oof, strict=True)
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=float))
    return report, head


def _starting_model(
    data: RatedSet, scores: np.ndarray, reasons: np.ndarray, threshold: float
) -> dict[str, Any]:
    """The starting model at its own threshold: per rated set, reason F1 on rated2, by fault."""
    labels, photos = data.labels, data.photos
    starting: dict[str, Any] = {"threshold": threshold}
    for name in RATED_SET_FOLDERS:
        idx = data.in_set(name)
        starting[name] = rates_at(labels[idx], scores[idx], threshold)
    rated2 = data.where(lambda p: p.rated_set == "rated2")
    starting["reason_f1_rated2"] = reason_f1(
        [photos[i] for i in rated2], reasons[rated2], data.reason_names
    )
    starting["by_fault"] = by_fault(photos, labels, scores, threshold)
    return starting


def _in_family(
    data: RatedSet, oof: np.ndarray, oof_reasons: np.ndarray, threshold: float
) -> dict[str, Any]:
    """The 5-fold out-of-fold scores at the shipped threshold: all, per set and cohort, reason
    F1 on rated2, by fault."""
    labels, photos = data.labels, data.photos
    in_family: dict[str, Any] = {"threshold": threshold, "all": rates_at(labels, oof, threshold)}
    for name in RATED_SET_FOLDERS:
        idx = data.in_set(name)
        in_family[name] = rates_at(labels[idx], oof[idx], threshold)
    for cohort in sorted({p.cohort for p in photos}):
        idx = data.in_cohort(cohort)
        in_family[f"cohort {cohort}"] = rates_at(labels[idx], oof[idx], threshold)
    rated2 = data.where(lambda p: p.rated_set == "rated2")
    in_family["reason_f1_rated2"] = reason_f1(
        [photos[i] for i in rated2], oof_reasons[rated2], data.reason_names
    )
    in_family["by_fault"] = by_fault(photos, labels, oof, threshold)
    return in_family
