"""NormalBAE surface normals (ControlNet 1.1 ``normalbae``), with the official ``scannet.pt``.

The network (:class:`~.model.NormalBaeNet`) sees the 8-bit RGB image scaled to ``[0, 1]`` and
normalised with ImageNet's mean and std; its full-resolution prediction's unit normal ``n`` (channels
x, y, z in that order, no flips) is encoded as ``(n + 1) / 2`` in RGB and truncated to 8 bits, as
ControlNet 1.1's annotator does.
"""

from __future__ import annotations

import torch

from ..base import at_resolution, check_image, check_resolution, to_uint8_levels
from .model import NormalBaeNet

__all__ = ["NORMALBAE_FILE", "NormalBaeNet", "normal_bae", "normal_bae_map"]

NORMALBAE_FILE = "scannet.pt"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normal_bae_map(net: torch.nn.Module, levels: torch.Tensor) -> torch.Tensor:
    """Normal map of ``(B, 3, H, W)`` RGB levels ``0..255`` (``H``, ``W`` multiples of 32).

    Runs on the network's device and dtype. Returns ``(B, 3, H, W)`` in ``[0, 1]`` on 8-bit levels
    (``floor(255 * clip((n + 1) / 2, 0, 1)) / 255``), in ``levels``' dtype and device.
    """
    param = next(net.parameters())
    x = levels.to(device=param.device, dtype=torch.float32) / 255.0
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        normal = net(((x - mean) / std).to(param.dtype))[-1][:, :3].float()
    normal = ((normal + 1.0) * 0.5).clamp(0, 1)
    return ((normal * 255.0).clamp(0, 255).floor() / 255.0).to(device=levels.device, dtype=levels.dtype)


def normal_bae(image: torch.Tensor, net: NormalBaeNet, resolution: int = 512) -> torch.Tensor:
    """Surface normals for the ``normalbae`` ControlNet (ControlNet 1.1's NormalBAE annotator).

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]``, any device.
        net: a loaded :class:`NormalBaeNet` (``scannet.pt``; any device and dtype, the batch runs there).
        resolution: detection resolution (short side); the image is padded to a multiple of 64.

    Returns:
        ``(B, 3, H, W)`` float in ``[0, 1]`` at the input's size: R, G, B = ``(x + 1) / 2``,
        ``(y + 1) / 2``, ``(z + 1) / 2`` of the predicted unit normal, 8-bit levels at the detection size.
    """
    image = check_image(image)
    return at_resolution(image, check_resolution(resolution), lambda x: normal_bae_map(net, to_uint8_levels(x)))
