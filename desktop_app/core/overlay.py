"""Heat-map geometry and colours for the per-region quality overlay. No Qt here.

The model's patches overlap (``core.tiling`` spreads them edge to edge), so drawing each patch box
would paint the overlaps twice. Each patch is instead given the cell of the image closest to its
centre: cell borders lie halfway between neighbouring patch centres.
"""

from __future__ import annotations

import numpy as np

from desktop_app.core.tiling import PatchLayout

# Colour stops (score relative to the threshold): poor -> at threshold -> good.
POOR_RGB = (220, 50, 40)
EDGE_RGB = (245, 190, 40)
GOOD_RGB = (40, 180, 80)


def _edges(centres: np.ndarray, length: int) -> np.ndarray:
    mids = (centres[:-1] + centres[1:]) / 2.0
    return np.concatenate([[0.0], mids, [float(length)]])


def patch_cells(layout: PatchLayout) -> np.ndarray:
    """Non-overlapping cells, int32 ``[rows * cols, 4]`` of (x0, y0, x1, y1) in original pixels,
    row-major like ``layout.boxes``; together they tile the whole image."""
    h, w = layout.original_hw
    boxes = layout.boxes.reshape(layout.rows, layout.cols, 4).astype(np.float64)
    cx = (boxes[0, :, 0] + boxes[0, :, 2]) / 2.0
    cy = (boxes[:, 0, 1] + boxes[:, 0, 3]) / 2.0
    xe = np.round(_edges(cx, w)).astype(np.int32)
    ye = np.round(_edges(cy, h)).astype(np.int32)
    cells = [
        (xe[c], ye[r], xe[c + 1], ye[r + 1]) for r in range(layout.rows) for c in range(layout.cols)
    ]
    return np.asarray(cells, dtype=np.int32).reshape(-1, 4)


def heat_colours(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Per-patch colours, uint8 ``[N, 3]`` RGB: red (0) -> amber (threshold) -> green (1)."""
    s = np.clip(np.asarray(scores, dtype=np.float64).reshape(-1), 0.0, 1.0)
    t = min(max(threshold, 1e-6), 1.0 - 1e-6)
    poor, edge, good = (np.asarray(c, np.float64) for c in (POOR_RGB, EDGE_RGB, GOOD_RGB))
    below = (s / t)[:, None]
    above = ((s - t) / (1.0 - t))[:, None]
    colours = np.where((s < t)[:, None], poor + (edge - poor) * below, edge + (good - edge) * above)
    return np.clip(np.round(colours), 0, 255).astype(np.uint8)
