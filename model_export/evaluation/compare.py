"""``skin-capture-model compare-pooling``: mean vs max vs attention MIL on the same features.

Each pooling is trained with the same config, data split and cached descriptors (so only the
head differs), for one or more seeds, then evaluated (threshold from validation). The table
reports the validation AUC of the selected epoch (optimistic: selection happened on it) and the
AUC of every other non-train split, with bootstrap CIs for the first seed and mean +- sd over
seeds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model_export.config import POOLINGS, TrainConfig
from model_export.evaluation.evaluate import evaluate_run
from model_export.training.train import train

logger = logging.getLogger(__name__)


def compare_pooling(
    config: TrainConfig,
    poolings: Sequence[str] = POOLINGS,
    seeds: Sequence[int] = (0,),
    n_boot: int = 1000,
    progress: bool = True,
    restart: bool = False,
) -> dict[str, Any]:
    """Train and evaluate one run per (pooling, seed) under ``config.out_dir``; returns the
    comparison (also written to ``pooling_comparison.json`` and ``.md``)."""
    root = Path(config.out_dir)
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"runs": [], "summary": {}}
    for pooling in poolings:
        for seed in seeds:
            # the split must not depend on the seed, or the runs would see different data
            run_cfg = dataclasses.replace(
                config,
                pooling=pooling,
                seed=seed,
                split_seed=config.split_seed if config.split_seed is not None else config.seed,
                out_dir=str(root / f"{pooling}-seed{seed}"),
            )
            run_cfg.validate()
            trained = train(run_cfg, progress=progress, restart=restart)
            report = evaluate_run(run_cfg.out_dir, n_boot=n_boot, progress=progress)
            entry: dict[str, Any] = {
                "pooling": pooling,
                "seed": seed,
                "best_epoch": trained.best_epoch,
                "head_train_patches_per_s": trained.train_patches_per_s,
            }
            for split, split_report in report["splits"].items():
                if split == "train":
                    continue
                auc = split_report["all"]["auc"]
                entry[f"{split}_auc"] = auc["value"]
                entry[f"{split}_auc_ci95"] = auc["ci95"]
            results["runs"].append(entry)
            logger.info("pooling %s seed %d: %s", pooling, seed, entry)
    for pooling in poolings:
        runs = [r for r in results["runs"] if r["pooling"] == pooling]
        keys = [k for k in runs[0] if k.endswith("_auc")]
        results["summary"][pooling] = {
            k: {
                "mean": statistics.fmean(r[k] for r in runs),
                "sd": statistics.stdev(r[k] for r in runs) if len(runs) > 1 else 0.0,
                "first_seed_ci95": runs[0][f"{k}_ci95"],
            }
            for k in keys
        }
    (root / "pooling_comparison.json").write_text(json.dumps(results, indent=2), "utf-8")
    (root / "pooling_comparison.md").write_text(format_comparison(results, len(seeds)), "utf-8")
    return results


def format_comparison(results: dict[str, Any], n_seeds: int) -> str:
    summary = results["summary"]
    keys = sorted({k for v in summary.values() for k in v})
    header = "| pooling | " + " | ".join(keys) + " |"
    lines = [
        f"MIL pooling comparison ({n_seeds} seed(s); mean +- sd; 95 % CI of the first seed)",
        "",
        header,
        "|" + " --- |" * (len(keys) + 1),
    ]
    for pooling, metrics in summary.items():
        cells = []
        for k in keys:
            m = metrics.get(k)
            if m is None:
                cells.append("n/a")
                continue
            lo, hi = m["first_seed_ci95"]
            cells.append(f"{m['mean']:.3f} +- {m['sd']:.3f} ({lo:.3f}-{hi:.3f})")
        lines.append(f"| {pooling} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
