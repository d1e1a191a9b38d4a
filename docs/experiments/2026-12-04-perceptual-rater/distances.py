"""Full-reference perceptual distance of every rated photo from its own undegraded source.

Question (model issue 18, "labels from raters, not assumptions"): the simulated raters judge each
fault family by its own hand-made strength measure (SSIM loss for compression, share of blown
pixels for glare, ...), and where rated/ has no spread those curves extrapolate wrongly. Does a
single fault-agnostic measure, the distance between the photo and its source in the ImageNet
VGG16's own feature space (unweighted LPIPS: channel-normalised activations after each block,
squared difference, spatial mean, summed over the five blocks), rank rated2's photos the way
its raters did, and with a curve fitted on rated/ only?

Alignment: the rated photo is resized to its source's size (a chat-app shrink is part of what
it lost); a cut-off crop is compared with its window of the source; a shifted crop with the
window located by template matching. So the cut-off family's distance measures only what the
crop did to the pixels, not where the finding ends: framing is out of this measure's reach.

Writes ``distances.json``: image -> {set, fault, label, mean rating, distance, per-block}.
Run from the repository root with the training extra: about 5-8 min on the two cores.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from desktop_app.core.image_io import load_rgb
from model_export.data.raters import _locate_crop, is_good
from model_export.model.features import build_trunk
from model_export.model.network import BLOCK_END_RELU

SHARED = Path("../shared/data")
OUT = Path(__file__).with_name("distances.json")


def block_features(trunk: torch.nn.Module, rgb: np.ndarray) -> list[torch.Tensor]:
    """Channel-normalised activations ``[C, H, W]`` after each of the 5 blocks, RGB uint8 in."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    feats: list[torch.Tensor] = []
    with torch.no_grad():
        for idx, layer in enumerate(trunk.features):
            x = layer(x)
            if idx in BLOCK_END_RELU:
                f = x[0]
                feats.append(f / (f.pow(2).sum(0, keepdim=True).sqrt() + 1e-10))
                if idx == BLOCK_END_RELU[-1]:
                    break
    return feats


def aligned_reference(source: np.ndarray, rated: np.ndarray, fault: str, params: str) -> np.ndarray:
    """The part of ``source`` the rated photo shows, at the rated photo's size."""
    if fault == "cut_off":
        w, h, x, y = map(int, re.match(r"window=(\d+)x(\d+)@\((\d+),(\d+)\)", params).groups())
        source = source[y : y + h, x : x + w]
    elif fault == "shift_crop":
        x, y, w, h = _locate_crop(source, rated, float(params.split("=")[1]))
        source = source[y : y + h, x : x + w]
    if source.shape[:2] != rated.shape[:2]:
        source = cv2.resize(source, rated.shape[1::-1], interpolation=cv2.INTER_AREA)
    return source


def main() -> None:
    torch.set_num_threads(2)
    trunk = build_trunk("../shared/weights/vgg16_imagenet_features_fp16.npz")
    out: dict[str, dict[str, object]] = {}
    start = time.perf_counter()
    for set_name in ("rated", "rated2"):
        folder = SHARED / set_name
        with open(folder / "faults.csv", newline="") as fh:
            faults = {r["image"]: r for r in csv.DictReader(fh)}
        with open(folder / "ratings.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        for row in rows:
            fault = faults[row["image"]]
            rated = load_rgb(folder / row["image"])
            source = load_rgb(SHARED / row["source_path"])
            if fault["fault"] not in ("cut_off", "shift_crop") and source.shape != rated.shape:
                # Compare at the source's size: what a shrink lost counts.
                rated = cv2.resize(rated, source.shape[1::-1], interpolation=cv2.INTER_CUBIC)
            reference = aligned_reference(source, rated, fault["fault"], fault["params"])
            per_block = [
                float((a - b).pow(2).sum(0).mean())
                for a, b in zip(
                    block_features(trunk, rated), block_features(trunk, reference), strict=True
                )
            ]
            ratings = [int(row[f"rater_{i}"]) for i in range(1, 5)]
            out[f"{set_name}/{row['image']}"] = {
                "set": set_name,
                "fault": fault["fault"],
                "cohort": row["cohort"],
                "source_path": row["source_path"],
                "label": int(is_good(ratings)),
                "mean_rating": float(np.mean(ratings)),
                "distance": float(sum(per_block)),
                "per_block": per_block,
            }
            if len(out) % 40 == 0:
                print(f"{len(out)} photos, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    OUT.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
