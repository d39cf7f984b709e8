"""Our NormalBAE against controlnet-aux's NormalBaeDetector on the same (seeded) weights.

EfficientNet-B5 at 512 px takes many seconds per forward on a CPU, so one test covers two photographs:
the reference runs each, ours runs both as one batch (which also checks batching).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affordance.preprocessors.normalbae import NORMALBAE_FILE, NormalBaeNet, normal_bae
from affordance.preprocessors.weights import load_annotator

aux_normalbae = pytest.importorskip("controlnet_aux.normalbae")

PHOTOS = ("astronaut", "coffee")


def _reference_net():
    import types

    from controlnet_aux.normalbae.nets.NNET import NNET

    args = types.SimpleNamespace(
        mode="client", architecture="BN", pretrained="scannet", sampling_ratio=0.4, importance_ratio=0.7
    )
    return NNET(args)


def _sane_batch_norms(net: torch.nn.Module) -> torch.nn.Module:
    """``seeded`` fills every tensor, BatchNorm statistics included, with small noise: give BatchNorms
    unit-ish scales and positive running variances."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.add_(1.0)
                m.running_var.abs_().add_(0.5)
                m.num_batches_tracked.zero_()
    return net


def test_normal_bae_equals_reference(tmp_path, seeded, photo):
    # gain 0.7: activations stay moderate through the 39 residual blocks (at 0.8 they reach 1e7 and float
    # noise decides the normals' directions) while the maps keep structure
    ref_net = _sane_batch_norms(seeded(_reference_net(), 21, gain=0.7))
    # the official container: {'model': state dict saved from DataParallel, keys 'module.<name>'}
    torch.save({"model": {"module." + k: v for k, v in ref_net.state_dict().items()}}, tmp_path / NORMALBAE_FILE)
    ours = load_annotator(tmp_path / NORMALBAE_FILE, NormalBaeNet(), NORMALBAE_FILE)
    ref = aux_normalbae.NormalBaeDetector.from_pretrained(str(tmp_path), filename=NORMALBAE_FILE)

    images = [photo(name) for name in PHOTOS]
    batch = torch.from_numpy(np.stack(images).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    got = (normal_bae(batch, ours, resolution=512).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.int32)
    for name, im, mine in zip(PHOTOS, images, got):
        want = np.asarray(ref(im, detect_resolution=512, image_resolution=512, output_type="np")).astype(np.int32)
        diff = np.abs(want - mine)
        # Same network and weights; float noise (batching, kernel order) can flip a level where the
        # reference truncates to 8 bits.
        assert diff.max() <= 1, f"{name}: max difference {diff.max()} levels"
        assert (diff == 0).mean() >= 0.99, f"{name}: {(diff != 0).mean():.4f} of values differ"
        assert want.std(axis=(0, 1)).min() > 5, f"{name}: the reference map is nearly flat"  # non-trivial hints
