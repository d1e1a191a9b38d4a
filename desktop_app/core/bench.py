"""``skin-capture bench``: model load time and per-frame latency, measured, never asserted in tests.

The PyTorch comparison runs in a child process (``python -m model_export.bench.bench_torch``)
so that the app's own process never imports torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Frames representative of what each grid sees: a 1280x720 preview and a 12 MP-class still
# reduced to the capture grid's long side by the engine.
LIVE_FRAME_HW = (720, 1280)
CAPTURE_FRAME_HW = (3000, 4000)


def synthetic_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic textured uint8 RGB ``[H, W, 3]`` frame (skin-like tone plus detail)."""
    rng = np.random.default_rng(seed)
    base = np.array([196, 150, 128], dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    shade = 0.85 + 0.15 * np.sin(xx / 37.0) * np.cos(yy / 53.0)
    noise = rng.normal(0.0, 12.0, size=(height, width, 1)).astype(np.float32)
    frame = base[None, None, :] * shade[:, :, None] + noise
    clipped: np.ndarray = np.clip(frame, 0, 255).astype(np.uint8)
    return clipped


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def time_engine(
    engine: Any, frame: np.ndarray, grid: str, runs: int, warmup: int
) -> dict[str, Any]:
    """Median/p90 latency (ms) of ``engine.score`` end to end (tiling + inference)."""
    for _ in range(warmup):
        engine.score(frame, grid=grid)
    samples: list[float] = []
    result = None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = engine.score(frame, grid=grid)
        samples.append((time.perf_counter() - t0) * 1000.0)
    assert result is not None
    return {
        "grid": grid,
        "patches": result.layout.n,
        "grid_shape": f"{result.layout.rows}x{result.layout.cols}",
        "frame": f"{frame.shape[1]}x{frame.shape[0]}",
        "median_ms": statistics.median(samples),
        "p90_ms": percentile(samples, 90),
        "runs": runs,
    }


def sibling_models(model_path: Path) -> dict[str, Path]:
    """fp32/int8 pair next to ``model_path`` (``*-fp32.onnx`` / ``*-int8.onnx``), when present."""
    name = model_path.name
    found: dict[str, Path] = {}
    for tag in ("fp32", "int8"):
        for other in ("fp32", "int8"):
            if f"-{other}." in name:
                candidate = model_path.with_name(name.replace(f"-{other}.", f"-{tag}."))
                if candidate.is_file():
                    found[tag] = candidate
    if not found:
        found["model"] = model_path
    return found


def bench_torch(model_path: Path, grid: str, runs: int, warmup: int) -> dict[str, Any] | None:
    """The same network in PyTorch eager fp32, in a child process; None when torch is absent."""
    if importlib.util.find_spec("torch") is None:
        return None
    cmd = [
        sys.executable,
        "-m",
        "model_export.bench.bench_torch",
        "--model",
        str(model_path),
        "--grid",
        grid,
        "--runs",
        str(runs),
        "--warmup",
        str(warmup),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=True)
    except (subprocess.SubprocessError, OSError) as exc:
        logger.warning("PyTorch comparison failed: %s", exc)
        return None
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_bench(
    model_path: Path,
    provider: str = "auto",
    threads: int = 0,
    runs: int = 30,
    warmup: int = 3,
    with_torch: bool = True,
) -> dict[str, Any]:
    from desktop_app.core.inference import QualityEngine

    runs = max(20, runs)
    report: dict[str, Any] = {"cases": [], "torch": []}
    frames = {
        "live": synthetic_frame(*LIVE_FRAME_HW, seed=1),
        "capture": synthetic_frame(*CAPTURE_FRAME_HW, seed=2),
    }
    for precision, path in sibling_models(model_path).items():
        t0 = time.perf_counter()
        engine = QualityEngine(path, providers=provider, intra_op_threads=threads)
        load_ms = (time.perf_counter() - t0) * 1000.0
        for grid, frame in frames.items():
            case = time_engine(engine, frame, grid, runs, warmup)
            case.update(
                model=path.name,
                precision=engine.meta.precision if precision == "model" else precision,
                provider=engine.provider,
                load_ms=load_ms,
                split_bags=engine.splits_bags,
            )
            report["cases"].append(case)
        report["model_version"] = engine.meta.model_version
    if with_torch:
        for grid in ("live", "capture"):
            torch_case = bench_torch(model_path, grid, runs, warmup)
            if torch_case is not None:
                report["torch"].append(torch_case)
    ratios = {}
    for torch_case in report["torch"]:
        for case in report["cases"]:
            if case["grid"] == torch_case["grid"]:
                key = f"{case['grid']}:{case['precision']}"
                ratios[key] = torch_case["median_ms"] / case["median_ms"]
    report["speedup_vs_torch_eager_fp32"] = ratios
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"model version {report.get('model_version', '?')}",
        f"{'model':<24}{'precision':<10}{'provider':<22}{'grid':<9}{'patches':>8}"
        f"{'load ms':>10}{'median ms':>11}{'p90 ms':>9}  bag",
    ]
    for c in report["cases"]:
        split = "split in two" if c.get("split_bags") else "one piece"
        lines.append(
            f"{c['model']:<24}{c['precision']:<10}{c['provider']:<22}{c['grid']:<9}"
            f"{c['patches']:>8}{c['load_ms']:>10.0f}{c['median_ms']:>11.1f}{c['p90_ms']:>9.1f}"
            f"  {split}"
        )
    for t in report["torch"]:
        lines.append(
            f"{'pytorch eager':<24}{'fp32':<10}{'torch-cpu':<22}{t['grid']:<9}"
            f"{t.get('patches', 0):>8}{'':>10}{t['median_ms']:>11.1f}{t['p90_ms']:>9.1f}"
        )
    for key, ratio in report.get("speedup_vs_torch_eager_fp32", {}).items():
        lines.append(f"onnxruntime {key} is {ratio:.2f}x faster than PyTorch eager fp32")
    gui = report.get("gui")
    if gui:
        lines.append("gui: " + ", ".join(f"{k}={v}" for k, v in gui.items()))
    return "\n".join(lines)


def run_bench_cli(
    args: argparse.Namespace,
    gui_bench: Callable[[Path], dict[str, Any]] | None = None,
) -> int:
    """``skin-capture bench``: the model bench, then ``gui_bench(model_path)`` when given (the
    composition root, ``desktop_app.cli``, passes the Qt GUI bench for ``--gui``: core imports
    no Qt)."""
    from desktop_app.core.inference import NO_MODEL_MESSAGE, resolve_model_path
    from desktop_app.core.model_meta import ModelContractError

    model_path = args.model or resolve_model_path(None)
    if model_path is None:
        print(f"error: {NO_MODEL_MESSAGE}", file=sys.stderr)
        return 2
    try:
        report = run_bench(
            Path(model_path),
            provider=args.provider,
            threads=args.threads,
            runs=args.runs,
            warmup=args.warmup,
            with_torch=not args.no_torch,
        )
    except ModelContractError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if gui_bench is not None:
        report["gui"] = gui_bench(Path(model_path))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
