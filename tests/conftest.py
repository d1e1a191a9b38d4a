"""Test isolation: offscreen Qt, and a private app-data/settings directory for every test."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import keyring
import keyring.backend
import keyring.backends.fail
import keyring.errors
import numpy as np
import pytest
from frame_helpers import write_frame_folder

from desktop_app.core.demo_scene import render_skin
from desktop_app.core.store import CaptureStore

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


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An in-memory keyring backend for tests (the real keyring API, no OS keyring)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


@pytest.fixture(autouse=True)
def no_system_keyring() -> Iterator[None]:
    """No test touches the developer's real keyring: every test starts with keyring's "fail"
    backend (as on a headless machine); :func:`memory_keyring` gives one a working keyring."""
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    yield
    keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring(no_system_keyring: None) -> MemoryKeyring:
    """A working in-memory OS keyring for this test."""
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaptureStore]:
    """A fresh capture store under ``tmp_path / "store"``, closed after the test."""
    s = CaptureStore(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture(scope="module")
def skin_rgb() -> np.ndarray:
    """A rendered skin close-up with a lesion, uint8 RGB ``[360, 640, 3]``."""
    return render_skin(360, 640, seed=11)


@pytest.fixture
def sharp_folder(tmp_path: Path, skin_rgb: np.ndarray) -> Path:
    return write_frame_folder(tmp_path / "sharp", skin_rgb)


@pytest.fixture
def blurred_folder(tmp_path: Path, skin_rgb: np.ndarray) -> Path:
    return write_frame_folder(tmp_path / "blurred", cv2.GaussianBlur(skin_rgb, (0, 0), 8))
