"""``run_app``: the Qt application, the window (staff or kiosk), signals and the exit status.

Exit status: 0 after a normal close, 2 when this PySide6 build is unusable, 3 when another copy
of the app already uses the data home.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from desktop_app import __version__
from desktop_app.app.services import AppServices, build_services, lock_data_home
from desktop_app.qt.compat import ensure_display
from desktop_app.qt.views.widgets import app_icon
from desktop_app.qt.windows.kiosk import KioskWindow
from desktop_app.qt.windows.main_window import MainWindow

logger = logging.getLogger(__name__)

EXIT_PYSIDE_PROBLEM = 2
EXIT_ALREADY_RUNNING = 3

AppWindow = MainWindow | KioskWindow


def _close_unlocked(app: QApplication, window: AppWindow) -> None:
    """Close ``window`` without asking (the kiosk's PIN does not apply) and quit."""
    window.unlocked = True
    window.close()
    app.quit()


def _close_on_signals(app: QApplication, window: AppWindow) -> None:
    """Ctrl+C / SIGTERM close the window normally (workers stopped, store closed); the kiosk's
    PIN does not apply to the operating system asking the app to stop."""

    def _on_signal(signum: int, frame: object) -> None:
        logger.info("signal %d: closing", signum)
        _close_unlocked(app, window)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    # Python runs signal handlers only between bytecodes: wake the interpreter regularly.
    timer = QTimer(window)
    timer.timeout.connect(lambda: None)
    timer.start(250)


def _log_first_frame(window: AppWindow) -> None:
    """Log once when the first preview frame arrives (start-up time for support and smoke tests)."""
    started = time.perf_counter()
    session = window.session

    def _on_first_preview(_frame: object) -> None:
        logger.info("first frame after %.2f s", time.perf_counter() - started)
        session.sig_preview.disconnect(_on_first_preview)

    session.sig_preview.connect(_on_first_preview)


def _exit_after_env_delay(app: QApplication, window: AppWindow) -> None:
    """``SKIN_CAPTURE_EXIT_AFTER_MS``: close normally after that long (smoke tests of bundles)."""
    raw = os.environ.get("SKIN_CAPTURE_EXIT_AFTER_MS", "")
    if not raw.strip():
        return
    try:
        delay_ms = max(0, int(raw))
    except ValueError:
        logger.warning("ignoring SKIN_CAPTURE_EXIT_AFTER_MS=%r (not a number)", raw)
        return

    def _on_timeout() -> None:
        logger.info("SKIN_CAPTURE_EXIT_AFTER_MS reached: closing")
        _close_unlocked(app, window)

    QTimer.singleShot(delay_ms, window, _on_timeout)


def make_window(services: AppServices, kiosk: bool) -> AppWindow:
    """The kiosk or the staff window, both built on the same services."""
    return KioskWindow(services) if kiosk else MainWindow(services)


def _qt_application() -> QApplication:
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("Skin Capture Assist")
    app.setApplicationVersion(__version__)
    app.setWindowIcon(app_icon())
    return app


def run_app(args: argparse.Namespace) -> int:
    """``skin-capture [--kiosk] [--model PATH] [--source SPEC]``; returns the exit status."""
    from desktop_app.qt.compat import pyside_refcount_problem

    problem = pyside_refcount_problem()
    if problem:
        logger.error("%s", problem)
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_PYSIDE_PROBLEM
    ensure_display()
    app = _qt_application()
    # before any camera is opened or photo read: a second copy refuses, clearly
    lock_problem = lock_data_home()
    if lock_problem:
        logger.error("%s", lock_problem)
        print(f"error: {lock_problem}", file=sys.stderr)
        if not os.environ.get("SKIN_CAPTURE_NO_DIALOGS"):
            QMessageBox.critical(None, "Skin Capture Assist is already running", lock_problem)
        return EXIT_ALREADY_RUNNING
    kiosk = bool(getattr(args, "kiosk", False))
    services = build_services(
        kiosk=kiosk,
        model=getattr(args, "model", None),
        source_spec=getattr(args, "source", None),
    )
    window = make_window(services, kiosk)
    if isinstance(window, KioskWindow):
        window.show_kiosk()
    else:
        window.show()
    _close_on_signals(app, window)
    _log_first_frame(window)
    _exit_after_env_delay(app, window)
    if services.store_error:
        QMessageBox.critical(
            window,
            "Photos cannot be saved",
            f"{services.store_error}\n\nThe live view works, but captures cannot be kept.",
        )
    return int(app.exec())
