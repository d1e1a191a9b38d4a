"""The crash test: 50 SIGKILLs of the capture-and-submit process, nothing lost or duplicated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_fifty_random_kills_lose_nothing_and_deliver_once(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "crash_test.py"),
            "--iterations",
            "50",
            "--max-delay",
            "1.0",
            "--workdir",
            str(tmp_path / "work"),
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert report.exists(), proc.stderr[-3000:]
    totals = json.loads(report.read_text())
    assert totals["iterations"] == 50 and totals["kills"] == 50
    assert totals["captures_lost"] == 0
    assert totals["deleted_but_present"] == 0
    assert totals["duplicates"] == 0
    assert totals["inconsistencies"] == 0, totals["problems"][:5]
    # the run did real work between the kills
    assert totals["saved_acknowledged"] >= 50
    assert totals["delivered"] >= 20
    assert proc.returncode == 0
