"""rated2 out-of-family (head tuned and threshold chosen on rated/ only), split by whether 1.5.0's
training builds used the photo's source photo. Run from the repository root with ../shared:
    python docs/experiments/2026-12-03-rated2-source-overlap/run.py
The builds are replayed from model_export/configs/default.toml's build-data commands (seeds 0-3):
only their plans are drawn, no image is made."""

import json
from pathlib import Path

import numpy as np
import onnx

from desktop_app.core.inference import QualityEngine
from model_export.data.build_data import _recipe_weights
from model_export.data.build_plan import load_manifest, plan, rated_sources, split_sources
from model_export.data.rated import load_rated_photos
from model_export.evaluation.generalisation import RatedSet, _auc, _cached_bags, rates_at
from model_export.training.rated_finetune import FineTuneConfig, head_from_onnx

BUILDS = [
    (0, 2400, 600, "v1", None),
    (1, 3600, 0, "v1", None),
    (2, 1300, 0, "v2", ["pixelation", "tone_dark", "levels_bright"]),
    (3, 1100, 0, "v3", ["cast_shadow", "lens_haze"]),
]


def training_sources(shared):
    used = set()
    for seed, nt, nv, rec, only in BUILDS:
        rng = np.random.default_rng(seed)
        pools = split_sources(load_manifest(shared), rated_sources(shared), rng, 0.2)
        items = plan(pools, {"train": nt, "val": nv}, rng, _recipe_weights(rec, only), bool(only))
        used |= {i.source_path for i in items if i.split == "train"}
    return used


shared = Path("../shared/data")
model = Path(
    "runs/start-1.5.0/default-int8.onnx"
)  # git show fe3c8f5:resources/models/default-int8.onnx
photos = load_rated_photos(shared)
bags = _cached_bags(photos, model, Path("runs/rated2-overlap-cache"))
start = head_from_onnx(onnx.load(str(model)))
names = tuple(QualityEngine(model, providers="cpu").meta.reason_names)
data = RatedSet(photos, bags, start, names, FineTuneConfig())
train = data.where(lambda p: p.rated_set == "rated")
test = data.where(lambda p: p.rated_set == "rated2")
head, thr = data.tune_with_threshold(train)
scores, _ = data.scores(head, test)
start_scores, _ = data.scores(start, test)
labels = data.labels[test]
used = training_sources(shared)
seen = np.array([data.photos[i].source_path in used for i in test])
out = {}
for name, m in (
    ("all", np.ones_like(seen)),
    ("source_in_training", seen),
    ("source_never_used", ~seen),
):
    out[name] = {
        "tuned_on_rated": rates_at(labels[m], scores[m], thr),
        "at_shipped_0.7568": rates_at(labels[m], scores[m], 0.7568),
        "starting_model_auc": _auc(labels[m], start_scores[m]),
    }
out["threshold_tuned_on_rated"] = thr
print(json.dumps(out, indent=1, default=float))
Path(__file__).with_name("result.json").write_text(json.dumps(out, indent=1, default=float))
