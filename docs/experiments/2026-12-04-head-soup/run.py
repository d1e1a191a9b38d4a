"""Does averaging the weights of heads fine-tuned with different seeds (a "model soup": same
start, same data, L2-SP keeps them near one another) generalise better than one head?

Same protocol and code as the card's numbers (``model_export.evaluation.generalisation``), with
``RatedSet.tune`` replaced by the soup of ``K`` seeds; the shipped graph could carry the soup
unchanged (one head's weights). Run from the repository root:
``python docs/experiments/2026-12-04-head-soup/run.py runs/start-1.5.0/default-int8.onnx [--lofo]``
Writes ``result.json`` beside this file.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from desktop_app.core.inference import QualityEngine
from model_export.data.rated import load_rated_photos, operating_threshold
from model_export.evaluation.generalisation import (
    MIN_SENSITIVITY,
    RatedSet,
    _cached_bags,
    direction,
    leave_one_family_out,
    rates_at,
)
from model_export.training.rated_finetune import FineTuneConfig, fine_tune, head_from_onnx

SHARED = Path("../shared/data")
HERE = Path(__file__).parent


@dataclasses.dataclass
class SoupSet(RatedSet):
    seeds: int = 1

    def tune(self, index: Any) -> Any:
        heads = [
            fine_tune(
                self.start,
                [self.photos[i] for i in index],
                [self.bags[i] for i in index],
                self.reason_names,
                dataclasses.replace(self.config, seed=seed),
            )
            for seed in range(self.seeds)
        ]
        soup = copy.deepcopy(heads[0])
        states = [h.state_dict() for h in heads]
        soup.load_state_dict(
            {k: torch.stack([s[k].float() for s in states]).mean(0) for k in states[0]}
        )
        soup.eval()
        return soup


def main() -> None:
    model_path = Path(sys.argv[1])
    with_lofo = "--lofo" in sys.argv
    photos = load_rated_photos(SHARED)
    bags = _cached_bags(photos, model_path, Path("runs/cache"))
    start = head_from_onnx(onnx.load(str(model_path)))
    reasons = tuple(QualityEngine(model_path, providers="cpu").meta.reason_names)
    out_path = HERE / "result.json"
    results: dict[str, Any] = json.loads(out_path.read_text()) if out_path.exists() else {}
    for seeds in (1, 3):
        t0 = time.perf_counter()
        data = SoupSet(photos, bags, start, reasons, FineTuneConfig(), seeds=seeds)
        everything = np.arange(len(photos))
        oof, _ = data.out_of_fold(everything, folds=5)
        threshold = operating_threshold(data.labels, oof, MIN_SENSITIVITY)
        entry: dict[str, Any] = {
            "in_family_all": rates_at(data.labels, oof, threshold),
            "in_family_rated": rates_at(
                data.labels[data.in_set("rated")], oof[data.in_set("rated")], threshold
            ),
            "in_family_rated2": rates_at(
                data.labels[data.in_set("rated2")], oof[data.in_set("rated2")], threshold
            ),
            "rated2_tuned_on_rated": direction(data, "rated", "rated2", threshold),
            "rated_tuned_on_rated2": direction(data, "rated2", "rated", threshold),
        }
        if with_lofo:
            lofo = leave_one_family_out(data)
            entry["lofo"] = {
                "mean_auc": lofo["mean_auc"],
                "worst_auc": lofo["worst_auc"],
                "worst_family": lofo["worst_family"],
                "families": {f: r["auc"] for f, r in lofo["families"].items()},
            }
        entry["seconds"] = time.perf_counter() - t0
        key = f"soup of {seeds}" + (" with lofo" if with_lofo else "")
        results[key] = entry
        print(
            key,
            {k: round(v["auc"], 4) for k, v in entry.items() if isinstance(v, dict) and "auc" in v},
            entry.get("lofo", {}).get("mean_auc"),
            f"{entry['seconds']:.0f} s",
            flush=True,
        )
        out_path.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
