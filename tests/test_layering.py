"""desktop_app/core imports no Qt (the composition root, desktop_app/cli.py, picks Qt parts)."""

from __future__ import annotations

from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "desktop_app" / "core"


def test_core_modules_import_no_qt() -> None:
    offenders = [
        path.name
        for path in sorted(CORE.glob("*.py"))
        if any(
            word in line
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip().startswith(("import ", "from "))
            for word in ("PySide6", "desktop_app.qt", "torch")
        )
    ]
    assert offenders == []
