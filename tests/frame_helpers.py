"""Small builders for the Qt tests: a folder holding one frame, replayed as a source."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_frame_folder(folder: Path, rgb: np.ndarray) -> Path:
    """``folder`` (created) with ``rgb`` (uint8 ``[H, W, 3]``) as its one PNG frame."""
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "frame.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder
