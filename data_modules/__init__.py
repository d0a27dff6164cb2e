"""Datasets as LightningDataModules over one base (`data_modules.base`); each registers itself by name."""
from data_modules.base import DATASETS, EditDataModule, EditSample, build_datamodule, collate
from data_modules.synthetic import ShapesDataModule

__all__ = ["DATASETS", "EditDataModule", "EditSample", "ShapesDataModule", "build_datamodule", "collate"]
