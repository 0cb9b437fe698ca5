"""Data set readers (MVTec-AD, VisA, plain folders) and image loading."""
