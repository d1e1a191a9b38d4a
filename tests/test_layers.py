"""Layering of desktop_app: core and the services have no Qt; the windows do not import each
other; only ``desktop_app.app.run`` knows both windows."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(imports: str) -> set[str]:
    code = f"import sys; {imports}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


def test_services_and_flows_need_no_qt() -> None:
    loaded = _modules_after(
        "import desktop_app.app.services, desktop_app.core.capture_flow, "
        "desktop_app.core.kiosk_flow, desktop_app.core.settings"
    )
    assert not {m for m in loaded if m.startswith("PySide6")}


def test_the_kiosk_does_not_import_the_staff_window() -> None:
    loaded = _modules_after("import desktop_app.qt.windows.kiosk")
    assert "desktop_app.qt.windows.main_window" not in loaded
    assert "desktop_app.app.run" not in loaded


def test_the_staff_window_does_not_import_the_kiosk() -> None:
    loaded = _modules_after("import desktop_app.qt.windows.main_window")
    assert "desktop_app.qt.windows.kiosk" not in loaded
    assert "desktop_app.app.run" not in loaded
