"""Using a trained run: predict on new images, its figures, the alarm threshold, ONNX export."""
