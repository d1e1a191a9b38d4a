"""Heat-map geometry and colours for the per-region quality overlay. No Qt here.

The model's patches overlap (``core.tiling`` spreads them edge to edge), so drawing each patch box
would paint the overlaps twice. Each patch is instead given the cell of the image closest to its
centre: cell borders lie halfway between neighbouring patch centres.

The overlay never tints the skin (a lesion's colour is what a dermatologist looks at): the poor
regions (cells below the threshold) are drawn as outlines, :func:`poor_outline_segments`, the
boundary between poor cells and the rest; the inside of every cell keeps its own pixels.
"""

from __future__ import annotations

import numpy as np

from desktop_app.core.tiling import PatchLayout

# Colour stops (score relative to the threshold): poor -> at threshold -> good.
POOR_RGB = (220, 50, 40)
EDGE_RGB = (245, 190, 40)
GOOD_RGB = (40, 180, 80)


def _cell_edges(layout: PatchLayout) -> tuple[np.ndarray, np.ndarray]:
    """Cell borders: int32 x edges ``[cols + 1]`` and y edges ``[rows + 1]`` in original pixels."""
    h, w = layout.original_hw
    boxes = layout.boxes.reshape(layout.rows, layout.cols, 4).astype(np.float64)
    cx = (boxes[0, :, 0] + boxes[0, :, 2]) / 2.0
    cy = (boxes[:, 0, 1] + boxes[:, 0, 3]) / 2.0
    return (
        np.round(_edges(cx, w)).astype(np.int32),
        np.round(_edges(cy, h)).astype(np.int32),
    )


def _edges(centres: np.ndarray, length: int) -> np.ndarray:
    mids = (centres[:-1] + centres[1:]) / 2.0
    return np.concatenate([[0.0], mids, [float(length)]])


def patch_cells(layout: PatchLayout) -> np.ndarray:
    """Non-overlapping cells, int32 ``[rows * cols, 4]`` of (x0, y0, x1, y1) in original pixels,
    row-major like ``layout.boxes``; together they tile the whole image."""
    xe, ye = _cell_edges(layout)
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


def poor_outline_segments(
    layout: PatchLayout, patch_scores: np.ndarray, threshold: float
) -> np.ndarray:
    """The outline of the poor regions: int32 ``[K, 4]`` line segments (x0, y0, x1, y1) in
    original pixels along every cell border that separates a cell scoring below ``threshold``
    from a cell at or above it, or from the image's edge. Borders between two poor cells are not
    drawn, so a poor region is one closed outline; ``patch_scores`` is ``[rows, cols]`` or
    ``[rows * cols]`` (row-major). Empty ``[0, 4]`` when no cell is poor."""
    rows, cols = layout.rows, layout.cols
    poor = np.asarray(patch_scores, dtype=np.float64).reshape(rows, cols) < threshold
    xe, ye = _cell_edges(layout)
    padded = np.zeros((rows + 2, cols + 2), dtype=bool)
    padded[1:-1, 1:-1] = poor
    segments: list[tuple[int, int, int, int]] = []
    # horizontal borders: edge r lies between row r - 1 and row r
    horizontal = padded[:-1, 1:-1] != padded[1:, 1:-1]  # [rows + 1, cols]
    for r, c in zip(*np.nonzero(horizontal), strict=True):
        segments.append((int(xe[c]), int(ye[r]), int(xe[c + 1]), int(ye[r])))
    vertical = padded[1:-1, :-1] != padded[1:-1, 1:]  # [rows, cols + 1]
    for r, c in zip(*np.nonzero(vertical), strict=True):
        segments.append((int(xe[c]), int(ye[r]), int(xe[c]), int(ye[r + 1])))
    return np.asarray(segments, dtype=np.int32).reshape(-1, 4)
