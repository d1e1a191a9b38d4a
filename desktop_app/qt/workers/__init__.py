"""The worker threads (camera, inference, submission) and the GUI-thread capture session that owns
them and turns their signals into what the views show (layer 3 of 3: windows > views > workers)."""
