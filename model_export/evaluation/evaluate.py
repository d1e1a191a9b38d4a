"""``skin-capture-model evaluate``: AUC, Youden threshold, operating point, per split and cohort.

The threshold is chosen by the Youden index on the *validation* split only, then applied
unchanged to every other split (test, external sets): AUC with a percentile-bootstrap 95 % CI,
sensitivity / specificity / PPV / NPV with Wilson 95 % CIs, Brier score and calibration; each for
the whole split and per cohort. Writes ``report.json``, ``scores.csv``, and per split
``roc_<split>.png`` and ``calibration_<split>.png``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_export.config import TrainConfig
from model_export.data.dataset import RatedDataset, load_datasets
from model_export.metrics import (
    binary_report,
    calibration_bins,
    roc_curve,
    youden_threshold,
    youden_threshold_ci,
)
from model_export.model.network import PatchMILQualityNet
from model_export.training.bags import BagData, predict
from model_export.training.train import (
    TrainingError,
    load_checkpoint,
    load_run_dataset,
    make_cache,
    model_from_checkpoint,
    pick_device,
)

logger = logging.getLogger(__name__)


def score_dataset(
    model: PatchMILQualityNet,
    payload: dict[str, Any],
    dataset: RatedDataset,
    device: torch.device,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Scores of every image: cached descriptors + head when the trunk was frozen, else the full
    model on freshly tiled patches. Returns ``score`` ``[M]``, ``cum_probs`` ``[M, K-1]``,
    ``reasons`` ``[M, R]``."""
    config = TrainConfig.from_dict(payload["config"])
    if len(dataset) == 0:
        return {"score": np.zeros(0), "cum_probs": np.zeros((0, 0)), "reasons": np.zeros((0, 0))}
    model = model.to(device).eval()
    if payload.get("trunk_state") is None:
        cache = make_cache(config, model.trunk, device)
        bags = cache.get_many([im.path for im in dataset.images], progress=progress)
        data = BagData(dataset, bags, config.patch_size, config)
        return predict(model.head, None, data, device)
    data = BagData(dataset, None, config.patch_size, config)
    return predict(model.head, model.trunk, data, device, batch_size=8)


def load_eval_dataset(
    run_dir: Path, config: TrainConfig, reason_names: list[str], extra_csvs: list[Path]
) -> RatedDataset:
    """The run's own images (with its splits) plus external CSVs; an external row without a
    split is named after its CSV (``external:<file stem>``)."""
    dataset = load_run_dataset(config, run_dir / "splits.csv")
    if extra_csvs:
        extra = load_datasets(
            extra_csvs,
            k_levels=config.k_levels,
            acceptable_level=config.acceptable_level,
            reason_names=reason_names,
        )
        known = {im.path.resolve() for im in dataset.images}
        for im in extra.images:
            if im.path.resolve() in known:
                raise TrainingError(
                    f"{im.path} ({im.source_csv}) is also in the training CSVs; an external set "
                    "must not overlap the run's data"
                )
            split = im.split if im.split and im.split not in ("train", "val") else ""
            dataset.images.append(replace(im, split=split or f"external:{im.source_csv.stem}"))
    return dataset


