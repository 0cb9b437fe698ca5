"""Deterministic synthetic inspection scenes with exact defect masks."""
