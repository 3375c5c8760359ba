"""Loaders for the real datasets in ``../shared/data`` (never committed to this repo)."""

from .paths import DataError, data_root
from .mnist import load_fashion_mnist, load_mnist
from .har import HarWindows, load_har
from .cwru import CwruWindows, load_cwru
from .image_folder import ImageFolder, class_ids, load_image_folder, read_images

__all__ = ["CwruWindows", "DataError", "HarWindows", "ImageFolder", "class_ids", "data_root", "load_cwru",
           "load_fashion_mnist", "load_har", "load_image_folder", "load_mnist", "read_images"]
