"""``skin-capture bench --gui``: the app's own speed, measured on the real staff window.

* preview fps: frames painted per second at 1280x720 (demo feed at 30 fps, a camera's rate) while
  the model scores live frames in its worker;
* GUI-thread stalls: a 10 ms precise timer on the GUI thread; a stall is how much later than due
  each tick fires (p50 / p99 / max);
* capture to verdict: from the capture request to the verdict arriving in the GUI thread
  (capture-grid scoring, storing the still, the signal back);
* cold start to first frame: a fresh ``python`` process, from its launch to the first preview
  frame painted in the window;
* resident memory (RSS) of a fresh app process after live scoring and one capture (current and
  peak); the bench process's own RSS is reported too but includes the model bench's engines.

Captures go to a temporary store that is deleted afterwards, never the user's.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

PREVIEW_RESOLUTION = (1280, 720)
MEASURE_S = 8.0
WARMUP_S = 2.0
CAPTURES = 6
TICK_MS = 10


def _rss_mb() -> dict[str, float]:
    """Current and peak resident memory of this process in MB (Linux /proc; else peak only)."""
    values: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key = "rss_mb" if line.startswith("VmRSS") else "rss_peak_mb"
                values[key] = round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        import resource

        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0
        values["rss_peak_mb"] = round(peak_kb / scale, 1)
    return values


def _spin(seconds: float) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def _spin_until(predicate: Any, timeout_s: float) -> bool:
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        QApplication.processEvents()
        if predicate():
            return True
        time.sleep(0.002)
    return False


def _open_window(model_path: Path, store_root: Path) -> Any:
    from desktop_app.app.services import AppServices
    from desktop_app.core.frame_sources import DemoSource
    from desktop_app.core.settings import AppSettings
    from desktop_app.core.storage import CaptureStore
    from desktop_app.qt.main_window import MainWindow

    settings = AppSettings(operator="bench", submission={"kind": "outbox"})
    store = CaptureStore(store_root)
    services = AppServices(
        settings=settings,
        store=store,
        queue=None,
        model_path=model_path,
        source=DemoSource(resolution=PREVIEW_RESOLUTION, fps=30.0),
    )
    window = MainWindow(services, settings_path=store_root / "settings.json")
    window.patient_edit.setText("BENCH")
    window.site_combo.setCurrentIndex(1)
    window.show()
    return window


def run_gui_bench(model_path: Path) -> dict[str, Any]:
    """Measure the GUI with ``model_path``; returns numbers only (see the module docstring)."""
    from desktop_app.qt.compat import ensure_display, pyside_refcount_problem

    problem = pyside_refcount_problem()
    if problem:
        raise RuntimeError(problem)
    ensure_display()
    from PySide6.QtCore import QElapsedTimer, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    report: dict[str, Any] = {"platform": app.platformName()}
    report.update(measure_cold_start(model_path))
    with tempfile.TemporaryDirectory(prefix="skin-capture-bench-") as tmp:
        window = _open_window(model_path, Path(tmp) / "store")
        session = window.session
        view = window.live.frame_view
        if not _spin_until(lambda: session.model_ready and view.frames_shown > 0, 60.0):
            window.close()
            raise RuntimeError(f"the GUI bench could not start: {session.model_error}")
        # steady state: the demo's one-off background renders are finished
        demo = window.services.source
        _spin_until(lambda: demo.wait_until_rendered(0.01), 60.0)
        _spin(WARMUP_S)

        ticks: list[float] = []
        clock = QElapsedTimer()
        timer = QTimer()
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.setInterval(TICK_MS)
        timer.timeout.connect(lambda: ticks.append(clock.nsecsElapsed() / 1e6))
        frames0, scored0 = view.frames_shown, session._inference_worker.live_scored
        dropped0 = session.inference_slot.dropped
        clock.start()
        timer.start()
        t0 = time.perf_counter()
        _spin(MEASURE_S)
        elapsed = time.perf_counter() - t0
        timer.stop()
        frames = view.frames_shown - frames0
        scored = session._inference_worker.live_scored - scored0
        late = np.diff(np.asarray(ticks)) - TICK_MS if len(ticks) > 2 else np.zeros(1)
        report.update(
            preview_resolution=f"{PREVIEW_RESOLUTION[0]}x{PREVIEW_RESOLUTION[1]}",
            source_fps=30.0,
            preview_fps=round(frames / elapsed, 1),
            live_inference_per_s=round(scored / elapsed, 1),
            live_frames_skipped=session.inference_slot.dropped - dropped0,
            gui_stall_p50_ms=round(float(np.percentile(late, 50)), 2),
            gui_stall_p99_ms=round(float(np.percentile(late, 99)), 2),
            gui_stall_max_ms=round(float(late.max()), 2),
        )

        latencies: list[float] = []
        worker_ms: list[float] = []
        for _ in range(CAPTURES):
            _spin(0.3)
            start = time.perf_counter()
            if not session.capture():
                continue
            if _spin_until(lambda: window.outcome is not None, 30.0):
                latencies.append((time.perf_counter() - start) * 1000.0)
                worker_ms.append(window.outcome.elapsed_ms)
            window._on_retake_clicked()
        if latencies:
            report.update(
                capture_to_verdict_median_ms=round(statistics.median(latencies), 1),
                capture_to_verdict_max_ms=round(max(latencies), 1),
                capture_score_and_store_median_ms=round(statistics.median(worker_ms), 1),
                captures=len(latencies),
            )
        info = session.model_info
        if info is not None:
            report.update(model=f"{info.name} {info.version} ({info.precision})")
            report.update(provider=info.provider)
        bench_memory = _rss_mb()
        report.update({f"bench_process_{k}": v for k, v in bench_memory.items()})
        window.close()
        report["shutdown_clean"] = bool(window.closed_cleanly)
    return report


def measure_cold_start(model_path: Path, timeout_s: float = 120.0) -> dict[str, Any]:
    """Launch a fresh interpreter that opens the window; time from launch to the first frame."""
    launched = time.time()
    cmd = [sys.executable, "-m", "desktop_app.qt.gui_bench", "--cold-start", str(model_path)]
    env = dict(os.environ)
    env["SKIN_CAPTURE_BENCH_LAUNCHED"] = repr(launched)
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=True
        )
        data = json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
        logger.warning("cold-start measurement failed: %s", exc)
        return {"cold_start_error": str(exc)}
    return dict(data)


def _cold_start_child(model_path: Path) -> int:
    """A fresh app process: time to the first frame, then its memory in use after a few seconds
    of live scoring and one capture (the steady state of a session)."""
    launched = float(os.environ.get("SKIN_CAPTURE_BENCH_LAUNCHED", time.time()))
    from desktop_app.qt.compat import ensure_display

    ensure_display()
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="skin-capture-cold-") as tmp:
        window = _open_window(model_path, Path(tmp) / "store")
        view = window.live.frame_view
        ok = _spin_until(lambda: view.frames_shown > 0, 60.0)
        result["cold_start_to_first_frame_s"] = round(time.time() - launched, 2) if ok else None
        model_ok = _spin_until(lambda: window.session.model_ready, 60.0)
        if model_ok:
            result["cold_start_to_model_ready_s"] = round(time.time() - launched, 2)
        result["cold_start_rss_mb"] = _rss_mb().get("rss_mb")
        if model_ok:
            _spin(4.0)
            if window.session.capture():
                _spin_until(lambda: window.outcome is not None, 60.0)
            _spin(1.0)
            memory = _rss_mb()
            result["app_rss_after_capture_mb"] = memory.get("rss_mb")
            result["app_rss_peak_mb"] = memory.get("rss_peak_mb")
        window.close()
    app.quit()
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--cold-start":
        raise SystemExit(_cold_start_child(Path(sys.argv[2])))
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run_gui_bench(Path(sys.argv[1])), indent=2))
