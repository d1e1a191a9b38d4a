"""Top-level windows: the staff window, the patient kiosk and the settings dialog (layer 1 of 3:
windows > views > workers; checked by import-linter)."""
