"""Heat overlay cells and colours."""

from __future__ import annotations

import numpy as np
import pytest

from desktop_app.core.model_meta import GridSpec
from desktop_app.core.overlay import (
    EDGE_RGB,
    GOOD_RGB,
    POOR_RGB,
    heat_colours,
    patch_cells,
    poor_outline_segments,
)
from desktop_app.core.tiling import plan_layout


@pytest.mark.parametrize("hw", [(720, 1280), (480, 640), (1000, 333), (32, 32)])
def test_cells_tile_the_image_exactly_once(hw: tuple[int, int]) -> None:
    layout = plan_layout(*hw, 32, GridSpec(max_long_side=128))
    cells = patch_cells(layout)
    assert cells.shape == (layout.n, 4)
    cover = np.zeros(hw, np.int32)
    for x0, y0, x1, y1 in cells:
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()
    # each cell contains its own patch centre
    for (x0, y0, x1, y1), (bx0, by0, bx1, by1) in zip(cells, layout.boxes, strict=True):
        assert x0 <= (bx0 + bx1) / 2 <= x1 and y0 <= (by0 + by1) / 2 <= y1


def test_colours_run_from_poor_through_threshold_to_good() -> None:
    colours = heat_colours(np.array([0.0, 0.6, 1.0, 0.3]), threshold=0.6)
    assert colours[0].tolist() == list(POOR_RGB)
    assert colours[1].tolist() == list(EDGE_RGB)
    assert colours[2].tolist() == list(GOOD_RGB)
    assert colours[3, 0] > colours[3, 1]  # halfway to the threshold is still reddish


def _layout_3x3() -> object:
    layout = plan_layout(96, 96, 32, GridSpec(max_long_side=96))
    assert (layout.rows, layout.cols) == (3, 3)
    return layout


def test_one_poor_cell_is_outlined_by_four_segments_on_its_borders() -> None:
    layout = _layout_3x3()
    scores = np.ones((3, 3))
    scores[1, 1] = 0.1
    segments = poor_outline_segments(layout, scores, threshold=0.5)  # type: ignore[arg-type]
    x0, y0, x1, y1 = patch_cells(layout)[4]  # type: ignore[arg-type]
    assert sorted(map(tuple, segments.tolist())) == sorted(
        [(x0, y0, x1, y0), (x0, y1, x1, y1), (x0, y0, x0, y1), (x1, y0, x1, y1)]
    )


def test_neighbouring_poor_cells_share_one_outline_and_none_crosses_a_poor_region() -> None:
    layout = _layout_3x3()
    scores = np.ones((3, 3))
    scores[0, 0] = scores[0, 1] = 0.2  # two poor cells side by side in the corner
    segments = poor_outline_segments(layout, scores, threshold=0.5)  # type: ignore[arg-type]
    assert len(segments) == 6  # a 2x1 rectangle drawn in unit edges, the shared edge left out
    cells = patch_cells(layout)  # type: ignore[arg-type]
    shared_x = cells[0][2]
    assert not any(x0 == x1 == shared_x and y1 <= cells[0][3] for x0, y0, x1, y1 in segments)
    assert len(poor_outline_segments(layout, np.ones(9), 0.5)) == 0  # type: ignore[arg-type]
