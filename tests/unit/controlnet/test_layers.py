"""Layer-level behaviour that the network tests do not pin down: the feed-forward's in-place gate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from affordance.controlnet.layers import FeedForward


def _ff(seed: int = 0) -> FeedForward:
    torch.manual_seed(seed)
    return FeedForward(16)


def _reference(ff: FeedForward, x: torch.Tensor) -> torch.Tensor:
    """GEGLU feed-forward written out: proj, split, x * gelu(gate), output layer."""
    h, gate = F.linear(x, ff.net[0].proj.weight, ff.net[0].proj.bias).chunk(2, dim=-1)
    return F.linear(h * F.gelu(gate), ff.net[2].weight, ff.net[2].bias)


def test_inference_gate_is_in_place_in_the_projection_output():
    ff = _ff()
    x = torch.randn(2, 5, 16)
    seen = {}
    ff.net[0].proj.register_forward_hook(lambda m, a, out: seen.setdefault("proj", out))
    ff.net[0].register_forward_hook(lambda m, a, out: seen.setdefault("gated", out))
    with torch.no_grad():
        out = ff(x)
        ref = _reference(ff, x)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert out.shape == (2, 5, 16)
    # the gated activation lives in the projection's buffer: no second activation of that size
    assert seen["gated"].untyped_storage().data_ptr() == seen["proj"].untyped_storage().data_ptr()


def test_training_keeps_the_out_of_place_gate_and_its_gradients():
    ff = _ff(1)
    x = torch.randn(2, 5, 16, requires_grad=True)
    out = ff(x)
    out.square().sum().backward()
    grads = [p.grad.clone() for p in ff.parameters()] + [x.grad.clone()]
    ff.zero_grad()
    x2 = x.detach().clone().requires_grad_(True)
    _reference(ff, x2).square().sum().backward()
    for a, b in zip(grads, [p.grad for p in ff.parameters()] + [x2.grad]):
        torch.testing.assert_close(a, b)


def test_grad_enabled_but_frozen_weights_may_gate_in_place():
    """A frozen network under grad mode (e.g. a host that forgot no_grad) has nothing to differentiate."""
    ff = _ff(2).requires_grad_(False)
    x = torch.randn(3, 4, 16)
    torch.testing.assert_close(ff(x), _reference(ff, x), rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_in_place_gate_on_a_gpu(dtype):
    """On CUDA the output layer reads the strided gated activation: same results as written out, within dtype."""
    ff = _ff(3).to("cuda", dtype)
    x = torch.randn(2, 64, 16, device="cuda", dtype=dtype)
    with torch.no_grad():
        out = ff(x)
        ref = _reference(ff, x)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3}[dtype]
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dim", [32, 33])
def test_timestep_embedding_is_cosines_then_sines_padded_to_an_odd_width(dim):
    """LDM's embedding: ``half = dim // 2`` frequencies, cosines then sines, a zero column for an odd width."""
    import math

    from affordance.controlnet.layers import timestep_embedding

    t = torch.tensor([0.0, 10.0, 999.0])
    emb = timestep_embedding(t, dim)
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None] * freqs[None]
    assert emb.shape == (3, dim) and emb.dtype == torch.float32
    torch.testing.assert_close(emb[:, :half], torch.cos(args))
    torch.testing.assert_close(emb[:, half : 2 * half], torch.sin(args))
    if dim % 2:
        assert torch.equal(emb[:, -1], torch.zeros(3))
