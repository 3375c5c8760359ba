"""Shared fixtures of the experiment tests."""

from __future__ import annotations

import pytest

import tinycl_nodes.datasets as datasets


@pytest.fixture
def mnist_splits_read(monkeypatch) -> list[str]:
    """The MNIST splits read while the test runs (selection must read only ``train``)."""
    seen: list[str] = []
    real = datasets.load_mnist

    def spy(split="train", data=None, verify=True):
        seen.append(split)
        return real(split, data, verify)

    monkeypatch.setattr(datasets, "load_mnist", spy)
    return seen