def _plot_roc(
    path: Path,
    title: str,
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]],
    operating: tuple[float, float] | None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})", lw=1.8 if name == "all" else 1.0)
    if operating is not None:
        ax.plot([operating[0]], [operating[1]], "ko", label="Youden threshold")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("1 - specificity (poor photos accepted)")
    ax.set_ylabel("sensitivity (good photos accepted)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_calibration(path: Path, title: str, bins: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    xs = [m for m, n in zip(bins["mean_score"], bins["count"], strict=True) if n]
    ys = [o for o, n in zip(bins["observed"], bins["count"], strict=True) if n]
    ns = [n for n in bins["count"] if n]
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot(xs, ys, "o-", label="model")
    for x, y, n in zip(xs, ys, ns, strict=True):
        ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("mean score (predicted P(good))")
    ax.set_ylabel("observed fraction good (majority vote)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate_run(
    run_dir: str | Path,
    checkpoint: str = "best",
    extra_csvs: list[Path] | None = None,
    out_dir: str | Path | None = None,
    n_boot: int = 2000,
    threshold: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a training run's checkpoint; returns (and writes) the JSON report."""
    run_dir = Path(run_dir)
    payload = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.pt")
    config = TrainConfig.from_dict(payload["config"])
    out = Path(out_dir) if out_dir else run_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(config.device)
    model = model_from_checkpoint(payload)
    dataset = load_eval_dataset(run_dir, config, payload["reason_names"], list(extra_csvs or []))
    preds = score_dataset(model, payload, dataset, device, progress=progress)
    scores = preds["score"].astype(np.float64)
    labels = dataset.labels()
    splits = np.array([im.split for im in dataset.images])
    cohorts = np.array([im.cohort for im in dataset.images])
    threshold, threshold_info = _threshold(
        labels, scores, splits == "val", threshold, n_boot, config
    )
    cum = preds["cum_probs"]
    expected_rating = 1.0 + cum.sum(axis=1) if cum.size else np.zeros(len(dataset))
    rating_error = np.abs(expected_rating - np.array([im.mean_rating for im in dataset.images]))
    report: dict[str, Any] = {
        "run_dir": str(run_dir),
        "checkpoint": checkpoint,
        "epoch": payload["epoch"],
        "pooling": config.pooling,
        "model_name": config.model_name,
        "positive_class": "good (majority of raters >= acceptable level; tie by mean)",
        "threshold": threshold_info,
        "dataset": dataset.summary(),
        "splits": {},
    }
    for split in sorted(set(splits.tolist())):
        in_split = splits == split
        entry = _split_entry(labels, scores, cohorts, in_split, threshold, n_boot, config.seed)
        entry["expected_rating_mae"] = float(np.mean(rating_error[in_split]))
        entry["calibration"] = calibration_bins(labels[in_split], scores[in_split])
        curves = entry.pop("_curves")
        report["splits"][split] = entry
        _plot_split(out, split, int(in_split.sum()), entry, curves)
    _write_scores(out / "scores.csv", dataset, payload["reason_names"], preds, scores, threshold)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=_json_default), "utf-8")
    logger.info("evaluation written to %s", out)
    return report


def _threshold(
    labels: np.ndarray,
    scores: np.ndarray,
    val: np.ndarray,
    threshold: float | None,
    n_boot: int,
    config: TrainConfig,
) -> tuple[float, dict[str, Any]]:
    """The given threshold, or the Youden threshold on the validation split (``val`` mask) with
    its bootstrap interval."""
    if threshold is not None:
        return threshold, {"value": threshold, "method": "given", "chosen_on": None}
    if not val.any() or len(set(labels[val].tolist())) < 2:
        raise TrainingError(
            "the validation split needs good and poor images to choose the Youden threshold "
            "(or pass --threshold)"
        )
    chosen, j = youden_threshold(labels[val], scores[val])
    lo, hi = youden_threshold_ci(labels[val], scores[val], n_boot=n_boot, seed=config.seed)
    return chosen, {
        "value": chosen,
        "method": "youden",
        "chosen_on": "val",
        "youden_j": j,
        "ci95": [lo, hi],
        "ci_method": f"percentile bootstrap of the validation images, {n_boot}",
    }


