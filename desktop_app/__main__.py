from desktop_app.cli import entry

raise SystemExit(entry())
