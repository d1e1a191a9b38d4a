"""Qt (PySide6) user interface: windows, widgets and workers."""
