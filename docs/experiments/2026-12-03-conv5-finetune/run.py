"""Does fine-tuning VGG16's last convolution (conv5_3) with the head, on the rated photos, see
what the frozen trunk misses? Measured out of family, on the CPU (no GPU was lent).

Start: model 1.5.0's fp32 file (head trained on synthetic photos only, labels from raters fitted
on rated/; never tuned on a rated photo), its frozen ImageNet trunk. The trunk up to relu5_2 is
run once per patch (onnxruntime, fp32) and cached: the block 1-4 descriptor statistics
``[N, 1920]`` and the relu5_2 maps ``[N, 512, 14, 14]`` (float16). Training then runs conv5_3 ->
ReLU -> mean/std (the block-5 half of the descriptor) -> the head, with the head's recipe of
model 1.6.0 (CORAL + 0.5 x reasons, good/poor weighted equally, Adam lr 3e-4, L2-SP 1e-3 towards
the starting weights, 30 epochs, batch 16, seed 0) and conv5_3 at lr ``CONV_LR`` (one value fixed
before looking: a tenth of the head's), also pulled towards ImageNet by the same L2-SP.

Compared with the head alone on the same cache (conv lr 0), same protocol:
  rated -> rated2: tuned on rated/ only, threshold from 3 inner grouped folds on rated/, tested
  on rated2 (sources apart); rated2 -> rated: tuned on rated2 only, AUC on rated/.

From the repository root (needs ../shared and the train extra; about an hour on 2 cores):
``python docs/experiments/2026-12-03-conv5-finetune/run.py /tmp/c5``; the first argument is a
scratch folder for the 1.5.0 file (``git show 312210e:resources/models/default-fp32.onnx``) and
the cache. Prints and writes ``result.json`` beside this script.
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

from desktop_app.core.image_io import load_rgb
from desktop_app.core.inference import QualityEngine
from desktop_app.core.tiling import patch_positions
from model_export.data.rated import load_rated_photos, operating_threshold, source_groups
from model_export.evaluation.generalisation import MIN_SENSITIVITY, by_fault, rates_at
from model_export.model.network import BLOCK_END_RELU, VGG16Trunk
from model_export.training.rated_finetune import _targets, head_from_onnx

HERE = Path(__file__).resolve().parent
SHARED = Path("../shared/data")
WEIGHTS = Path("../shared/weights/vgg16_imagenet_features_fp16.npz")
CONV_LR = 3e-5
HEAD_LR, L2SP, EPOCHS, BATCH, REASON_WEIGHT, SEED = 3e-4, 1e-3, 30, 16, 0.5, 0
RELU5_2, CONV5_3 = 27, 28
logger = logging.getLogger("conv5")


class TrunkToRelu52(nn.Module):
    """``[N, 3, P, P]`` -> (block 1-4 statistics ``[N, 1920]``, relu5_2 maps ``[N, 512, P/16,
    P/16]``), the same arithmetic as ``VGG16Trunk.forward``."""

    def __init__(self, trunk: VGG16Trunk) -> None:
        super().__init__()
        self.features = trunk.features[: RELU5_2 + 1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stats = []
        for idx, layer in enumerate(self.features):
            x = layer(x)
            if idx in BLOCK_END_RELU:
                flat = x.flatten(2)
                stats += [flat.mean(dim=2), (flat.var(dim=2, unbiased=False) + 1e-6).sqrt()]
        return torch.cat(stats, dim=1), x


def block5_stats(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(2)
    return torch.cat([flat.mean(dim=2), (flat.var(dim=2, unbiased=False) + 1e-6).sqrt()], dim=1)


def build_cache(scratch: Path, trunk: VGG16Trunk, engine: QualityEngine, photos: list) -> dict:
    path = scratch / "cache.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    import onnxruntime as ort

    part = scratch / "trunk_to_relu5_2.onnx"
    torch.onnx.export(
        TrunkToRelu52(trunk).eval(), (torch.rand(2, 3, 224, 224),), str(part),
        input_names=["patches"], output_names=["low", "maps"],
        dynamic_axes={"patches": {0: "N"}, "low": {0: "N"}, "maps": {0: "N"}},
        opset_version=17, dynamo=False,
    )  # fmt: skip
    session = ort.InferenceSession(str(part), providers=["CPUExecutionProvider"])
    low, maps, positions, counts = [], [], [], []
    t0 = time.perf_counter()
    for i, photo in enumerate(photos):
        patches, layout = engine.prepare(load_rgb(photo.path), "capture")
        for start in range(0, len(patches), 3):
            a, b = session.run(None, {"patches": patches[start : start + 3]})
            low.append(a)
            maps.append(b.astype(np.float16))
        positions.append(patch_positions(layout))
        counts.append(len(patches))
        if i % 50 == 0:
            logger.info("cache %d/%d, %.0f s", i + 1, len(photos), time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    cache = {
        "low": np.concatenate(low), "maps": np.concatenate(maps),
        "positions": np.concatenate(positions), "counts": np.asarray(counts),
        "seconds": np.asarray(seconds),
    }  # fmt: skip
    np.savez(path, **cache)
    return cache


class Data:
    def __init__(self, cache: dict, photos: list, reason_names: tuple[str, ...], k: int) -> None:
        self.photos = photos
        offsets = np.concatenate([[0], np.cumsum(cache["counts"])])
        self.slices = [slice(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:])]
        self.low = torch.from_numpy(cache["low"])
        self.maps = torch.from_numpy(cache["maps"])
        self.positions = torch.from_numpy(cache["positions"])
        self.labels = np.asarray([p.label for p in photos])
        self.reason_names = reason_names
        self.cumulative, self.reasons = _targets(photos, reason_names, k)

    def bags(self, conv: nn.Conv2d | None, index: list[int], frozen5: torch.Tensor | None):
        """Padded ``[B, Nmax, 2944]`` descriptors, positions, mask for the photos ``index``."""
        rows = [self.slices[i] for i in index]
        take = torch.cat([torch.arange(s.start, s.stop) for s in rows])
        if conv is None:
            assert frozen5 is not None
            high = frozen5[take]
        else:
            high = block5_stats(torch.relu(conv(self.maps[take].float())))
        desc = torch.cat([self.low[take], high], dim=1)
        n_max = max(s.stop - s.start for s in rows)
        out = desc.new_zeros((len(rows), n_max, desc.shape[1]))
        pos = desc.new_zeros((len(rows), n_max, 2))
        mask = torch.zeros((len(rows), n_max), dtype=torch.bool)
        at = 0
        for r, s in enumerate(rows):
            n = s.stop - s.start
            out[r, :n], pos[r, :n], mask[r, :n] = desc[at : at + n], self.positions[s], True
            at += n
        return out, pos, mask


def frozen_block5(data: Data, conv: nn.Conv2d) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [block5_stats(torch.relu(conv(data.maps[i : i + 64].float())))
             for i in range(0, len(data.maps), 64)]
        )  # fmt: skip


def train(data: Data, start_head: Any, conv0: nn.Conv2d, index: np.ndarray, conv_lr: float,
          frozen5: torch.Tensor) -> tuple[Any, nn.Conv2d | None, float]:  # fmt: skip
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    head = copy.deepcopy(start_head)
    conv = copy.deepcopy(conv0) if conv_lr > 0 else None
    params = [{"params": list(head.parameters()), "lr": HEAD_LR}]
    anchors = [(p, p.detach().clone()) for p in head.parameters()]
    if conv is not None:
        params.append({"params": list(conv.parameters()), "lr": conv_lr})
        anchors += [(p, p.detach().clone()) for p in conv.parameters()]
    optimiser = torch.optim.Adam(params)
    labels = data.labels[index]
    n_good, n_poor = max(1, int(labels.sum())), max(1, int((1 - labels).sum()))
    weight = np.where(labels == 1, len(labels) / (2 * n_good), len(labels) / (2 * n_poor))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    t0 = time.perf_counter()
    for _ in range(EPOCHS):
        head.train()
        order = rng.permutation(len(index))
        for at in range(0, len(order), BATCH):
            rows = order[at : at + BATCH]
            ids = [int(index[r]) for r in rows]
            desc, pos, mask = data.bags(conv, ids, frozen5)
            out = head.forward_features(desc, pos, mask)
            w = torch.from_numpy(weight[rows].astype(np.float32))
            target = torch.from_numpy(data.cumulative[ids])
            loss = (bce(out["cum_logits"], target, reduction="none").mean(dim=1) * w).mean()
            r = torch.from_numpy(data.reasons[ids])
            known = ~torch.isnan(r)
            if known.any():
                loss = loss + REASON_WEIGHT * bce(out["reason_logits"][known], r[known])
            loss = loss + L2SP * sum(((p - a) ** 2).sum() for p, a in anchors)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    head.eval()
    return head, conv, time.perf_counter() - t0


def predict(data: Data, head: Any, conv: nn.Conv2d | None, index: np.ndarray,
            frozen5: torch.Tensor) -> np.ndarray:  # fmt: skip
    scores = []
    with torch.no_grad():
        for at in range(0, len(index), BATCH):
            ids = [int(i) for i in index[at : at + BATCH]]
            desc, pos, mask = data.bags(conv, ids, frozen5)
            scores.append(head.forward_features(desc, pos, mask)["score"].numpy())
    return np.concatenate(scores)


def inner_threshold(data, start, conv0, index, conv_lr, frozen5) -> tuple[float, float]:
    from sklearn.model_selection import StratifiedGroupKFold

    oof = np.zeros(index.size)
    seconds = 0.0
    groups = source_groups([data.photos[i] for i in index])
    splitter = StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=0)
    for tr, te in splitter.split(np.zeros(index.size), data.labels[index], groups):
        head, conv, s = train(data, start, conv0, index[tr], conv_lr, frozen5)
        oof[te] = predict(data, head, conv, index[te], frozen5)
        seconds += s
    return operating_threshold(data.labels[index], oof, MIN_SENSITIVITY), seconds


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    scratch = Path(sys.argv[1])
    model_path = scratch / "v150-fp32.onnx"
    engine = QualityEngine(model_path, providers="cpu")
    photos = load_rated_photos(SHARED)
    trunk = VGG16Trunk()
    trunk.load_npz(WEIGHTS)
    trunk.eval()
    start = head_from_onnx(onnx.load(str(model_path)))
    cache = build_cache(scratch, trunk, engine, photos)
    data = Data(cache, photos, tuple(engine.meta.reason_names), start.k_levels)
    conv0 = trunk.features[CONV5_3]
    assert isinstance(conv0, nn.Conv2d)
    frozen5 = frozen_block5(data, conv0)
    untuned = predict(data, start, None, np.arange(len(photos)), frozen5)
    engine_scores = np.asarray([engine.score(load_rgb(p.path)).score for p in photos[:8]])
    result: dict[str, Any] = {
        "cache": {"photos": len(photos), "patches": int(cache["counts"].sum()),
                  "seconds": float(cache["seconds"])},
        "check_untuned_vs_file_max_abs_score_diff": float(np.abs(untuned[:8] - engine_scores).max()),
        "settings": {"conv_lr": CONV_LR, "head_lr": HEAD_LR, "l2sp": L2SP, "epochs": EPOCHS},
    }  # fmt: skip
    logger.info("%s", result)
    in_set = {s: np.asarray([i for i, p in enumerate(photos) if p.rated_set == s])
              for s in ("rated", "rated2")}  # fmt: skip
    for name, conv_lr in (("head only", 0.0), ("head + conv5_3", CONV_LR)):
        row: dict[str, Any] = {}
        train_idx = in_set["rated"]
        sources = {photos[i].source_path for i in train_idx}
        test_idx = np.asarray([i for i in in_set["rated2"] if photos[i].source_path not in sources])
        threshold, inner_s = inner_threshold(data, start, conv0, train_idx, conv_lr, frozen5)
        head, conv, seconds = train(data, start, conv0, train_idx, conv_lr, frozen5)
        scores = predict(data, head, conv, test_idx, frozen5)
        labels = data.labels[test_idx]
        row["rated_to_rated2"] = rates_at(labels, scores, threshold)
        row["rated_to_rated2"]["threshold"] = threshold
        row["rated_to_rated2"]["by_fault"] = by_fault(
            [photos[i] for i in test_idx], labels, scores, threshold
        )
        row["train_seconds_rated"] = seconds
        row["train_seconds_inner_folds"] = inner_s
        head, conv, seconds = train(data, start, conv0, in_set["rated2"], conv_lr, frozen5)
        test_idx = in_set["rated"]
        row["rated2_to_rated_auc"] = rates_at(
            data.labels[test_idx], predict(data, head, conv, test_idx, frozen5), 0.5
        )["auc"]
        row["train_seconds_rated2"] = seconds
        result[name] = row
        logger.info("%s: %s", name, json.dumps(row, default=float)[:600])
    (HERE / "result.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
