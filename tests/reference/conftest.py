"""Parity with the original annotator implementations (the ``controlnet-aux`` package, a test-only extra).

These tests run where ``controlnet_aux`` imports (it needs torchvision, hence torch 2.14.1 +
torchvision 0.29.1 on this workplace: the README's test command builds that second environment,
``.venv-ref``). Elsewhere they skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

controlnet_aux = pytest.importorskip("controlnet_aux", reason="controlnet-aux (reference extra) is not installed")
skimage_data = pytest.importorskip("skimage.data")


def seeded_(module: torch.nn.Module, seed: int, gain: float = 1.0) -> torch.nn.Module:
    """Seeded He-scaled weights (std = gain * sqrt(2 / fan_in)), small biases: activations stay in range,
    so maps have structure. The same seed gives the same values for any module with the same keys."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.state_dict(keep_vars=True).items()):
            fan_in = p[0].numel() if p.ndim > 1 else 0
            std = gain * (2.0 / fan_in) ** 0.5 if fan_in else 0.05
            p.copy_(std * torch.randn(p.shape, generator=g))
    return module


@pytest.fixture
def seeded():
    return seeded_


def crop_512(name: str) -> np.ndarray:
    """A real photograph scaled and cropped to 512 x 512 (a multiple of 64: no resizing on either side)."""
    im = getattr(skimage_data, name)()
    h, w = im.shape[:2]
    if min(h, w) < 512:
        import cv2

        k = 512 / min(h, w)
        im = cv2.resize(im, (round(w * k), round(h * k)), interpolation=cv2.INTER_CUBIC)
        h, w = im.shape[:2]
    top, left = (h - 512) // 2, (w - 512) // 2
    return np.ascontiguousarray(im[top : top + 512, left : left + 512])


@pytest.fixture(params=["astronaut", "coffee", "chelsea"])
def photo_512(request) -> np.ndarray:
    return crop_512(request.param)


@pytest.fixture
def photo():
    return crop_512


@pytest.fixture
def official_file():
    """``get(name)``: the path of the real official annotator file ``name`` in ``AFFORDANCE_ANNOTATORS``, or a skip.

    CI has no official files; on a machine with them these parity tests also run on the real weights.
    """
    from affordance.preprocessors.weights import ANNOTATOR_FILES, sha256_of

    def get(name: str) -> Path:
        folder = os.environ.get("AFFORDANCE_ANNOTATORS")
        if not folder or not (Path(folder) / name).is_file():
            pytest.skip(f"the official {name} is not here (set AFFORDANCE_ANNOTATORS to a folder holding it)")
        path = Path(folder) / name
        assert sha256_of(path) == ANNOTATOR_FILES[name].sha256, f"{path} is not the published {name}"
        return path

    return get
