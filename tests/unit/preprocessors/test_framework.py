"""The detection-resolution framework shared by the preprocessors."""

from __future__ import annotations

import torch


def test_thin_binary_hints_survive_detection_above_the_input_size():
    """A 1-px Canny line found at 4x the input's size must not vanish when the hint is shrunk back."""
    from affordance.preprocessors import canny

    x = torch.zeros(1, 3, 96, 128)
    x[:, :, 24:72, 32:96] = 1.0
    native = canny(x, 100, 200, 96)[0, 0] > 0.5
    for resolution in (256, 512):
        hint = canny(x, 100, 200, resolution)[0, 0] > 0.5
        assert hint.any(), resolution
        # every edge pixel lies on the square's outline (within a pixel), and the outline is closed
        near = torch.zeros_like(hint)
        near[22:74, 30:98] = True
        near[26:70, 34:94] = False
        assert not (hint & ~near).any()
        assert hint[22:27, 40:88].any(dim=0).all() and hint[69:74, 40:88].any(dim=0).all()
        assert hint[30:66, 30:35].any(dim=1).all() and hint[30:66, 93:98].any(dim=1).all()
    assert native.any()
