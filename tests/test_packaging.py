"""Builds the standalone bundle with PyInstaller and runs it headless (marker: packaging)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.packaging, pytest.mark.slow]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("pyinstaller") is None and not _has_module("PyInstaller"):
        pytest.skip("PyInstaller is not installed")
    out = tmp_path_factory.mktemp("bundle")
    started = time.perf_counter()
    subprocess.run(
        ["bash", str(ROOT / "packaging" / "build.sh"), str(out / "dist"), str(out / "work")],
        check=True,
        cwd=ROOT,
        timeout=600,
        # bundle the packages of the interpreter running the tests, not whatever python3 is first
        env={**os.environ, "PYTHON": sys.executable},
    )
    print(f"bundle built in {time.perf_counter() - started:.0f} s")
    exe = out / "dist" / "skin-capture" / "skin-capture"
    assert exe.is_file()
    return exe


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _bundle_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def test_bundle_scores_like_the_installed_package(
    bundle: Path, tmp_path: Path, test_model_path: Path
) -> None:
    image = tmp_path / "photo.png"
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, size=(90, 130, 3), dtype=np.uint8)).save(image)
    cmd = ["score", "--json", "--model", str(test_model_path), str(image)]
    frozen = subprocess.run(
        [str(bundle), *cmd], capture_output=True, text=True, timeout=120, env=_bundle_env()
    )
    assert frozen.returncode == 0, frozen.stderr
    installed = subprocess.run(
        [sys.executable, "-m", "desktop_app", *cmd],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert installed.returncode == 0, installed.stderr
    a, b = json.loads(frozen.stdout), json.loads(installed.stdout)
    assert a["score"] == b["score"] and a["decision"] == b["decision"]
    assert a["reason_probabilities"] == b["reason_probabilities"]


def test_bundle_gui_starts_offscreen_on_demo_feed_and_exits_cleanly(
    bundle: Path, test_model_path: Path
) -> None:
    env = _bundle_env()
    env["SKIN_CAPTURE_EXIT_AFTER_MS"] = "4000"
    started = time.perf_counter()
    proc = subprocess.run(
        [str(bundle), "--source", "demo", "--model", str(test_model_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "first frame" in proc.stderr.lower(), proc.stderr[-3000:]
    assert elapsed < 60


def test_bundle_ships_the_default_model(bundle: Path, tmp_path: Path) -> None:
    if not (ROOT / "resources" / "models" / "default-int8.onnx").is_file():
        pytest.skip("no default model in resources/models")
    image = tmp_path / "photo.jpg"
    rng = np.random.default_rng(11)
    Image.fromarray(rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)).save(image)
    env = _bundle_env()
    env.pop("SKIN_CAPTURE_MODEL", None)
    frozen = subprocess.run(
        [str(bundle), "score", "--json", str(image)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert frozen.returncode == 0, frozen.stderr
    assert "default-int8.onnx" in frozen.stderr
    installed = subprocess.run(
        [sys.executable, "-m", "desktop_app", "score", "--json", str(image)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert installed.returncode == 0, installed.stderr
    a, b = json.loads(frozen.stdout), json.loads(installed.stdout)
    assert a["score"] == b["score"] and a["decision"] == b["decision"]
