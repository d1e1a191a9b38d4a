"""A one-slot, "latest wins" mailbox between threads.

The camera thread puts every frame; a consumer (the inference worker, the preview) takes whatever
is newest when it is ready. Older, unconsumed items are dropped, so a slow consumer never builds a
backlog and never delays the producer.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Thread-safe single slot. ``put`` replaces any unconsumed item."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: T | None = None
        self.dropped = 0
        self.delivered = 0

    def put(self, item: T) -> bool:
        """Store ``item``; True when the slot was empty (so the consumer needs a wake-up)."""
        with self._lock:
            was_empty = self._item is None
            if not was_empty:
                self.dropped += 1
            self._item = item
            return was_empty

    def take(self) -> T | None:
        """The newest item (emptying the slot), or None."""
        with self._lock:
            item, self._item = self._item, None
            if item is not None:
                self.delivered += 1
            return item

    def clear(self) -> None:
        with self._lock:
            self._item = None
