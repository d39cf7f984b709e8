"""Real photographs from scikit-image (a test dependency) as uint8 arrays and as tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

skimage_data = pytest.importorskip("skimage.data")

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    """uint8 HWC -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def as_levels(arr: np.ndarray) -> torch.Tensor:
    """uint8 HWC -> (1, 3, H, W) float holding 0..255."""
    return torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1)[None]


@pytest.fixture(params=PHOTOS)
def photo(request) -> np.ndarray:
    return getattr(skimage_data, request.param)()


@pytest.fixture
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture
def tensor():
    return as_tensor


@pytest.fixture
def levels():
    return as_levels
