"""One app process per data home: the second refuses clearly, and two queues that do share a
store (a second process before the lock existed) never send one capture twice."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from store_helpers import make_info, smooth_image

from desktop_app.core.instance_lock import AnotherInstanceError, acquire_data_home_lock
from desktop_app.core.store import CaptureRecord, CaptureStore
from desktop_app.core.submission import SubmissionQueue

HOLD_LOCK = """
import sys, time
from pathlib import Path
from desktop_app.core.instance_lock import acquire_data_home_lock
acquire_data_home_lock(Path(sys.argv[1]))
print("LOCKED", flush=True)
time.sleep(60)
"""


@pytest.fixture
def other_process_holding(tmp_path: Path):  # type: ignore[no-untyped-def]
    home = tmp_path / "captures"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(home)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "LOCKED"
    yield home
    child.kill()
    child.wait()


def test_a_second_process_is_refused_with_a_clear_message(other_process_holding: Path) -> None:
    with pytest.raises(AnotherInstanceError, match="already running"):
        acquire_data_home_lock(other_process_holding)


def test_the_lock_goes_with_the_process_even_when_it_is_killed(tmp_path: Path) -> None:
    home = tmp_path / "captures"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(home)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "LOCKED"
    child.kill()
    child.wait()
    lock = acquire_data_home_lock(home)  # no stale lock after a SIGKILL
    assert acquire_data_home_lock(home) is lock  # the same process may ask again
    lock.release()


def test_the_app_refuses_to_start_a_second_copy(
    other_process_holding: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = dict(os.environ, SKIN_CAPTURE_HOME=str(other_process_holding.parent))
    env.update(QT_QPA_PLATFORM="offscreen", SKIN_CAPTURE_NO_DIALOGS="1")
    result = subprocess.run(
        [sys.executable, "-m", "desktop_app", "--source", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3
    assert "already running" in result.stderr


class SlowOutbox:
    """An outbox target that takes a moment per photo and counts what it receives."""

    name = "outbox"
    needs_patient_ref = False

    def __init__(self) -> None:
        self.sent: list[str] = []
        self._lock = threading.Lock()

    def submit(self, record: CaptureRecord, image_path: Path) -> str:
        time.sleep(0.02)
        with self._lock:
            self.sent.append(record.id)
        return record.id


def test_two_queues_on_one_store_send_each_capture_once(tmp_path: Path) -> None:
    """What two app processes did (509 of 1,247 sent twice): the claim is now atomic."""
    first, second = CaptureStore(tmp_path / "s"), CaptureStore(tmp_path / "s")
    target = SlowOutbox()
    ids = [first.add(smooth_image(seed=i), make_info()).id for i in range(30)]
    queue_a, queue_b = SubmissionQueue(first, target), SubmissionQueue(second, target)
    for capture_id in ids:
        queue_a.enqueue(capture_id)
    workers = [threading.Thread(target=queue.process_pending) for queue in (queue_a, queue_b) * 2]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(target.sent) == sorted(ids)  # every capture once, none twice
    assert all(first.get(i).state == "submitted" for i in ids)
    first.close()
    second.close()
