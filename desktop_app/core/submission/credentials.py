"""Secrets and server addresses: the DICOMweb password in the OS keyring, credentials kept out of
URLs. No Qt here.

* The password lives in the operating system's keyring (the ``keyring`` package: Windows
  Credential Locker, macOS Keychain, Secret Service / KWallet on Linux). Where no usable keyring
  backend exists (``keyring.backends.fail`` / ``null``, as on a headless machine) the password is
  kept for the running session only, unless the user explicitly chose to store it in the
  settings file (not encrypted): see ``core.settings``.
* A URL is never shown, logged or stored with a ``user:password@`` part: :func:`redact_url` and
  :func:`redact_text` remove it, :func:`split_url_credentials` takes it out of an address.

Nothing here logs a secret or a URL's credentials at any level.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

logger = logging.getLogger(__name__)

KEYRING_SERVICE = "skin-capture-assist DICOMweb"
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@?#]*@")


# --------------------------------------------------------------------------------------------
# URLs


def _netloc_without_userinfo(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port is not None else host


def split_url_credentials(url: str) -> tuple[str, str, str]:
    """``(url without user:password@, user, password)``; user and password "" when absent."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return redact_text(url.strip()), "", ""
    if "@" not in parts.netloc:
        return url.strip(), "", ""
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    clean = urlunsplit(parts._replace(netloc=_netloc_without_userinfo(parts)))
    return clean, user, password


def url_has_credentials(url: str) -> bool:
    """True when ``url`` carries a ``user[:password]@`` part."""
    return split_url_credentials(url)[0] != url.strip()


def redact_url(url: str) -> str:
    """``url`` fit to show, log or store: no ``user:password@``, no query or fragment (they may
    carry tokens)."""
    clean = split_url_credentials(url)[0]
    try:
        parts = urlsplit(clean)
    except ValueError:
        return redact_text(clean)
    return urlunsplit(parts._replace(query="", fragment=""))


def redact_text(text: str) -> str:
    """``text`` (an error message, a log line) with any ``scheme://user:password@`` in it
    reduced to ``scheme://``."""
    return _URL_USERINFO.sub(lambda m: m.group("scheme"), text)


# --------------------------------------------------------------------------------------------
# Keyring


@dataclass(frozen=True)
class SecretStoreStatus:
    """Whether passwords can be kept in the OS keyring here, and what to tell the user."""

    usable: bool
    description: str


def _backend() -> Any:
    try:
        import keyring
    except ImportError:
        return None
    try:
        return keyring.get_keyring()
    except Exception:  # noqa: BLE001 - a broken keyring configuration means "no keyring"
        logger.warning("the system keyring could not be opened")
        return None


def _is_usable(backend: Any) -> bool:
    if backend is None:
        return False
    try:
        from keyring.backends import fail, null
    except ImportError:
        return False
    if isinstance(backend, fail.Keyring | null.Keyring):
        return False
    from keyring.backends.chainer import ChainerBackend

    if isinstance(backend, ChainerBackend):
        return any(_is_usable(b) for b in backend.backends)
    return True


def secret_store_status() -> SecretStoreStatus:
    """Is there a usable OS keyring (not keyring's fail or null backend)?"""
    backend = _backend()
    if _is_usable(backend):
        name = getattr(backend, "name", type(backend).__name__)
        return SecretStoreStatus(True, f"The password is kept in the system keyring ({name}).")
    return SecretStoreStatus(
        False,
        "This computer has no system keyring: the password is kept only until the app closes, "
        "unless you choose to store it in the settings file (not encrypted).",
    )


def keyring_account(username: str, url: str) -> str:
    """The keyring entry name for one user on one server (the URL without credentials)."""
    return f"{username}@{redact_url(url)}"


def save_password(account: str, password: str) -> bool:
    """Store ``password`` in the OS keyring; False (logged, without the secret) when there is no
    usable keyring or it refused."""
    backend = _backend()
    if not _is_usable(backend):
        return False
    try:
        backend.set_password(KEYRING_SERVICE, account, password)
    except Exception as exc:  # noqa: BLE001 - any keyring failure: keep the session copy
        logger.warning("the system keyring refused the password (%s)", type(exc).__name__)
        return False
    return True


def load_password(account: str) -> str | None:
    """The stored password, or None (no keyring, no entry, or the keyring failed)."""
    backend = _backend()
    if not _is_usable(backend):
        return None
    try:
        value = backend.get_password(KEYRING_SERVICE, account)
    except Exception as exc:  # noqa: BLE001
        logger.warning("the system keyring could not be read (%s)", type(exc).__name__)
        return None
    return value if isinstance(value, str) else None


def delete_password(account: str) -> None:
    """Remove a stored password, if there is one (errors are logged and ignored)."""
    backend = _backend()
    if not _is_usable(backend):
        return
    try:
        backend.delete_password(KEYRING_SERVICE, account)
    except Exception as exc:  # noqa: BLE001 - PasswordDeleteError when absent
        logger.debug("no keyring entry removed (%s)", type(exc).__name__)
