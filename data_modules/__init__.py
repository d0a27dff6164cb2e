"""Datasets as LightningDataModules over one base (`data_modules.base`); each registers itself by name."""
from data_modules.base import DATASETS, EditDataModule, EditSample, collate
from data_modules.cars import CarsDataModule
from data_modules.celebahq import CelebAHQDataModule
from data_modules.coco import COCODataModule
from data_modules.cub import CUBDataModule
from data_modules.deepfashion import DeepFashionDataModule
from data_modules.flowers import FlowersDataModule
from data_modules.registry import build_datamodule
from data_modules.synthetic import ShapesDataModule
from data_modules.triplets import TripletsDataModule

__all__ = ["DATASETS", "CUBDataModule", "CarsDataModule", "CelebAHQDataModule", "COCODataModule",
           "DeepFashionDataModule", "EditDataModule", "EditSample", "FlowersDataModule", "ShapesDataModule",
           "TripletsDataModule", "build_datamodule", "collate"]
