"""Parts of the windows that are only widgets (built here, connected by the window)."""
