"""Loaders for the real datasets in ``../shared/data`` (never committed to this repo)."""

from .paths import DataError, data_root
from .mnist import load_mnist

__all__ = ["DataError", "data_root", "load_mnist"]
