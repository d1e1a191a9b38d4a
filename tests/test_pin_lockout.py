"""The kiosk's staff-PIN lockout (``core.kiosk_flow.PinLockout``), without Qt."""

from __future__ import annotations

import json
from pathlib import Path

from desktop_app.core.kiosk_flow import (
    MAX_PIN_ATTEMPTS,
    PIN_LOCKOUT_S,
    PinLockout,
    default_pin_lockout_path,
)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_lockout_after_max_attempts_then_it_expires() -> None:
    clock = Clock()
    lockout = PinLockout(max_attempts=3, lockout_s=30, clock=clock)
    assert not lockout.record_failure() and not lockout.record_failure()
    assert not lockout.locked
    assert lockout.record_failure()  # the third in a row
    assert lockout.locked and lockout.seconds_left() == 30
    clock.now += 29.5
    assert lockout.locked
    clock.now += 1
    assert not lockout.locked and lockout.failed_attempts == 0


def test_the_right_pin_resets_the_count() -> None:
    lockout = PinLockout(max_attempts=3, clock=Clock())
    lockout.record_failure()
    lockout.record_failure()
    lockout.record_success()
    assert not lockout.record_failure() and not lockout.locked


def test_a_restart_does_not_reset_the_lockout(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "config" / "lockout.json"
    first = PinLockout(clock=clock, path=path)
    for _ in range(MAX_PIN_ATTEMPTS - 1):
        first.record_failure()
    again = PinLockout(clock=clock, path=path)  # the app restarted
    assert again.failed_attempts == MAX_PIN_ATTEMPTS - 1
    assert again.record_failure() and again.locked
    clock.now += 10
    restarted = PinLockout(clock=clock, path=path)
    assert restarted.locked and restarted.seconds_left() == PIN_LOCKOUT_S - 10
    restarted.clear()
    assert not PinLockout(clock=clock, path=path).locked


def test_a_clock_set_back_never_locks_longer_than_the_lockout(tmp_path: Path) -> None:
    clock = Clock()
    lockout = PinLockout(max_attempts=1, clock=clock)
    lockout.record_failure()
    clock.now -= 3600
    assert lockout.seconds_left() == PIN_LOCKOUT_S


def test_a_damaged_file_means_no_lockout(tmp_path: Path) -> None:
    path = tmp_path / "lockout.json"
    for text in ("{not json", "[]", json.dumps({"locked_until": "soon"})):
        path.write_text(text, encoding="utf-8")
        assert not PinLockout(path=path).locked


def test_the_file_lives_next_to_the_settings(isolated_app_dirs: Path) -> None:
    path = default_pin_lockout_path()
    assert path.name == "kiosk-pin-lockout.json"
    assert isolated_app_dirs / "config" in path.parents
