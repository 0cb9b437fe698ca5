"""Inference backends with one interface (ONNX Runtime, TensorRT)."""
