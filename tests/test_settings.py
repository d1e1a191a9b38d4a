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


# ---- the DICOMweb password -------------------------------------------------------------------

DICOMWEB = {"kind": "dicomweb", "url": "https://pacs/dicom-web", "username": "alice"}


def _with_password(**extra: str) -> AppSettings:
    return AppSettings(submission={**DICOMWEB, "password": "hunter2", **extra})


def test_password_goes_to_the_keyring_not_the_file(tmp_path: Path, memory_keyring) -> None:
    path = save_settings(_with_password(), tmp_path / "s.json")
    assert "hunter2" not in path.read_text()
    assert list(memory_keyring.entries.values()) == ["hunter2"]
    (account,) = [a for _, a in memory_keyring.entries]
    assert account == "alice@https://pacs/dicom-web"
    loaded = load_settings(path)
    assert loaded.submission["password"] == "hunter2"  # in memory, for make_target
    assert loaded == _with_password()


def test_without_a_keyring_the_password_is_not_written(tmp_path: Path) -> None:
    """This machine's case (keyring's fail backend): kept for the session only."""
    from desktop_app.core.submission.credentials import secret_store_status

    assert not secret_store_status().usable
    assert "only until the app closes" in secret_store_status().description
    settings = _with_password()
    path = save_settings(settings, tmp_path / "s.json")
    assert "hunter2" not in path.read_text()
    assert settings.submission["password"] == "hunter2"  # the running app keeps it
    assert "password" not in load_settings(path).submission


def test_the_password_is_written_only_when_the_user_chose_the_file(tmp_path: Path) -> None:
    settings = _with_password(password_in_file="true")
    path = save_settings(settings, tmp_path / "s.json")
    assert json.loads(path.read_text())["submission"]["password"] == "hunter2"
    assert load_settings(path).submission["password"] == "hunter2"


def test_an_older_files_password_moves_to_the_keyring(tmp_path: Path, memory_keyring) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"submission": {**DICOMWEB, "password": "hunter2"}}))
    loaded = load_settings(path)
    assert loaded.submission["password"] == "hunter2"
    assert "hunter2" not in path.read_text()  # rewritten without it
    assert list(memory_keyring.entries.values()) == ["hunter2"]


def test_an_older_files_password_stays_marked_where_there_is_no_keyring(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"submission": {**DICOMWEB, "password": "hunter2"}}))
    loaded = load_settings(path)
    # not silently dropped (sending would stop), but marked: the dialog says it is unencrypted
    assert loaded.submission["password"] == "hunter2"
    assert loaded.submission["password_in_file"] == "true"


def test_credentials_in_a_saved_url_are_removed(tmp_path: Path, memory_keyring) -> None:
    path = tmp_path / "s.json"
    url = "https://bob:pw%21@pacs/dicom-web"
    path.write_text(json.dumps({"submission": {"kind": "dicomweb", "url": url}}))
    loaded = load_settings(path)
    assert loaded.submission["url"] == "https://pacs/dicom-web"
    assert (loaded.submission["username"], loaded.submission["password"]) == ("bob", "pw!")
    assert "pw" not in path.read_text() and "bob:" not in path.read_text()
    # and never written, whatever the in-memory settings hold
    settings = AppSettings(submission={"kind": "dicomweb", "url": url})
    assert "pw" not in save_settings(settings, tmp_path / "t.json").read_text()


def test_config_folder_and_file_are_private(isolated_app_dirs: Path) -> None:
    folder = settings_path().parent
    folder.mkdir(parents=True)
    folder.chmod(0o755)  # as created by earlier versions
    path = save_settings(_with_password(password_in_file="true"))
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (folder.stat().st_mode & 0o777) == 0o700


def test_kiosk_pin_rule_is_one_function() -> None:
    from desktop_app.core.settings import MIN_PIN_LENGTH, kiosk_pin_problem

    assert kiosk_pin_problem("2580") == "" and kiosk_pin_problem("12345678") == ""
    for bad in ("", "123", "12a4", "12 34"):
        assert str(MIN_PIN_LENGTH) in kiosk_pin_problem(bad)
