"""Hint converters: polarity, channel order, normal-map axes."""

from __future__ import annotations

import pytest
import torch

from affordance.preprocessors import ParameterError, flip_normal_axes, invert, swap_rgb_bgr


def test_invert_is_an_involution():
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(invert(invert(x)), x)
    assert torch.equal(invert(torch.zeros(1, 3, 2, 2)), torch.ones(1, 3, 2, 2))


def test_swap_rgb_bgr():
    x = torch.stack([torch.full((4, 4), v) for v in (0.1, 0.2, 0.3)])[None]
    assert swap_rgb_bgr(x)[0, :, 0, 0].tolist() == pytest.approx([0.3, 0.2, 0.1])
    with pytest.raises(ParameterError, match="needs 3 channels, got 1"):
        swap_rgb_bgr(torch.rand(1, 1, 4, 4))


def test_flip_normal_y_converts_opengl_to_directx():
    up = torch.tensor([0.5, 1.0, 0.5]).view(1, 3, 1, 1)  # a normal pointing up (+Y) in OpenGL encoding
    down = flip_normal_axes(up, flip_y=True)
    assert down.flatten().tolist() == [0.5, 0.0, 0.5]
    assert torch.equal(flip_normal_axes(down, flip_y=True), up)
    assert torch.equal(flip_normal_axes(up), up)
    assert flip_normal_axes(up, flip_x=True, flip_z=True).flatten().tolist() == [0.5, 1.0, 0.5]


def test_normal_axes_flip_refuses_hints_that_are_not_rgb():
    with pytest.raises(ParameterError, match="a normal map has 3 channels, got 4"):
        flip_normal_axes(torch.rand(1, 4, 8, 8), flip_y=True)


def test_no_flag_flips_no_axis():
    """On a normal whose channels are all off 0.5 (0.5, 1.0, 0.5 is its own X and Z flip)."""
    n = torch.tensor([0.2, 0.7, 0.9]).view(1, 3, 1, 1)
    assert torch.equal(flip_normal_axes(n), n)
    torch.testing.assert_close(flip_normal_axes(n, flip_x=True).flatten(), torch.tensor([0.8, 0.7, 0.9]))
    torch.testing.assert_close(flip_normal_axes(n, flip_z=True).flatten(), torch.tensor([0.2, 0.7, 0.1]))
