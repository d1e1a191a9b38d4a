"""Entry script for the frozen application (PyInstaller): same CLI as ``skin-capture``."""

from desktop_app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
