"""Model stage: the VGG16 trunk and the quality head, losses, the descriptor cache and the
streamed (trunk | head) ONNX graph surgery. Imports nothing from the stages above it."""
