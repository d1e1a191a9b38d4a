#!/usr/bin/env bash
# Installs everything the test suite needs (Debian packages when run as root, Python packages)
# and runs it. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    # Qt (PySide6) headless and under Xvfb
    libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0
    libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0
    libxcb-render-util0 libxcb-image0 xvfb
    # DICOMweb server for the submission tests
    orthanc orthanc-dicomweb
    # dciodvfy: checks the DICOM objects the app builds (tests/test_dicom_content.py)
    dicom3tools
)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
fi

# A virtual environment of the project's own (.venv), so that this works where the system
# Python refuses pip installs (Debian/Ubuntu "externally managed"); PYTHON=... overrides it.
if [ -z "${PYTHON:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
        if ! python3 -m venv .venv 2>/dev/null; then
            rm -rf .venv
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                apt-get update -qq
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
            fi
            python3 -m venv .venv
        fi
    fi
    PYTHON=.venv/bin/python
    export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"
fi
"$PYTHON" -m pip install -q --disable-pip-version-check --upgrade pip
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[dev,train,dicom]"

export QT_QPA_PLATFORM=offscreen
"$PYTHON" -m ruff check desktop_app model_export tests
"$PYTHON" -m mypy
lint-imports
"$PYTHON" -m pytest "$@"
