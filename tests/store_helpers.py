"""Small builders shared by the store / submission / hot-folder tests."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from desktop_app.core.store import CaptureInfo


def make_info(**overrides: Any) -> CaptureInfo:
    base = CaptureInfo(
        mode="staff",
        operator="nurse-a",
        patient_ref="P-1001",
        body_site="left forearm",
        note="",
        score=0.82,
        threshold=0.5,
        model_version="test-model-1",
        reasons={"blur": 0.1, "dark": 0.05},
        accepted=True,
        source="camera:0",
    )
    return replace(base, **overrides)


def smooth_image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A photo-like (smooth) uint8 RGB ``[H, W, 3]`` image, so JPEG round trips stay close."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6.28, size=3)
    channels = [127 + 100 * np.sin(x / (7 + 3 * c) + y / (11 + 2 * c) + phase[c]) for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


def encode(image: np.ndarray, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, fmt, **kwargs)
    return buf.getvalue()


CRASH_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "crash_test.py"
HOTFOLDER_CRASH_SCRIPT = CRASH_SCRIPT.with_name("hotfolder_crash_test.py")


def run_crash_script(
    workdir: Path, *args: str, timeout_s: float, script: Path = CRASH_SCRIPT
) -> tuple[dict[str, Any], int]:
    """Run scripts/crash_test.py (or ``script``) with ``args``; return its JSON report's totals
    and exit code."""
    report = workdir / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            *args,
            "--workdir",
            str(workdir / "work"),
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert report.exists(), proc.stderr[-3000:]
    totals: dict[str, Any] = json.loads(report.read_text())
    return totals, proc.returncode
