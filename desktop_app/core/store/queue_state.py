"""Submission bookkeeping: the queue state of captures (used by
:mod:`desktop_app.core.submission`)."""

from __future__ import annotations

import builtins
import sqlite3
from typing import Any

from desktop_app.core.store.database import StoreDatabase
from desktop_app.core.store.records import CaptureRecord


class QueueState(StoreDatabase):
    """The store's public queue API: claims, leases, due captures and state changes."""

    def update_queue_state(
        self, capture_id: str, actor: str, action: str, detail: str, **fields: Any
    ) -> None:
        """Set workflow columns of one capture (``state``, ``last_error``, ``next_attempt_utc``,
        ``submitted_utc``, ``remote_uid``...) and audit the change (``actor``, ``action``,
        ``detail``) in one transaction, journalled. Raises KeyError if the capture is unknown,
        :class:`~desktop_app.core.store.errors.StorageError` if it cannot be saved."""
        cols = ", ".join(f"{k}=?" for k in fields)

        def body(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                f"UPDATE captures SET {cols} WHERE id=?", (*fields.values(), capture_id)
            )
            if cur.rowcount != 1:
                raise KeyError(capture_id)
            self._audit(conn, capture_id, actor, action, detail)

        self._write(body, "The submission state")

    def claim_for_sending(
        self, capture_id: str, target: str, now_utc: str, lease_until_utc: str
    ) -> CaptureRecord | None:
        """Atomically take a due queued capture for one send attempt; None if it is not due or
        another queue (another process on this data home) took it first.

        The claim counts the attempt and leases the capture until ``lease_until_utc`` (ISO UTC):
        no other queue picks it before then. A crash during the send leaves the lease to expire,
        and the capture is retried; one that was delivered is marked submitted by the claimant.
        """

        def body(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE captures SET submission_attempts = submission_attempts + 1, "
                "last_attempt_utc=?, next_attempt_utc=? WHERE id=? AND state='queued' AND "
                "problem IS NULL AND (next_attempt_utc IS NULL OR next_attempt_utc <= ?)",
                (now_utc, lease_until_utc, capture_id, now_utc),
            )
            if cur.rowcount != 1:
                return False
            row = conn.execute(
                "SELECT submission_attempts FROM captures WHERE id=?", (capture_id,)
            ).fetchone()
            self._audit(conn, capture_id, "system", "attempt", f"{target} #{row[0]}")
            return True

        if not self._write(body, "The submission state"):
            return None
        return self.get(capture_id)

    def release_claims(self) -> int:
        """Make every queued capture due now (claims and back-offs of an earlier run); returns
        how many. Only for the one process that holds the data-home lock, at start-up: any
        claim it finds belongs to a run that died during a send."""

        def body(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE captures SET next_attempt_utc=NULL "
                "WHERE state='queued' AND next_attempt_utc IS NOT NULL"
            )
            return int(cur.rowcount)

        return self._write(body, "The submission state")

    def due_ids(self, now_utc: str, limit: int | None) -> builtins.list[str]:
        """Ids of queued captures (without a problem) due at ``now_utc`` (ISO UTC), oldest
        first, at most ``limit``. Claim one with :meth:`claim_for_sending` before sending it."""
        query = (
            "SELECT id FROM captures WHERE state='queued' AND problem IS NULL AND "
            "(next_attempt_utc IS NULL OR next_attempt_utc <= ?) "
            "ORDER BY created_utc"  # oldest due capture first
        )
        params: tuple[Any, ...] = (now_utc,)
        if limit is not None:
            query += " LIMIT ?"
            params = (now_utc, int(limit))
        with self._lock:
            self._check_open()
            return [str(r[0]) for r in self._conn.execute(query, params)]

    def queue_summary(self) -> tuple[dict[str, int], str | None, str | None]:
        """(captures per state present, the latest error of a queued or failed capture, the
        earliest next attempt of a queued one): what the queue's status line shows."""
        with self._lock:
            self._check_open()
            counts = {
                str(s): int(n)
                for s, n in self._conn.execute(
                    "SELECT state, COUNT(*) FROM captures GROUP BY state"
                )
            }
            err = self._conn.execute(
                "SELECT last_error FROM captures WHERE state IN ('queued','failed') AND "
                "last_error IS NOT NULL ORDER BY last_attempt_utc DESC LIMIT 1"
            ).fetchone()
            nxt = self._conn.execute(
                "SELECT MIN(next_attempt_utc) FROM captures WHERE state='queued'"
            ).fetchone()
        return counts, (err[0] if err else None), (nxt[0] if nxt else None)
