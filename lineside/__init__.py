"""lineside: edge deployment toolkit for visual anomaly inspection."""

__version__ = "0.1.0"
