"""Locating bundled resources (models, demo media, icons) in a checkout, an install or a bundle."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

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


ICON_NAME = "skin-capture.png"


def app_icon_path() -> Path | None:
    """The window icon (``skin-capture.png``): next to a bundle's executable (packaging/build.sh
    installs it there), in ``resources/``, or in the checkout's ``packaging/``; None if absent."""
    candidates = [
        Path(sys.executable).resolve().parent / ICON_NAME,
        resources_dir() / ICON_NAME,
        Path(__file__).resolve().parents[2] / "packaging" / ICON_NAME,
    ]
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        candidates.insert(0, Path(bundle) / ICON_NAME)
    return next((path for path in candidates if path.is_file()), None)


def user_documents_dir() -> Path:
    """Where a save dialog should open: the user's Documents folder, else the home folder
    (never the process's working directory, which for a desktop launch is often ``/`` or the
    install folder)."""
    try:
        from platformdirs import user_documents_dir as _documents

        documents = Path(_documents())
        if documents.is_dir():
            return documents
    except Exception:  # platformdirs may fail on an unusual desktop setup
        logger.debug("no Documents folder from platformdirs", exc_info=True)
    return Path.home()
