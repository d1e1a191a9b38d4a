"""Data stage: datasets and splits, synthetic degradations, the simulated raters, the build of a
synthetic dataset, the 440 rated photos, reason targets. Imports nothing above it."""
