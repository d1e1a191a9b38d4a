"""Does tuning the head also on synthetic photos of the v4 fault families (chat-app
recompression chains, sheen, cut-off findings; labels from the simulated raters fitted on
rated/ only; no source photo of either rated set) carry over to rated2?

Run from the repository root after
``skin-capture-model build-data --shared ../shared/data --out runs/v4new --n-train 540 --n-val 0
--recipes v4 --only-faults recompression_chain sheen cut_off``:
``python docs/experiments/2026-12-03-v4-synthetic/run.py \
    runs/start-1.5.0/default-int8.onnx runs/v4new``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx

from desktop_app.core.inference import QualityEngine
from model_export.data.rated import load_rated_photos, load_rated_set, operating_threshold
from model_export.evaluation.generalisation import (
    MIN_SENSITIVITY,
    RatedSet,
    _cached_bags,
    by_fault,
    rates_at,
)
from model_export.training.rated_finetune import FineTuneConfig, head_from_onnx

SHARED = Path("../shared/data")


def main() -> None:
    model_path, synth_dir = Path(sys.argv[1]), Path(sys.argv[2])
    cache = Path("runs/cache")
    rated = load_rated_photos(SHARED)
    synth = load_rated_set(synth_dir, "synthetic-v4", "dataset.csv")
    rated_bags = _cached_bags(rated, model_path, cache)
    synth_bags = _cached_bags(synth, model_path, cache)
    rated_sources = {p.source_path for p in rated}
    assert not rated_sources & {p.source_path for p in synth}, "synthetic build leaks rated sources"
    start = head_from_onnx(onnx.load(str(model_path)))
    reasons = tuple(QualityEngine(model_path, providers="cpu").meta.reason_names)
    photos, bags = rated + synth, rated_bags + synth_bags
    results: dict[str, object] = {"synthetic": len(synth)}
    synth_idx = np.arange(len(rated), len(photos))
    for share in (0.0, 0.5, 1.0):
        n_syn = round(share * len(synth))
        extra = synth_idx[:n_syn] if n_syn else np.zeros(0, int)
        for config in (FineTuneConfig(), FineTuneConfig(l2sp=1e-4)):
            data = RatedSet(photos, bags, start, reasons, config)
            train = data.in_set("rated")
            test = data.in_set("rated2")
            # threshold: inner 3-fold OOF over rated/ (the synthetic photos always in training)
            from sklearn.model_selection import StratifiedGroupKFold

            from model_export.data.rated import source_groups

            labels = data.labels
            oof = np.zeros(train.size)
            split = StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=0)
            groups = source_groups([photos[i] for i in train])
            for tr, te in split.split(np.zeros(train.size), labels[train], groups):
                head = data.tune(np.concatenate([train[tr], extra]))
                oof[te], _ = data.scores(head, train[te])
            threshold = operating_threshold(labels[train], oof, MIN_SENSITIVITY)
            head = data.tune(np.concatenate([train, extra]))
            scores, _ = data.scores(head, test)
            r = rates_at(labels[test], scores, threshold)
            test_photos = [photos[i] for i in test]
            per_fault = {
                f: v
                for f, v in by_fault(test_photos, labels[test], scores, threshold).items()
                if f in ("messenger", "sheen", "cut_off", "none")
            }
            key = f"synthetic {n_syn} l2sp {config.l2sp:g}"
            results[key] = {**r, "threshold": threshold, "by_fault": per_fault}
            print(
                key,
                json.dumps({k: round(v, 3) for k, v in r.items() if isinstance(v, float)}),
                per_fault,
                flush=True,
            )
    Path("docs/experiments/2026-12-03-v4-synthetic/result.json").write_text(
        json.dumps(results, indent=1, default=float)
    )


if __name__ == "__main__":
    main()
