"""Settings persistence and the kiosk PIN hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from desktop_app.core.settings import (
    DEFAULT_KIOSK_PIN,
    AppSettings,
    hash_pin,
    load_settings,
    save_settings,
    settings_path,
    verify_pin,
)


def test_settings_live_in_the_platformdirs_config_dir(isolated_app_dirs: Path) -> None:
    assert settings_path().is_relative_to(isolated_app_dirs / "config")


def test_round_trip(tmp_path: Path) -> None:
    settings = AppSettings(camera="2", resolution=(1920, 1080), provider="cpu")
    settings.auto_capture_staff = True
    settings.submission = {"kind": "dicomweb", "url": "http://pacs:8042/dicom-web"}
    settings.set_kiosk_pin("97531")
    path = save_settings(settings, tmp_path / "s.json")
    loaded = load_settings(path)
    assert loaded == settings
    assert "97531" not in path.read_text()
    assert (path.stat().st_mode & 0o777) == 0o600


def test_default_pin_until_changed() -> None:
    settings = AppSettings()
    assert settings.uses_default_pin and settings.check_kiosk_pin(DEFAULT_KIOSK_PIN)
    assert not settings.check_kiosk_pin("0000")
    settings.set_kiosk_pin("4711")
    assert not settings.uses_default_pin
    assert settings.check_kiosk_pin("4711") and not settings.check_kiosk_pin(DEFAULT_KIOSK_PIN)
    with pytest.raises(ValueError, match="at least 4 digits"):
        settings.set_kiosk_pin("12a")


def test_pin_hash_is_salted_and_verifies() -> None:
    a, b = hash_pin("1234", iterations=1000), hash_pin("1234", iterations=1000)
    assert a != b and verify_pin("1234", a) and verify_pin("1234", b)
    assert not verify_pin("1235", a)
    assert not verify_pin("1234", "garbage") and not verify_pin("1234", "md5$1$00$00")


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "none.json") == AppSettings()


def test_damaged_file_is_kept_aside_and_defaults_used(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("{not json")
    assert load_settings(path) == AppSettings()
    assert (tmp_path / "s.json.damaged").read_text() == "{not json"


def test_wrong_types_fall_back_per_field(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            {
                "camera": 3,
                "resolution": [1280, "x"],
                "auto_capture_kiosk": "yes",
                "auto_capture_hold_s": 2,
                "provider": "cpu",
                "unknown_key": 1,
            }
        )
    )
    loaded = load_settings(path)
    defaults = AppSettings()
    assert loaded.camera == defaults.camera
    assert loaded.resolution == defaults.resolution
    assert loaded.auto_capture_kiosk is True
    assert loaded.auto_capture_hold_s == 2.0 and loaded.provider == "cpu"
    path.write_text(json.dumps({"resolution": None}))
    assert load_settings(path).resolution is None
