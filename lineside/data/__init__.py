"""Data set readers (MVTec-AD, VisA, plain folders) and image loading.

ds = open_dataset("data/", layout="auto")          # mvtec | visa | folder
for s in ds.select(split="test", category="screw"):
    image, mask = s.load()                         # (H, W, 3) uint8 BGR, (H, W) bool
"""

from lineside.data.dataset import LAYOUTS, DataSet, open_dataset
from lineside.data.images import load_image, load_mask
from lineside.data.sample import GOOD, Sample

__all__ = ["GOOD", "LAYOUTS", "DataSet", "Sample", "load_image", "load_mask", "open_dataset"]
