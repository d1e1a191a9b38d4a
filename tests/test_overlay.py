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
