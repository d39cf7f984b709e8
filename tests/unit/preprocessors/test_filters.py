"""The OpenCV-exact filters of preprocessors/filters.py against OpenCV itself."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from affordance.preprocessors.filters import area_resize, gaussian_blur, gaussian_kernel1d, pyr_up, sobel3


@pytest.mark.parametrize("size", [(37, 53), (64, 80), (100, 100), (13, 7), (150, 301), (251, 400), (300, 512), (502, 800)])
def test_area_resize_is_opencv_inter_area(size):
    """Whole and fractional ratios, shrinking and enlarging both axes: OpenCV's INTER_AREA in float32."""
    im = np.random.default_rng(3).random((251, 400, 3), dtype=np.float32)
    h, w = size
    ref = cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)
    got = area_resize(torch.from_numpy(im).permute(2, 0, 1)[None], h, w)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, ref, atol=2e-6)


def _planes(im: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` -> ``(1, C, H, W)``."""
    return torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None]


@pytest.mark.parametrize("sigma", [0.5, 0.6, 1.4, 3.0, 6.1, 10.0])
def test_gaussian_blur_is_opencv_gaussian_blur(sigma):
    """Kernel size ``round(8 sigma + 1) | 1`` (0.6 -> 7 taps, 6.1 -> 51) and reflect-101 borders; sigma 10 (81 taps)
    takes the long-kernel path."""
    im = np.random.default_rng(5).random((40, 150, 2), dtype=np.float32) * 255
    ref = cv2.GaussianBlur(im, (0, 0), sigma)
    assert gaussian_kernel1d(sigma).numel() == cv2.getGaussianKernel(int(round(sigma * 8 + 1)) | 1, sigma).size
    got = gaussian_blur(_planes(im), sigma)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, ref, atol=2e-3)


def test_sobel3_is_opencv_sobel_with_replicated_borders():
    im = np.random.default_rng(6).integers(0, 256, (23, 31)).astype(np.float32)
    dx, dy = sobel3(torch.from_numpy(im)[None, None])
    np.testing.assert_array_equal(dx[0, 0].numpy(), cv2.Sobel(im, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE))
    np.testing.assert_array_equal(dy[0, 0].numpy(), cv2.Sobel(im, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE))


@pytest.mark.parametrize("size", [(5, 7), (16, 16), (31, 2)])
def test_pyr_up_is_opencv_pyr_up(size):
    im = np.random.default_rng(7).random((*size, 3), dtype=np.float32)
    got = pyr_up(_planes(im))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, cv2.pyrUp(im), atol=2e-6)


@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (1, 1)])
def test_gaussian_blur_of_a_one_pixel_side_is_opencvs(shape):
    im = np.random.default_rng(8).random((*shape, 1), dtype=np.float32)
    ref = cv2.GaussianBlur(im, (0, 0), 1.4).reshape(shape)
    got = gaussian_blur(torch.from_numpy(im).permute(2, 0, 1)[None], 1.4)[0, 0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-6)
