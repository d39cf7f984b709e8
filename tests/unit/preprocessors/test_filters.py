"""The OpenCV-exact filters of preprocessors/filters.py against OpenCV itself."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from affordance.preprocessors.filters import area_resize


@pytest.mark.parametrize("size", [(37, 53), (64, 80), (100, 100), (13, 7), (150, 301), (251, 400), (300, 512), (502, 800)])
def test_area_resize_is_opencv_inter_area(size):
    """Whole and fractional ratios, shrinking and enlarging both axes: OpenCV's INTER_AREA in float32."""
    im = np.random.default_rng(3).random((251, 400, 3), dtype=np.float32)
    h, w = size
    ref = cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)
    got = area_resize(torch.from_numpy(im).permute(2, 0, 1)[None], h, w)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, ref, atol=2e-6)
