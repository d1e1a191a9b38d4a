"""Locating bundled resources (models, demo media, icons) in a checkout, an install or a bundle."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(verbose: bool) -> None:
    """The command-line tools' logging: to stderr, INFO (DEBUG when verbose)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, stream=sys.stderr
    )
    # Pillow's debug messages print EXIF values (names, dates of birth, record numbers): never
    # at any level of ours
    logging.getLogger("PIL").setLevel(logging.WARNING)


def resources_dir() -> Path:
    """``resources/``: ``$SKIN_CAPTURE_RESOURCES``, a frozen bundle's, or the checkout's."""
    env = os.environ.get("SKIN_CAPTURE_RESOURCES")
    if env:
        return Path(env)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"
