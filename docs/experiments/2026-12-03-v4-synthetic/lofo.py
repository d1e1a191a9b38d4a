"""Leave-one-fault-family-out over the rated sets with the synthetic v4 photos always in training
(they share no source photo with either rated set). Same start, descriptors and recipe as run.py.

``python docs/experiments/2026-12-03-v4-synthetic/lofo.py \
    runs/start-1.5.0/default-int8.onnx runs/v4new``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx

from desktop_app.core.inference import QualityEngine
from model_export.data.rated import load_rated_photos, load_rated_set
from model_export.evaluation.generalisation import RatedSet, _cached_bags, leave_one_family_out
from model_export.training.rated_finetune import FineTuneConfig, head_from_onnx

SHARED = Path("../shared/data")


class WithSynthetic(RatedSet):
    """The rated and synthetic photos; ``extra``: indices of the synthetic ones, which
    :func:`leave_one_family_out_rated_only` adds to every tuning."""

    extra: np.ndarray


def main() -> None:
    model_path, synth_dir = Path(sys.argv[1]), Path(sys.argv[2])
    rated = load_rated_photos(SHARED)
    synth = load_rated_set(synth_dir, "synthetic-v4", "dataset.csv")
    cache = Path("runs/cache")
    bags = _cached_bags(rated, model_path, cache) + _cached_bags(synth, model_path, cache)
    start = head_from_onnx(onnx.load(str(model_path)))
    reasons = tuple(QualityEngine(model_path, providers="cpu").meta.reason_names)
    results = {}
    for n_syn in (0, 263, 526):
        # the synthetic photos sit after the rated ones and carry fault names of their own
        # (prefixed), so leave_one_family_out never tests on them
        photos = rated + [
            p.__class__(**{**p.__dict__, "fault": "synthetic", "rated_set": "synthetic"})
            for p in synth[:n_syn]
        ]
        data = WithSynthetic(photos[: len(rated)], bags[: len(rated)], start, reasons,
                             FineTuneConfig())  # fmt: skip
        data.photos, data.bags = photos, bags[: len(photos)]
        data.extra = np.arange(len(rated), len(photos))
        lofo = leave_one_family_out_rated_only(data, len(rated))
        results[f"synthetic {n_syn}"] = lofo
        print(n_syn, round(lofo["mean_auc"], 3), lofo["worst_family"], round(lofo["worst_auc"], 3),
              {f: round(r["auc"], 3) for f, r in lofo["families"].items()}, flush=True)  # fmt: skip
    Path("docs/experiments/2026-12-03-v4-synthetic/lofo.json").write_text(
        json.dumps(results, indent=1, default=float)
    )


def leave_one_family_out_rated_only(data: WithSynthetic, n_rated: int) -> dict:  # type: ignore[type-arg]
    """leave_one_family_out over the rated photos only; the synthetic ones join every tuning."""
    view = RatedSet(data.photos[:n_rated], data.bags[:n_rated], data.start, data.reason_names,
                    data.config)  # fmt: skip
    full = data

    def tune(index):  # type: ignore[no-untyped-def]
        return RatedSet.tune(full, np.concatenate([np.asarray(index, int), full.extra]))

    view.tune = tune  # type: ignore[method-assign]
    return leave_one_family_out(view)


if __name__ == "__main__":
    main()
