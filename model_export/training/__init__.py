"""Training stage: training the head on cached descriptors, distillation to the int8 trunk,
the fine-tune on the rated photos."""
