"""Views: widgets that render core state (live view, heat map, Review gallery, patient panel, PIN
pad...), built and connected by the windows (layer 2 of 3: windows > views > workers)."""
