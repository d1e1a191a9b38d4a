"""Training, evaluation and ONNX export of the patch-VGG16 MIL ordinal quality model."""
