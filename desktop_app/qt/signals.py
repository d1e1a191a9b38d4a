"""Emitting Qt signals from Python safely on every PySide6 version.

PySide6 6.12.0 on Python < 3.12 returns the result of ``SignalInstance.emit()`` (a bool) without
taking a reference, so each emit from Python drops one reference to ``True``; after a few hundred
emits the interpreter aborts with "Fatal Python error: bool_dealloc". (Python 3.12+ has immortal
booleans, so it is harmless there; 6.11.3 does not have the bug.) :func:`emit` measures once
whether this PySide6 has the defect and, only if so, gives back the reference each emit takes.
Every emit in this package goes through :func:`emit`.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, SignalInstance

logger = logging.getLogger(__name__)


def _restore_references(obj: object, count: int) -> None:
    for _ in range(count):
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def _emit_drops_a_reference() -> bool:
    if sys.version_info >= (3, 12):
        return False

    class _Probe(QObject):
        sig = Signal()

    probe = _Probe()
    probes = 8
    before = sys.getrefcount(True)
    for _ in range(probes):
        probe.sig.emit()
    lost = before - sys.getrefcount(True)
    if lost > 0:
        _restore_references(True, lost)
        logger.debug("PySide6 emit() drops a reference per call; compensating")
    return lost >= probes


EMIT_DROPS_REFERENCE = _emit_drops_a_reference()


def emit(signal: SignalInstance, *args: Any) -> None:
    """``signal.emit(*args)``, minus the reference leak of affected PySide6 versions."""
    result = signal.emit(*args)
    if EMIT_DROPS_REFERENCE:
        _restore_references(result, 1)


def emitter(signal: SignalInstance) -> Callable[..., None]:
    """A plain callable that emits ``signal`` (for callbacks handed to Qt-free code)."""

    def _emit(*args: Any) -> None:
        emit(signal, *args)

    return _emit
