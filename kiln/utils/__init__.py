"""Utilities with torch.utils' names: `kiln.utils.data` (datasets, samplers, DataLoader)."""
from . import data

__all__ = ["data"]
