"""Small generated rated datasets for the model_export tests (no ../shared needed)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np


def make_image(
    good: bool, rng: np.random.Generator, height: int = 64, width: int = 96
) -> np.ndarray:
    """A skin-toned uint8 RGB image: *good* = sharp texture, well lit; *poor* = blurred and dark."""
    base = np.array([196, 150, 128], np.float32)
    texture = rng.normal(0.0, 40.0, size=(height, width, 1)).astype(np.float32)
    image = base[None, None, :] + texture
    if not good:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=3.0) * 0.35
    return np.clip(image, 0, 255).astype(np.uint8)


def write_dataset(
    folder: Path,
    n_good: int = 10,
    n_poor: int = 6,
    seed: int = 0,
    splits: bool = True,
    reasons: tuple[str, ...] = ("blur", "dark"),
) -> Path:
    """Write PNG images and ``ratings.csv`` (4 raters, 2 cohorts, reason columns) into
    ``folder``; returns the CSV path. With ``splits``, a fixed train/val/test split is written."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    labels = [1] * n_good + [0] * n_poor
    order = rng.permutation(len(labels))
    for rank, i in enumerate(order):
        good = bool(labels[i])
        name = f"images/img-{rank:03d}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(make_image(good, rng), cv2.COLOR_RGB2BGR))
        ratings = rng.integers(3, 6, 4) if good else rng.integers(1, 3, 4)
        if rank % 5 == 0:
            ratings = ratings.astype(object)
            ratings[3] = ""  # a blank rating
        split = ""
        if splits:
            split = "val" if rank % 3 == 1 else "test" if rank % 6 == 2 else "train"
        rows.append(
            {
                "image": name,
                **{f"rater_{r + 1}": ratings[r] for r in range(4)},
                "cohort": "patient" if rank % 2 else "pcp",
                "split": split,
                "source_path": f"original/{rank}.jpg",
                **{reason: int(not good) for reason in reasons},
            }
        )
    csv_path = folder / "ratings.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def write_config(folder: Path, csv_path: Path, **overrides: object) -> Path:
    """A tiny TOML config: patch 32, random VGG weights, a few epochs."""
    values: dict[str, object] = {
        "csv": [str(csv_path)],
        "out_dir": str(folder / "run"),
        "weights": "random",
        "patch_size": 32,
        "max_long_side": 96,
        "live_max_long_side": 64,
        "epochs": 4,
        "batch_size": 4,
        "lr": 3e-3,
        "embed_dim": 16,
        "hidden_dim": 32,
        "cache_dir": str(folder / "cache"),
        "model_name": "tiny",
        "threads": 1,
    }
    values.update(overrides)

    def toml_value(v: object) -> str:
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\") + '"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(toml_value(x) for x in v) + "]"
        return repr(v)

    lines = ["[train]"] + [f"{k} = {toml_value(v)}" for k, v in values.items()]
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
