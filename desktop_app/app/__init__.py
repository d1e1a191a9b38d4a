"""The composition root: what the app is made of (``services``) and how it runs (``run``).

``services`` is Qt-free: settings, the capture store (behind the data-home lock), the submission
queue, the frame source and the one model-path resolution. ``run`` builds the Qt application,
creates the staff window or the kiosk with those services, and turns signals into a clean exit.
"""
