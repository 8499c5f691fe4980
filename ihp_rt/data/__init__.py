"""Parsing data sets: readers for the generic folder and the benchmark layouts, synthetic people."""

from ihp_rt.data.folder import FolderDataset, PairDataset, ParsingDataset, Sample
from ihp_rt.data.layouts import CIHPDataset, HelenDataset, LIPDataset, PPPDataset, dataset_for_labels, open_dataset

__all__ = ["CIHPDataset", "FolderDataset", "HelenDataset", "LIPDataset", "PPPDataset", "PairDataset",
           "ParsingDataset", "Sample", "dataset_for_labels", "open_dataset"]
