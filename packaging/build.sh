#!/usr/bin/env bash
# Builds the one-folder application into dist/skin-capture (Linux; see packaging/README.md for
# Windows and macOS). Usage: bash packaging/build.sh [DISTDIR] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=${1:-dist}
WORK=${2:-build/pyinstaller}
# The interpreter whose packages go into the bundle (PYTHON=... picks one, e.g. a venv's)
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q --disable-pip-version-check "pyinstaller>=6.5"
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$DIST" --workpath "$WORK" packaging/skin_capture.spec
install -m 0644 packaging/skin-capture.desktop "$DIST/skin-capture/skin-capture.desktop"
install -m 0644 packaging/skin-capture.png "$DIST/skin-capture/skin-capture.png"
du -sh "$DIST/skin-capture"
