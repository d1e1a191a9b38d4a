"""``skin-capture bench --gui``: the app's own speed, measured on the real staff window.

* preview fps: frames painted per second at 1280x720 (demo feed at 30 fps, a camera's rate) while
  the model scores live frames in its worker;
* GUI-thread stalls: a 10 ms precise timer on the GUI thread; a stall is how much later than due
  each tick fires (p50 / p99 / max);
* capture to verdict: from the capture request to the verdict arriving in the GUI thread
  (capture-grid scoring, storing the still, the signal back);
* cold start to first frame: a fresh ``python`` process, from its launch to the first preview
  frame painted in the window;
* cue latency: on the demo feed's known schedule of good and poor moments, from each scene change
  to the first time the guidance line shows the right instruction for the new moment (median,
  p90, and how many changes never got the right message within their moment);
* idle CPU: the process's CPU time per wall second (100 = one core busy) while the window shows
  an unchanging view (the demo's good close-up only, held by a steady hand);
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
CUE_CYCLES = 1.0  # demo schedule cycles watched for the cue latency (38 s each)
IDLE_S = 6.0


def expected_messages() -> dict[str, tuple[str, ...]]:
    """The guidance lines that are right for each demo moment (a line is right when it starts
    with one of them). Motion blur and defocus both accept either blur instruction."""
    from desktop_app.core.gating import GOOD_LIVE_MESSAGE, guidance_for

    blur = (guidance_for("motion"), guidance_for("blur"))
    return {
        "good": (GOOD_LIVE_MESSAGE,),
        "motion": blur,
        "defocus": blur,
        "dark": (guidance_for("dark"), guidance_for("noise")),
        "glare": (guidance_for("glare"),),
        "off_centre": (guidance_for("framing"),),
        "far": (guidance_for("distance"),),
    }


def cue_latencies(
    samples: list[tuple[float, str]],
    start: float,
    schedule: tuple[tuple[str, float], ...],
    expected: dict[str, tuple[str, ...]],
    details: list[tuple[str, float | None]] | None = None,
) -> tuple[list[float], int]:
    """Scene-change -> right-message latencies (ms) from ``samples`` of (monotonic time, shown
    text); a source opened at ``start`` plays ``schedule`` in a loop. Returns (one latency per
    change, number of changes that never got the right message within their moment: their
    latency is the moment's whole duration, a lower bound). Only changes with samples from their
    start to their end count. ``details`` (when given) receives
    (moment, latency ms or None when missed) for each change, in order."""
    if not samples:
        return [], 0
    first, last = samples[0][0], samples[-1][0]
    cycle = sum(d for _, d in schedule)
    latencies: list[float] = []
    missed = 0
    k = int((first - start) // cycle)
    while True:
        offset = start + k * cycle
        if offset > last:
            break
        for i, (moment, duration) in enumerate(schedule):
            begin, end = offset, offset + duration
            offset = end
            previous = schedule[i - 1][0]
            if moment == previous or begin < first or end > last:
                continue
            right = expected.get(moment, ())
            hit = next(
                (t for t, text in samples if begin <= t < end and text.startswith(right)), None
            )
            if hit is None:  # counted as the whole moment: a lower bound of its latency
                missed += 1
                latencies.append(duration * 1000.0)
            else:
                latencies.append((hit - begin) * 1000.0)
            if details is not None:
                details.append((moment, None if hit is None else round((hit - begin) * 1000.0)))
        k += 1
    return latencies, missed


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


def _open_window(
    model_path: Path, store_root: Path, schedule: tuple[tuple[str, float], ...] | None = None
) -> Any:
    from desktop_app.app.services import AppServices
    from desktop_app.core.settings import AppSettings
    from desktop_app.core.sources import DemoSource
    from desktop_app.core.store import CaptureStore
    from desktop_app.qt.windows.main_window import MainWindow

    settings = AppSettings(operator="bench", submission={"kind": "outbox"})
    store = CaptureStore(store_root)
    services = AppServices(
        settings=settings,
        store=store,
        queue=None,
        model_path=model_path,
        source=DemoSource(resolution=PREVIEW_RESOLUTION, fps=30.0)
        if schedule is None
        else DemoSource(resolution=PREVIEW_RESOLUTION, fps=30.0, schedule=schedule),  # type: ignore[arg-type]
    )
    window = MainWindow(services, settings_path=store_root / "settings.json")
    window.patient_edit.setText("BENCH")
    window.site_combo.setCurrentIndex(1)
    window.show()
    return window


def run_gui_bench(model_path: Path, cue_cycles: float = CUE_CYCLES) -> dict[str, Any]:
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

        report.update(measure_cue_latency(window, cue_cycles))
        cue_ms = list(getattr(session._camera_worker, "cue_ms", None) or [])
        if cue_ms:
            report.update(
                cues_per_frame_median_ms=round(statistics.median(cue_ms), 2),
                cues_per_frame_p90_ms=round(percentile(cue_ms, 90), 2),
            )

        report.update(measure_capture_latency(window))
        info = session.model_info
        if info is not None:
            report.update(model=f"{info.name} {info.version} ({info.precision})")
            report.update(provider=info.provider)
        bench_memory = _rss_mb()
        report.update({f"bench_process_{k}": v for k, v in bench_memory.items()})
        window.close()
        report["shutdown_clean"] = bool(window.closed_cleanly)
        report.update(measure_idle_cpu(model_path, Path(tmp) / "idle-store"))
    return report


def measure_capture_latency(window: Any) -> dict[str, Any]:
    """Press Capture ``CAPTURES`` times on the open window; the first, median and worst time
    from the press to the verdict on screen, and the worker's own score-and-store time."""
    session = window.session
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
    if not latencies:
        return {}
    return {
        "capture_to_verdict_first_ms": round(latencies[0], 1),
        "capture_to_verdict_median_ms": round(statistics.median(latencies), 1),
        "capture_to_verdict_max_ms": round(max(latencies), 1),
        "capture_score_and_store_median_ms": round(statistics.median(worker_ms), 1),
        "captures": len(latencies),
    }


def measure_cue_latency(window: Any, cycles: float) -> dict[str, Any]:
    """Watch the guidance line over ``cycles`` of the demo schedule (see :func:`cue_latencies`)."""
    from PySide6.QtCore import Qt, QTimer

    demo = window.services.source
    label = window.live.guidance
    samples: list[tuple[float, str]] = []
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: samples.append((time.monotonic(), label.text())))
    timer.start()
    _spin(cycles * demo.cycle_seconds + 1.0)
    timer.stop()
    details: list[tuple[str, float | None]] = []
    latencies, missed = cue_latencies(
        samples, demo._start, demo.schedule, expected_messages(), details
    )
    if not latencies:
        return {"cue_latency_changes": 0, "cue_latency_missed": missed}
    return {
        "cue_latency_by_change": " ".join(f"{m}:{ms}" for m, ms in details),
        "cue_latency_median_ms": round(statistics.median(latencies), 0),
        "cue_latency_p90_ms": round(percentile(latencies, 90), 0),
        "cue_latency_max_ms": round(max(latencies), 0),
        "cue_latency_changes": len(latencies),
        "cue_latency_missed": missed,
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def measure_idle_cpu(model_path: Path, store_root: Path) -> dict[str, Any]:
    """CPU use of this process while the window shows an unchanging view (the good close-up,
    a steady hand), once the model is ready: process CPU seconds per wall second x 100."""
    window = _open_window(model_path, store_root, schedule=(("good", 3600.0),))
    try:
        session = window.session
        view = window.live.frame_view
        if not _spin_until(lambda: session.model_ready and view.frames_shown > 0, 60.0):
            return {"idle_cpu_error": "the window did not start"}
        _spin(3.0)
        scored0 = session._inference_worker.live_scored
        cpu0, t0 = time.process_time(), time.perf_counter()
        _spin(IDLE_S)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - t0
        scored = session._inference_worker.live_scored - scored0
        return {
            "idle_cpu_percent": round(100.0 * cpu / wall, 0),
            "idle_live_inference_per_s": round(scored / wall, 2),
        }
    finally:
        window.close()


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
            start = time.perf_counter()
            if window.session.capture() and _spin_until(lambda: window.outcome is not None, 60.0):
                # the first capture of a fresh app process: the session's very first
                result["app_first_capture_to_verdict_ms"] = round(
                    (time.perf_counter() - start) * 1000.0, 1
                )
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
