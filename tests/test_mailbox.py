"""The latest-wins mailbox between the camera and its consumers."""

from __future__ import annotations

import threading

from desktop_app.core.mailbox import LatestSlot


def test_latest_item_wins_and_wakeup_only_when_empty() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is True
    assert slot.put(2) is False
    assert slot.put(3) is False
    assert slot.take() == 3
    assert slot.take() is None
    assert slot.dropped == 2 and slot.delivered == 1
    assert slot.put(4) is True


def test_concurrent_producer_never_blocks_on_slow_consumer() -> None:
    slot: LatestSlot[int] = LatestSlot()
    done = threading.Event()
    taken: list[int] = []

    def consumer() -> None:
        while not done.is_set():
            item = slot.take()
            if item is not None:
                taken.append(item)
            done.wait(0.001)

    thread = threading.Thread(target=consumer)
    thread.start()
    for i in range(20000):
        slot.put(i)
    done.set()
    thread.join(5)
    last = slot.take()
    if last is not None:
        taken.append(last)
    assert taken == sorted(set(taken))  # in order, never twice
    assert taken[-1] == 19999  # the newest item is never lost
    assert slot.dropped + slot.delivered == 20000  # every put is either delivered or dropped
