"""Parsing data sets: readers, label mappings, augmentation, synthetic people."""

from ihp_rt.data.folder import FolderDataset, ParsingDataset, Sample

__all__ = ["FolderDataset", "ParsingDataset", "Sample"]
