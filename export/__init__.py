"""Export stage: fuse, ONNX export, simplify, FP16, INT8 Q/DQ, engine build and inspection."""
