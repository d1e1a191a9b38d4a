"""Export stage: the ONNX export of a run (fp32 and int8), its checks and the model card."""
