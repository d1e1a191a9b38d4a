"""Test isolation: offscreen Qt, and a private app-data/settings directory for every test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "2")

sys.path.insert(0, str(Path(__file__).parent))

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def isolated_app_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets its own data/config/cache dirs and no inherited model override."""
    root = tmp_path_factory.mktemp("appdirs")
    for var, sub in (
        ("XDG_DATA_HOME", "data"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
    ):
        (root / sub).mkdir()
        monkeypatch.setenv(var, str(root / sub))
    monkeypatch.setenv("SKIN_CAPTURE_HOME", str(root / "data"))
    # no modal dialog may wait for an answer in a test (e.g. "Photos not sent" when a window
    # with an accepted photo is closed at teardown); tests of a dialog unset it and answer it
    monkeypatch.setenv("SKIN_CAPTURE_NO_DIALOGS", "1")
    monkeypatch.delenv("SKIN_CAPTURE_MODEL", raising=False)
    return root


@pytest.fixture(scope="session")
def test_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small handmade contract-conforming ONNX model (patch size 32)."""
    from onnx_factory import write_model

    return write_model(tmp_path_factory.mktemp("model") / "test-fp32.onnx")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED_DIR / "data").is_dir():
        pytest.skip("../shared is not present")
    return SHARED_DIR
