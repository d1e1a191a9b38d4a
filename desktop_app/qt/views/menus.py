"""The staff window's menu bar: File (Settings, Quit) and Help (About, About Qt)."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QMainWindow


def add_staff_menus(window: QMainWindow) -> tuple[QAction, QAction]:
    """Add the menus to ``window``; (Settings…, About…) for the window to connect. Quit closes
    the window (which may ask first)."""
    menu = window.menuBar().addMenu("&File")
    settings_action = QAction("&Settings…", window)
    settings_action.setShortcut(QKeySequence("Ctrl+,"))
    quit_action = QAction("&Quit", window)
    quit_action.setShortcut(QKeySequence.StandardKey.Quit)
    quit_action.triggered.connect(window.close)
    menu.addAction(settings_action)
    menu.addSeparator()
    menu.addAction(quit_action)
    help_menu = window.menuBar().addMenu("&Help")
    about_action = QAction("&About Skin Capture Assist…", window)
    about_qt_action = QAction("About &Qt…", window)
    about_qt_action.triggered.connect(QApplication.aboutQt)
    help_menu.addAction(about_action)
    help_menu.addAction(about_qt_action)
    return settings_action, about_action
