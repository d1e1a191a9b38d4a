"""Does a spatial block-5 descriptor let the head see what channel mean/std per patch hides?

The issue names the cause: each 224-px patch is summarised by the channel mean and std of its
VGG16 maps, so a local hot-spot, blocking in one corner, or a finding cut by the frame's edge
are weak in the descriptor. This measures two spatial summaries of relu5_3 ``[512, 14, 14]``
per patch, fed to a small side branch beside the (fine-tuned) head:

* ``peak``: channel max minus channel mean over the 14 x 14 cells ``[512]`` (local hot-spots);
* ``edge``: mean over the cells along the sides of the patch that lie on the *photo's* edge,
  minus the mean over the other cells ``[512]`` (what sits at the frame's edge: a finding cut
  off). Which sides are photo edges comes from the patch centres (leftmost column = left edge).

Side branch (zero-initialised output, so training starts at the head alone): standardise the
extra features with the training photos' patch mean/std, ``Linear(F, 4)`` -> ReLU, pooled over
the bag by mean and max ``[8]`` -> ``Linear(8, 1)``: one shift added to all K-1 cumulative
logits. Trained with the head by the shipped recipe (``FineTuneConfig`` defaults: CORAL +
0.5 x reasons, L2-SP 1e-3, which for the side branch is weight decay towards 0).

Start: model 1.5.0's fp32 file, its cached relu5_2 maps of the 440 rated photos at the capture
grid (``docs/experiments/2026-12-03-conv5-finetune``'s cache: same tiling as the shipped files
for every rated photo). Protocol: the project's own ``generalisation`` functions (rated/ ->
rated2 out-of-family with inner-fold thresholds, the reverse direction, leave-one-family-out,
5-fold grouped in-family CV), run for the head alone and for each side branch.

From the repository root: ``python docs/experiments/2026-12-04-spatial-descriptors/run.py
/tmp/c5 [variant ...]`` (variants: head, peak, edge, both); the first argument is the scratch
folder the conv5 experiment's ``run.py`` filled (``v150-fp32.onnx`` and ``cache.npz``), so run
that first. Writes ``result-<variant>.json`` beside this script.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from desktop_app.core.inference import QualityEngine
from model_export.data.rated import load_rated_photos, operating_threshold
from model_export.evaluation.generalisation import (
    MIN_SENSITIVITY,
    RatedSet,
    by_fault,
    direction,
    leave_one_family_out,
    rates_at,
)
from model_export.model.network import VGG16Trunk
from model_export.training.rated_finetune import FineTuneConfig, fine_tune, head_from_onnx

HERE = Path(__file__).resolve().parent
SHARED = Path("../shared/data")
WEIGHTS = Path("../shared/weights/vgg16_imagenet_features_fp16.npz")
CONV5_3 = 28
BASE_DIM = 2944
EDGE_CELLS = 2  # cells of the 14 x 14 map counted as "along the edge" (32 px of a 224-px patch)
logger = logging.getLogger("spatial")


def relu5_3_features(cache: dict[str, np.ndarray], conv: nn.Conv2d) -> dict[str, np.ndarray]:
    """Block-5 mean/std ``[N, 1024]`` and the spatial summaries ``peak``/``edge`` ``[N, 512]``
    of every cached patch."""
    offsets = np.concatenate([[0], np.cumsum(cache["counts"])])
    edge_mask = np.zeros((len(cache["maps"]), 14, 14), bool)
    for a, b in zip(offsets[:-1], offsets[1:]):
        pos = cache["positions"][a:b]
        for i in range(a, b):
            x, y = cache["positions"][i]
            m = edge_mask[i]
            if x <= pos[:, 0].min() + 1e-4:
                m[:, :EDGE_CELLS] = True
            if x >= pos[:, 0].max() - 1e-4:
                m[:, -EDGE_CELLS:] = True
            if y <= pos[:, 1].min() + 1e-4:
                m[:EDGE_CELLS, :] = True
            if y >= pos[:, 1].max() - 1e-4:
                m[-EDGE_CELLS:, :] = True
    stats, peak, edge = [], [], []
    with torch.no_grad():
        for at in range(0, len(cache["maps"]), 64):
            maps = torch.relu(conv(torch.from_numpy(cache["maps"][at : at + 64]).float()))
            flat = maps.flatten(2)  # [n, 512, 196]
            mean = flat.mean(dim=2)
            stats.append(torch.cat([mean, (flat.var(dim=2, unbiased=False) + 1e-6).sqrt()], 1))
            peak.append(flat.amax(dim=2) - mean)
            em = torch.from_numpy(edge_mask[at : at + 64]).flatten(1).float()[:, None, :]
            inside = (flat * em).sum(2) / em.sum(2).clamp(min=1)
            outside = (flat * (1 - em)).sum(2) / (1 - em).sum(2).clamp(min=1)
            edge.append(inside - outside)
    return {
        "block5": torch.cat(stats).numpy(),
        "peak": torch.cat(peak).numpy(),
        "edge": torch.cat(edge).numpy(),
    }


class SideBranchHead(nn.Module):
    """The MIL head on ``desc[..., :2944]`` plus a side branch on ``desc[..., 2944:]``
    (``[B, N, F]``) that shifts the cumulative logits ``[B, K-1]`` by one learned amount."""

    def __init__(self, head: Any, extra_dim: int, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.head = head
        self.k_levels = head.k_levels
        self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
        self.register_buffer("std", torch.from_numpy(std.astype(np.float32)))
        self.project = nn.Linear(extra_dim, 4)
        self.out = nn.Linear(8, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward_features(
        self, desc: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        out = dict(self.head.forward_features(desc[..., :BASE_DIM], positions, mask))
        extra = (desc[..., BASE_DIM:] - self.mean) / self.std
        hidden = torch.relu(self.project(extra))  # [B, N, 4]
        if mask is None:
            mask = torch.ones(hidden.shape[:2], dtype=torch.bool)
        m = mask[..., None].float()
        mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        peak = hidden.masked_fill(~mask[..., None], -1e4).amax(1)
        shift = self.out(torch.cat([mean, peak], dim=1))  # [B, 1]
        out["cum_logits"] = out["cum_logits"] + shift
        out["score"] = self.head.acceptable_probability(out["cum_logits"])
        return out


class SpatialRatedSet(RatedSet):
    """A RatedSet whose ``tune`` wraps the head with a freshly standardised side branch."""

    extra_dim: int = 0

    def tune(self, index: Any) -> Any:
        if self.extra_dim == 0:
            return super().tune(index)
        extra = np.concatenate([self.bags[i][0][:, BASE_DIM:] for i in index])
        wrapped = SideBranchHead(
            self.start, self.extra_dim, extra.mean(0), extra.std(0) + 1e-3
        )
        return fine_tune(
            wrapped,
            [self.photos[i] for i in index],
            [self.bags[i] for i in index],
            self.reason_names,
            self.config,
        )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    scratch = Path(sys.argv[1])
    variants = sys.argv[2:] or ["head", "peak", "edge", "both"]
    model_path = scratch / "v150-fp32.onnx"
    photos = load_rated_photos(SHARED)
    with np.load(scratch / "cache.npz") as z:
        cache = {k: z[k] for k in z.files}
    assert int(cache["counts"].sum()) == len(cache["maps"]) and len(cache["counts"]) == len(photos)
    trunk = VGG16Trunk()
    trunk.load_npz(WEIGHTS)
    conv = trunk.features[CONV5_3]
    assert isinstance(conv, nn.Conv2d)
    t0 = time.perf_counter()
    feats = relu5_3_features(cache, conv)
    logger.info("relu5_3 features in %.0f s", time.perf_counter() - t0)
    start = head_from_onnx(onnx.load(str(model_path)))
    reason_names = tuple(QualityEngine(model_path, providers="cpu").meta.reason_names)
    offsets = np.concatenate([[0], np.cumsum(cache["counts"])])
    base = np.concatenate([cache["low"], feats["block5"]], axis=1)
    for variant in variants:
        parts = {"head": [], "peak": ["peak"], "edge": ["edge"], "both": ["peak", "edge"]}[variant]
        desc = np.concatenate([base] + [feats[p] for p in parts], axis=1).astype(np.float32)
        bags = [
            (desc[a:b], cache["positions"][a:b].astype(np.float32))
            for a, b in zip(offsets[:-1], offsets[1:])
        ]
        data = SpatialRatedSet(photos, bags, copy.deepcopy(start), reason_names, FineTuneConfig())
        data.extra_dim = desc.shape[1] - BASE_DIM
        t0 = time.perf_counter()
        result: dict[str, Any] = {"variant": variant, "extra_dim": data.extra_dim}
        result["rated_to_rated2"] = direction(data, "rated", "rated2", 0.5)
        result["rated2_to_rated"] = direction(data, "rated2", "rated", 0.5)
        everything = np.arange(len(photos))
        oof, _ = data.out_of_fold(everything, folds=5)
        threshold = operating_threshold(data.labels, oof, MIN_SENSITIVITY)
        result["in_family"] = {
            "all": rates_at(data.labels, oof, threshold),
            **{
                s: rates_at(data.labels[data.in_set(s)], oof[data.in_set(s)], threshold)
                for s in ("rated", "rated2")
            },
            "by_fault": by_fault(photos, data.labels, oof, threshold),
        }
        logger.info(
            "%s: rated->rated2 %.3f, reverse %.3f, in-family %.3f",
            variant,
            result["rated_to_rated2"]["auc"],
            result["rated2_to_rated"]["auc"],
            result["in_family"]["all"]["auc"],
        )
        result["leave_one_family_out"] = leave_one_family_out(data)
        result["seconds"] = time.perf_counter() - t0
        lofo = result["leave_one_family_out"]
        logger.info(
            "%s: LOFO mean %.3f worst %.3f (%s), %.0f s",
            variant, lofo["mean_auc"], lofo["worst_auc"], lofo["worst_family"], result["seconds"],
        )  # fmt: skip
        (HERE / f"result-{variant}.json").write_text(
            json.dumps(result, indent=1, default=float) + "\n"
        )


if __name__ == "__main__":
    main()
