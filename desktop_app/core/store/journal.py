"""The per-capture state journal (``<id>.jsonl``): one fsynced JSON line per audited change,
with the workflow state after it, read back when the database is rebuilt."""

from __future__ import annotations

import builtins
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from desktop_app.core.store.durable import fsync_dir
from desktop_app.core.store.records import CAPTURE_STATES, req_int, req_str

logger = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".jsonl"
# The workflow columns a state journal line records, with their types (restored on rebuild).
JOURNAL_FIELDS: dict[str, type] = {
    "state": str,
    "reviewer": str,
    "reviewed_utc": str,
    "review_action": str,
    "review_reason": str,
    "review_rating": int,
    "submission_attempts": int,
    "last_error": str,
    "last_attempt_utc": str,
    "next_attempt_utc": str,
    "submitted_utc": str,
    "remote_uid": str,
}
_NOT_NULL_JOURNAL_FIELDS = frozenset({"state", "submission_attempts"})


def append_journal_lines(path: Path, entries: Iterable[Mapping[str, Any]]) -> None:
    """Append JSON lines to a state journal and fsync it (and its folder when the journal is
    new). Raises OSError."""
    line = b"".join(
        (json.dumps(entry, sort_keys=True, allow_nan=True) + "\n").encode("utf-8")
        for entry in entries
    )
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o600)
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)


def read_journal(
    path: Path,
) -> tuple[builtins.list[dict[str, Any]], dict[str, Any] | None]:
    """(audit entries, workflow state after the last one) from a state journal; ([], None) if
    there is none. Lines that do not parse (a torn last line after a crash) are skipped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], None
    except OSError as exc:
        logger.error("state journal %s unreadable: %s", path.name, exc.strerror)
        return [], None
    entries: builtins.list[dict[str, Any]] = []
    state: dict[str, Any] | None = None
    for number, line in enumerate(raw.splitlines(), 1):
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
            clean = {k: req_str(entry[k], k) for k in ("utc", "actor", "action", "detail")}
            fields = entry.get("set")
            if fields is not None:
                state = _journal_state(fields)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("state journal %s: line %d skipped (%s)", path.name, number, exc)
            continue
        entries.append(clean)
    return entries, state


def _journal_state(fields: Any) -> dict[str, Any]:
    """The workflow columns of one journal line, type-checked; raises ValueError."""
    if not isinstance(fields, dict):
        raise ValueError("state is not an object")
    state: dict[str, Any] = {}
    for name, kind in JOURNAL_FIELDS.items():
        value = fields.get(name)
        if value is None and name not in _NOT_NULL_JOURNAL_FIELDS:
            state[name] = None
        elif kind is int:
            state[name] = req_int(value, name)
        else:
            state[name] = req_str(value, name)
    if state["state"] not in CAPTURE_STATES:
        raise ValueError(f"unknown state {state['state']!r}")
    return state
