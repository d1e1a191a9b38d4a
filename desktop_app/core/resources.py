"""Locating bundled resources (models, demo media, icons) in a checkout, an install or a bundle."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path:
    """``resources/``: ``$SKIN_CAPTURE_RESOURCES``, a frozen bundle's, or the checkout's."""
    env = os.environ.get("SKIN_CAPTURE_RESOURCES")
    if env:
        return Path(env)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"
