"""Qt-free core: model contract, inference, gating, storage and frame sources."""
