"""Resize and tile an image into the patch bag described by the model contract.

This is the single implementation used both by training (``model_export`` imports it) and by the
app, so the model never sees patches cut differently from how it was trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from desktop_app.core.model_meta import GridSpec, InputSpec


@dataclass(frozen=True)
class PatchLayout:
    """Where each patch of a bag lies.

    ``boxes`` is int ``[N, 4]`` of (x0, y0, x1, y1) in *original* image pixels (float-rounded),
    row-major over a ``rows x cols`` grid; ``scale`` maps original to resized pixels; ``ys``/``xs``
    are the patch origins in the resized image.
    """

    rows: int
    cols: int
    patch_size: int
    resized_hw: tuple[int, int]
    original_hw: tuple[int, int]
    scale: float
    boxes: np.ndarray
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def n(self) -> int:
        return self.rows * self.cols


def _positions(length: int, patch: int, count: int) -> list[int]:
    if count == 1:
        return [0]
    return [round(i * (length - patch) / (count - 1)) for i in range(count)]


def plan_layout(height: int, width: int, patch_size: int, grid: GridSpec) -> PatchLayout:
    """Compute the resize and the overlapping patch grid for an ``height x width`` image."""
    if height < 1 or width < 1:
        raise ValueError(f"image has no pixels ({width}x{height})")
    scale = min(1.0, grid.max_long_side / max(height, width))
    if grid.max_short_side is not None:
        scale = min(scale, grid.max_short_side / min(height, width))
    if min(height, width) * scale < patch_size:
        scale = patch_size / min(height, width)
    rh = max(patch_size, round(height * scale))
    rw = max(patch_size, round(width * scale))
    # A sliver (say 1 x 40,000 px) brought up to one patch on its short side would be enlarged
    # to gigabytes along its long side although at most max_patches patches are cut from it:
    # the long side is capped at what the patch budget can cover (squeezing only such slivers).
    longest = patch_size * grid.max_patches
    rh, rw = min(rh, longest), min(rw, longest)
    rows, cols = math.ceil(rh / patch_size), math.ceil(rw / patch_size)
    # An extremely elongated image cannot be covered within the patch budget even at the
    # smallest scale: then patches are spread evenly with gaps between them.
    while rows * cols > grid.max_patches:
        if cols >= rows:
            cols -= 1
        else:
            rows -= 1
    ys = _positions(rh, patch_size, rows)
    xs = _positions(rw, patch_size, cols)
    sy, sx = height / rh, width / rw
    boxes = np.array(
        [
            [
                round(x * sx),
                round(y * sy),
                round((x + patch_size) * sx),
                round((y + patch_size) * sy),
            ]
            for y in ys
            for x in xs
        ],
        dtype=np.int32,
    )
    return PatchLayout(
        rows, cols, patch_size, (rh, rw), (height, width), scale, boxes, tuple(ys), tuple(xs)
    )


def resize_for_layout(image: np.ndarray, layout: PatchLayout) -> np.ndarray:
    """Resize ``image`` (uint8 ``[H, W, 3]``) to ``layout.resized_hw`` (area down, linear up)."""
    rh, rw = layout.resized_hw
    if (rh, rw) == image.shape[:2]:
        return image
    shrinking = rh * rw < image.shape[0] * image.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (rw, rh), interpolation=interp)


def cut_patches(resized: np.ndarray, layout: PatchLayout) -> np.ndarray:
    """Cut the resized uint8 ``[H', W', 3]`` image into uint8 ``[N, P, P, 3]`` patches."""
    p = layout.patch_size
    return np.stack([resized[y : y + p, x : x + p] for y in layout.ys for x in layout.xs])


def normalise_patches(patches_rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 RGB ``[N, P, P, 3]`` -> float32 ``[N, 3, P, P]`` per the model's input spec."""
    x = patches_rgb.astype(np.float32) * (1.0 / 255.0)
    lo, hi = spec.value_range
    if (lo, hi) != (0.0, 1.0):
        x = x * (hi - lo) + lo
    if spec.colour_order == "BGR":
        x = x[..., ::-1]
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    if mean.any() or (std != 1.0).any():
        x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def image_to_patches(
    image_rgb: np.ndarray, patch_size: int, grid: GridSpec
) -> tuple[np.ndarray, PatchLayout]:
    """uint8 RGB ``[H, W, 3]`` -> (uint8 ``[N, P, P, 3]`` patches, layout)."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 [H, W, 3], got {image_rgb.dtype} {image_rgb.shape}")
    layout = plan_layout(image_rgb.shape[0], image_rgb.shape[1], patch_size, grid)
    return cut_patches(resize_for_layout(image_rgb, layout), layout), layout


def patch_positions(layout: PatchLayout) -> np.ndarray:
    """Patch centres (x, y) in the original image scaled to [-1, 1]: float32 ``[N, 2]``."""
    h, w = layout.original_hw
    boxes = layout.boxes.astype(np.float32)
    cx = (boxes[:, 0] + boxes[:, 2]) * 0.5 / w * 2.0 - 1.0
    cy = (boxes[:, 1] + boxes[:, 3]) * 0.5 / h * 2.0 - 1.0
    return np.ascontiguousarray(np.stack([cx, cy], axis=1), dtype=np.float32)


def patch_values_to_map(values: np.ndarray, layout: PatchLayout) -> np.ndarray:
    """float ``[N]`` per-patch values -> float32 ``[rows, cols]`` grid map (row-major)."""
    return np.asarray(values, dtype=np.float32).reshape(layout.rows, layout.cols)
