"""Persisted app settings: a JSON file in the platformdirs config directory. No Qt here.

``settings.json`` lives in ``platformdirs.user_config_dir("skin-capture-assist")`` (on Linux
``$XDG_CONFIG_HOME/skin-capture-assist``). A missing or damaged file gives the defaults (a damaged
one is kept aside as ``settings.json.damaged`` and logged), so settings never stop the app from
starting. The kiosk PIN is stored only as a salted PBKDF2-SHA256 hash.

The DICOMweb password is not written to the file: it goes to the OS keyring
(``core.submission.credentials``), or, where there is no usable keyring, it is kept for the
running session only, unless the user explicitly ticked "store the password in the settings file
(not encrypted)" (``submission["password_in_file"] == "true"``). The file is written 0600 in a 0700
folder, and a server address never keeps a ``user:password@`` part.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_app.core.submission.credentials import (
    keyring_account,
    load_password,
    save_password,
    split_url_credentials,
)

logger = logging.getLogger(__name__)

APP_NAME = "skin-capture-assist"
SETTINGS_FILE = "settings.json"
DEFAULT_KIOSK_PIN = "2580"  # documented in the README; staff should change it in Settings
PIN_ITERATIONS = 200_000
BODY_SITES: tuple[str, ...] = (
    "Scalp",
    "Face",
    "Neck",
    "Chest",
    "Abdomen",
    "Upper back",
    "Lower back",
    "Upper arm (left)",
    "Upper arm (right)",
    "Forearm (left)",
    "Forearm (right)",
    "Hand (left)",
    "Hand (right)",
    "Thigh (left)",
    "Thigh (right)",
    "Lower leg (left)",
    "Lower leg (right)",
    "Foot (left)",
    "Foot (right)",
    "Genital / perianal",
    "Other",
)


MIN_PIN_LENGTH = 4


def kiosk_pin_problem(pin: str) -> str:
    """Why ``pin`` cannot be the kiosk PIN ("" when it can): the one rule, used by Settings."""
    if len(pin) < MIN_PIN_LENGTH or not pin.isdigit():
        return f"The kiosk PIN must be at least {MIN_PIN_LENGTH} digits."
    return ""


def hash_pin(pin: str, salt: bytes | None = None, iterations: int = PIN_ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt hex>$<digest hex>`` for a PIN (never stored in clear)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode("utf-8"), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    """True when ``pin`` matches a hash made by :func:`hash_pin` (constant-time compare)."""
    try:
        scheme, iterations, salt_hex, digest_hex = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        digest = hashlib.pbkdf2_hmac(
            "sha256", pin.encode("utf-8"), bytes.fromhex(salt_hex), int(iterations)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "staff"


@dataclass
class AppSettings:
    """Everything the app remembers between runs.

    ``camera``: a source spec (``""`` = first camera found, else the demo feed; ``demo``; a camera
    index; a video/image folder path; ``hotfolder:PATH``). ``resolution``: requested camera
    (width, height), None = the camera's default. ``model_path``: ``""`` = the bundled model.
    ``submission``: the target for ``core.submission.make_target``.
    """

    camera: str = ""
    resolution: tuple[int, int] | None = (1280, 720)
    model_path: str = ""
    provider: str = "auto"
    # onnxruntime's memory arena off: slower checks. Off by default since exported models run
    # their trunk patch by patch (small arena); useful for older one-pass models.
    low_memory_inference: bool = False
    auto_capture_staff: bool = False
    auto_capture_kiosk: bool = True
    auto_capture_hold_s: float = 1.5
    kiosk_pin_hash: str = ""  # "" = the documented DEFAULT_KIOSK_PIN
    kiosk_idle_timeout_s: int = 90
    operator: str = field(default_factory=_default_operator)
    show_heat_overlay: bool = True
    submission: dict[str, str] = field(default_factory=lambda: {"kind": "outbox"})
    submission_interval_s: float = 5.0

    @property
    def uses_default_pin(self) -> bool:
        return self.check_kiosk_pin(DEFAULT_KIOSK_PIN)

    def check_kiosk_pin(self, pin: str) -> bool:
        """Does ``pin`` unlock the kiosk? (No hash saved yet means the documented default.)"""
        if not self.kiosk_pin_hash:
            return hmac.compare_digest(pin.encode(), DEFAULT_KIOSK_PIN.encode())
        return verify_pin(pin, self.kiosk_pin_hash)

    def set_kiosk_pin(self, pin: str) -> None:
        problem = kiosk_pin_problem(pin)
        if problem:
            raise ValueError(problem)
        self.kiosk_pin_hash = hash_pin(pin)

    def to_json(self) -> str:
        """What goes into the settings file (no password unless the user chose so)."""
        raw = dataclasses.asdict(self)
        raw["submission"] = submission_for_disk(self.submission)
        return json.dumps(raw, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AppSettings:
        """Known keys with the right types are taken; anything else falls back to the default."""
        defaults = cls()
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in raw:
                continue
            value = raw[f.name]
            default = getattr(defaults, f.name)
            if f.name == "resolution":
                if value is None:
                    values[f.name] = None
                elif (
                    isinstance(value, list | tuple)
                    and len(value) == 2
                    and all(isinstance(v, int) and v > 0 for v in value)
                ):
                    values[f.name] = (int(value[0]), int(value[1]))
            elif f.name == "submission":
                if isinstance(value, dict):
                    values[f.name] = {str(k): str(v) for k, v in value.items()}
            elif isinstance(default, bool):
                if isinstance(value, bool):
                    values[f.name] = value
            elif isinstance(default, int | float) and not isinstance(value, bool):
                if isinstance(value, int | float):
                    values[f.name] = type(default)(value)
            elif isinstance(default, str) and isinstance(value, str):
                values[f.name] = value
        return cls(**values)


PASSWORD_IN_FILE = "password_in_file"


def password_in_file(submission: dict[str, str]) -> bool:
    """Did the user choose to keep the DICOMweb password in the settings file?"""
    return submission.get(PASSWORD_IN_FILE, "").lower() == "true"


def submission_for_disk(submission: dict[str, str]) -> dict[str, str]:
    """The submission settings as written to the file: the password only where the user chose
    the file, the address without credentials."""
    out = dict(submission)
    if not password_in_file(out):
        out.pop("password", None)
    if out.get("url"):
        out["url"] = split_url_credentials(out["url"])[0]
    return out


def _keep_password(submission: dict[str, str]) -> None:
    """Put the DICOMweb password into the OS keyring (unless the user chose the file)."""
    user, password = submission.get("username", ""), submission.get("password", "")
    if not user or not password or password_in_file(submission):
        return
    if not save_password(keyring_account(user, submission.get("url", "")), password):
        logger.info("no usable system keyring: the DICOMweb password is kept for this session only")


def _restore_secrets(settings: AppSettings) -> bool:
    """After loading: credentials out of the address, the password from the keyring, a password
    of an older settings file moved to the keyring. True when the file should be rewritten."""
    sub = settings.submission
    rewrite = False
    url = sub.get("url", "")
    if url:
        clean, user, password = split_url_credentials(url)
        if clean != url:
            logger.warning(
                "the DICOMweb address in the settings contained a user name or password; "
                "it was removed from the address"
            )
            sub["url"] = clean
            if user and not sub.get("username"):
                sub["username"] = user
                if password:
                    sub["password"] = password
            rewrite = True
    user = sub.get("username", "")
    if not user:
        return rewrite
    account = keyring_account(user, sub.get("url", ""))
    if sub.get("password") and PASSWORD_IN_FILE not in sub:
        # written by an older version: into the keyring where there is one; else it stays in
        # the file where it already was (marked so; the settings dialog says it is unencrypted)
        if save_password(account, sub["password"]):
            rewrite = True
        else:
            logger.warning(
                "the settings file holds the DICOMweb password unencrypted and there is no "
                "system keyring to move it to"
            )
            sub[PASSWORD_IN_FILE] = "true"
    elif not sub.get("password") and not password_in_file(sub):
        stored = load_password(account)
        if stored is not None:
            sub["password"] = stored
    return rewrite


@dataclass(frozen=True)
class SettingsChanges:
    """Which parts of the running app a change of settings concerns."""

    source: bool  # camera or resolution
    model: bool  # model file, provider or memory mode
    submission: bool  # the submission target
    auto_capture: bool  # the staff window's auto-capture default

    @classmethod
    def between(cls, old: AppSettings, new: AppSettings) -> SettingsChanges:
        return cls(
            source=(new.camera, new.resolution) != (old.camera, old.resolution),
            model=(new.model_path, new.provider, new.low_memory_inference)
            != (old.model_path, old.provider, old.low_memory_inference),
            submission=new.submission != old.submission,
            auto_capture=(new.auto_capture_staff, new.auto_capture_hold_s)
            != (old.auto_capture_staff, old.auto_capture_hold_s),
        )


def settings_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME)) / SETTINGS_FILE


def load_settings(path: Path | None = None) -> AppSettings:
    """The saved settings, or the defaults when there are none or they cannot be read."""
    path = path or settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AppSettings()
    except OSError as exc:
        logger.warning("Settings %s cannot be read (%s); using defaults", path, exc)
        return AppSettings()
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        aside = path.with_name(path.name + ".damaged")
        logger.warning("Settings %s are damaged (%s); kept as %s, using defaults", path, exc, aside)
        try:
            os.replace(path, aside)
        except OSError:
            logger.warning("could not move the damaged settings aside")
        return AppSettings()
    settings = AppSettings.from_dict(raw)
    if _restore_secrets(settings):
        try:
            save_settings(settings, path)
        except OSError as exc:
            logger.warning("Settings %s could not be rewritten (%s)", path, exc)
    return settings


def save_settings(settings: AppSettings, path: Path | None = None) -> Path:
    """Write atomically (temporary file + rename); the file (0600) and the app's config folder
    (0700) are private to the user. The DICOMweb password goes to the keyring, not the file
    (unless the user chose the file)."""
    path = path or settings_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.parent.name == APP_NAME:  # the app's own folder (not a folder given by a caller)
        os.chmod(path.parent, 0o700)
    _keep_password(settings.submission)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(settings.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
