"""Refuse to run on a PySide6 build that corrupts Python's reference counts.

PySide6 6.12.0 on Python 3.11 drops a reference to ``None`` on every call of a void Qt method
from Python (``setText``, ``update``, ``QTimer.start`` ...) and to ``True`` on every
``Signal.emit``; after a few thousand calls the interpreter aborts ("Fatal Python error:
none_dealloc"). 6.11.3 is fine, and Python 3.12+ is immune (immortal singletons). The app checks
once at start-up and exits with instructions instead of crashing a minute into a session.
"""

from __future__ import annotations

import sys

PROBE_CALLS = 64


def pyside_refcount_problem() -> str:
    """A message when this PySide6 loses references to None/True, else ""."""
    if sys.version_info >= (3, 12):
        return ""
    import PySide6
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        sig = Signal()

    probe = _Probe()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(PROBE_CALLS):
        probe.setObjectName("probe")
        probe.sig.emit()
    lost_none = none_before - sys.getrefcount(None)
    lost_true = true_before - sys.getrefcount(True)
    if lost_none < PROBE_CALLS // 2 and lost_true < PROBE_CALLS // 2:
        return ""
    import ctypes

    # Give back what the probe took, so the message can still be shown safely.
    for obj, lost in ((None, lost_none), (True, lost_true)):
        for _ in range(max(0, lost)):
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    return (
        f"PySide6 {PySide6.__version__} has a reference-counting defect on Python "
        f"{sys.version_info.major}.{sys.version_info.minor} that would crash the app within "
        "minutes. Install a working version: pip install 'PySide6-Essentials>=6.6,<6.12' "
        "(or use Python 3.12 or newer)."
    )


def ensure_display() -> None:
    """On a Linux box without a display, fall back to the offscreen platform (with a warning)
    instead of letting Qt abort."""
    import logging
    import os

    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        logging.getLogger(__name__).warning(
            "No display found (DISPLAY and WAYLAND_DISPLAY are unset): running with "
            "QT_QPA_PLATFORM=offscreen, so no window will be visible."
        )
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
