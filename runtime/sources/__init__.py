"""Frame sources (OpenCV capture, GStreamer, image-folder replay)."""