def _split_entry(
    labels: np.ndarray,
    scores: np.ndarray,
    cohorts: np.ndarray,
    in_split: np.ndarray,
    threshold: float,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """One split's report (whole split and per cohort) and, under ``_curves``, its ROC curves
    (the whole split and up to 7 cohorts with both classes)."""
    y, s = labels[in_split], scores[in_split]
    entry: dict[str, Any] = {
        "all": binary_report(y, s, threshold, n_boot=n_boot, seed=seed),
        "cohorts": {},
    }
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    if len(set(y.tolist())) == 2:
        fpr, tpr, _ = roc_curve(y, s)
        curves["all"] = (fpr, tpr, entry["all"]["auc"]["value"])
    for cohort in sorted(set(cohorts[in_split].tolist())):
        sel = in_split & (cohorts == cohort)
        entry["cohorts"][cohort] = binary_report(
            labels[sel], scores[sel], threshold, n_boot=n_boot, seed=seed
        )
        if len(set(labels[sel].tolist())) == 2 and len(curves) < 8:
            fpr, tpr, _ = roc_curve(labels[sel], scores[sel])
            curves[cohort] = (fpr, tpr, entry["cohorts"][cohort]["auc"]["value"])
    entry["_curves"] = curves
    return entry


def _plot_split(
    out: Path,
    split: str,
    n: int,
    entry: dict[str, Any],
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]],
) -> None:
    """``roc_SPLIT.png`` (with the operating point) and ``calibration_SPLIT.png``."""
    safe = split.replace(":", "_").replace("/", "_")
    if curves:
        spec = entry["all"]["specificity"]["value"]
        sens = entry["all"]["sensitivity"]["value"]
        op = None if math.isnan(spec) or math.isnan(sens) else (1 - spec, sens)
        _plot_roc(out / f"roc_{safe}.png", f"ROC - {split} (n={n})", curves, op)
    _plot_calibration(
        out / f"calibration_{safe}.png", f"Calibration - {split}", entry["calibration"]
    )


def _write_scores(
    path: Path,
    dataset: RatedDataset,
    reason_names: list[str],
    preds: dict[str, np.ndarray],
    scores: np.ndarray,
    threshold: float,
) -> None:
    """``scores.csv``: one row per image (score, decision, expected rating, reasons)."""
    cum = preds["cum_probs"]
    expected_rating = 1.0 + cum.sum(axis=1) if cum.size else np.zeros(len(dataset))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = [
            "image",
            "split",
            "cohort",
            "label",
            "mean_rating",
            "score",
            "accepted",
            "expected_rating",
        ] + [f"reason_{n}" for n in reason_names]
        writer.writerow(header)
        for i, im in enumerate(dataset.images):
            reasons = preds["reasons"][i].tolist() if preds["reasons"].size else []
            writer.writerow(
                [
                    str(im.path),
                    im.split,
                    im.cohort,
                    im.label,
                    f"{im.mean_rating:.3f}",
                    f"{scores[i]:.6f}",
                    int(scores[i] >= threshold),
                    f"{expected_rating[i]:.3f}",
                ]
                + [f"{r:.4f}" for r in reasons]
            )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def threshold_interval_text(threshold_info: dict[str, Any]) -> str:
    """``"95 % bootstrap interval LO-HI"`` of a report's threshold, or ``""`` when the report has
    none or either end is undefined (NaN)."""
    interval = threshold_info.get("ci95", [math.nan])
    if not all(math.isfinite(v) for v in interval):
        return ""
    return f"95 % bootstrap interval {interval[0]:.3f}-{interval[1]:.3f}"


def format_report(report: dict[str, Any]) -> str:
    """A short plain-text table of the report (for the terminal)."""

    def fmt(metric: dict[str, Any]) -> str:
        lo, hi = metric["ci95"]
        return f"{metric['value']:.3f} ({lo:.3f}-{hi:.3f})"

    t = report["threshold"]
    interval = threshold_interval_text(t)
    interval = f"; {interval}" if interval else ""
    lines = [f"threshold {t['value']:.4f} ({t['method']} on {t['chosen_on']}{interval})"]
    lines.append(
        f"{'split':<22}{'cohort':<14}{'n':>5}  {'AUC (95% CI)':<22}{'sens':<22}"
        f"{'spec':<22}{'PPV':<22}{'NPV':<22}"
    )
    for split, entry in report["splits"].items():
        rows = [("all", entry["all"]), *entry["cohorts"].items()]
        for cohort, m in rows:
            lines.append(
                f"{split:<22}{cohort:<14}{m['n']:>5}  {fmt(m['auc']):<22}"
                f"{fmt(m['sensitivity']):<22}{fmt(m['specificity']):<22}{fmt(m['ppv']):<22}{fmt(m['npv']):<22}"
            )
    return "\n".join(lines)
