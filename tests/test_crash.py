"""The crash test: 50 SIGKILLs of the capture-and-submit process, nothing lost or duplicated."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_helpers import run_crash_script


@pytest.mark.slow
def test_fifty_random_kills_lose_nothing_and_deliver_once(tmp_path: Path) -> None:
    totals, returncode = run_crash_script(
        tmp_path, "--iterations", "50", "--max-delay", "1.0", timeout_s=150
    )
    assert totals["iterations"] == 50 and totals["kills"] == 50
    assert totals["captures_lost"] == 0
    assert totals["deleted_but_present"] == 0
    assert totals["duplicates"] == 0
    assert totals["inconsistencies"] == 0, totals["problems"][:5]
    # the run did real work between the kills
    assert totals["saved_acknowledged"] >= 50
    assert totals["delivered"] >= 20
    assert returncode == 0
