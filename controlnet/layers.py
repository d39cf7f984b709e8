"""Building blocks of the SD UNet encoder that a ControlNet copies.

Written from the structure of the LDM UNet (Rombach et al. 2022) and the ControlNet paper (Zhang &
Agrawala 2023); attribute names follow the original checkpoints so state dicts load without renaming.
Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Ops = Any
"""A namespace providing ``Linear``, ``Conv2d``, ``GroupNorm`` and ``LayerNorm`` (default: :mod:`torch.nn`).

A host may pass its own layer classes with the same constructor signatures, e.g. ComfyUI's
``comfy.ops.manual_cast``, so that it can stream or cast weights per layer."""


def default_ops() -> ModuleType:
    """The plain torch layers."""
    return nn


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, cosine half first as in LDM.

    Args:
        timesteps: ``(N,)`` timesteps, any real dtype, e.g. 0..999 for SD.
        dim: embedding width.
        max_period: lowest frequency's period.

    Returns:
        ``(N, dim)`` float32 embedding in ``[-1, 1]`` on the device of ``timesteps``.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepBlock(nn.Module):
    """A module whose forward takes the timestep embedding (and ignores or uses the context).

    The embedding passed down the network is the SiLU-activated one (see :meth:`ResBlock.forward`)."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class Sequence(nn.Sequential):
    """``nn.Sequential`` that passes ``emb`` and ``context`` to the layers that take them."""

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, (TimestepBlock, SpatialTransformer)):
                x = layer(x, emb, context)
            else:
                x = layer(x)
        return x

    def forward_shared(
        self,
        x: torch.Tensor,
        emb: torch.Tensor,
        emb_all: torch.Tensor,
        context: torch.Tensor | None,
        spread: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, bool]:
        """:meth:`forward` with ``x`` holding one row per group of equal rows, until the first text-reading layer.

        Layers before the first transformer block run on those rows (``emb`` is theirs, so it must depend on the
        timestep alone); that block's self-attention too, and ``spread`` then rebuilds the whole batch
        (``(n_shared, ...)`` -> ``(n, ...)``) before its cross-attention; later layers get ``emb_all``.

        Returns:
            The output, and whether it holds the whole batch (``False``: still the shared rows, no layer read the
            text).
        """
        spread_done = False
        for layer in self:
            if spread_done:
                x = layer(x, emb_all, context) if isinstance(layer, (TimestepBlock, SpatialTransformer)) else layer(x)
            elif isinstance(layer, SpatialTransformer) and len(layer.transformer_blocks):
                x = layer(x, None, context, spread)
                spread_done = True
            elif isinstance(layer, (TimestepBlock, SpatialTransformer)):  # depth 0: norm and projections only
                x = layer(x, emb, None)
            else:
                x = layer(x)
        return x, spread_done


class ResBlock(TimestepBlock):
    """Residual block with timestep conditioning (``in_layers``, ``emb_layers``, ``out_layers``).

    Shapes: ``x`` ``(N, C_in, H, W)``, ``emb`` ``(N, E)`` (already through SiLU) -> ``(N, C_out, H, W)``.
    ``emb_layers`` is ``SiLU, Linear`` as in the checkpoints; its SiLU is shared by all blocks of a network.
    """

    def __init__(self, channels: int, emb_channels: int, out_channels: int, ops: Ops = nn) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(
            ops.GroupNorm(32, channels), nn.SiLU(), ops.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), ops.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            ops.GroupNorm(32, out_channels),
            nn.SiLU(),
            nn.Dropout(0.0),
            ops.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.identity_skip = out_channels == channels
        self.skip_connection: nn.Module = nn.Identity() if self.identity_skip else ops.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``emb``: the timestep embedding **after** its SiLU (the network applies it once for all blocks).

        The parameter-free layers (SiLU, dropout at 0, the containers) are applied directly: the same
        values as calling the ``nn.Sequential``s, with fewer Python calls per step. The layers that hold
        weights are still called as modules, so a host's layer classes (casting, streaming) keep working.
        """
        h = self.in_layers[2](F.silu(self.in_layers[0](x)))
        h = h + self.emb_layers[1](emb).to(h.dtype)[:, :, None, None]
        h = self.out_layers[3](F.silu(self.out_layers[0](h)))
        return (x if self.identity_skip else self.skip_connection(x)) + h


class Downsample(nn.Module):
    """Stride-2 3x3 convolution (key ``op``): ``(N, C, H, W)`` -> ``(N, C, ceil(H/2), ceil(W/2))``."""

    def __init__(self, channels: int, ops: Ops = nn) -> None:
        super().__init__()
        self.op = ops.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Attention(nn.Module):
    """Multi-head attention with bias-free q/k/v projections (``to_q``, ``to_k``, ``to_v``, ``to_out.0``)."""

    def __init__(self, query_dim: int, context_dim: int | None, heads: int, dim_head: int, ops: Ops = nn) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = ops.Linear(query_dim, inner, bias=False)
        self.to_k = ops.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = ops.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.Sequential(ops.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(N, L, D)``, ``context`` ``(N, S, Dc)`` or ``None`` (self-attention) -> ``(N, L, D)``."""
        ctx = x if context is None else context
        n = x.shape[0]
        q, k, v = (
            t.view(n, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)
            for t in (self.to_q(x), self.to_k(ctx), self.to_v(ctx))
        )
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](out.transpose(1, 2).reshape(n, -1, q.shape[1] * q.shape[-1]))  # [1] is dropout at 0


class GEGLU(nn.Module):
    """Gated GELU projection (key ``proj``): ``(..., D)`` -> ``(..., inner)``."""

    def __init__(self, dim: int, inner: int, ops: Ops = nn) -> None:
        super().__init__()
        self.proj = ops.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Without autograd the gate is applied in place in the projection's output: the result is a view of it
        (rows strided ``2 * inner``) and no further activation of that size is made (the same values)."""
        h, gate = self.proj(x).chunk(2, dim=-1)
        if torch.is_grad_enabled() and h.requires_grad:  # autograd keeps gelu's and mul's inputs
            return h * F.gelu(gate)
        return h.mul_(torch.ops.aten.gelu_(gate))


class FeedForward(nn.Module):
    """GEGLU feed-forward with 4x expansion (keys ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, ops: Ops = nn) -> None:
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, 4 * dim, ops), nn.Dropout(0.0), ops.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` -> ``(..., D)``; ``net[1]`` is dropout at 0 and is not called."""
        h = self.net[0](x)
        # 2-D so that the output layer is one matmul with bias also for GEGLU's strided in-place result
        out = self.net[2](h.flatten(0, -2))
        return out.view(*h.shape[:-1], out.shape[-1])


class BasicTransformerBlock(nn.Module):
    """Self-attention, cross-attention and feed-forward, each pre-normed and residual."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, ops: Ops = nn) -> None:
        super().__init__()
        self.attn1 = Attention(dim, None, heads, dim_head, ops)
        self.ff = FeedForward(dim, ops)
        self.attn2 = Attention(dim, context_dim, heads, dim_head, ops)
        self.norm1 = ops.LayerNorm(dim)
        self.norm2 = ops.LayerNorm(dim)
        self.norm3 = ops.LayerNorm(dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None,
        spread: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``x`` ``(N, L, D)``, ``context`` ``(N', S, Dc)`` -> ``(N', L, D)``.

        ``spread``: ``x`` holds one row per group of equal rows (``N < N'``); the self-attention runs on those and
        ``spread`` rebuilds all ``N'`` rows before the cross-attention, the first layer that reads the text.
        """
        x = x + self.attn1(self.norm1(x))
        if spread is not None:
            x = spread(x)
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Image-to-sequence transformer with 1x1-conv (SD1) or linear (SD2/SDXL) projections.

    Shapes: ``x`` ``(N, C, H, W)``, ``context`` ``(N, S, context_dim)`` -> ``(N, C, H, W)``.
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        depth: int,
        context_dim: int,
        use_linear: bool,
        ops: Ops = nn,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.use_linear = use_linear
        self.norm = ops.GroupNorm(32, channels, eps=1e-6)
        self.proj_in: nn.Module = ops.Linear(channels, inner) if use_linear else ops.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, dim_head, context_dim, ops) for _ in range(depth)
        )
        self.proj_out: nn.Module = ops.Linear(inner, channels) if use_linear else ops.Conv2d(inner, channels, 1)

    def forward(
        self,
        x: torch.Tensor,
        emb: torch.Tensor | None,
        context: torch.Tensor | None,
        spread: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``spread``: ``x`` holds one row per group of equal rows; the first block rebuilds the whole batch after its
        self-attention (:meth:`BasicTransformerBlock.forward`), and so is the input added back at the end."""
        x_in = x if spread is None else spread(x)
        n, c, h, w = x_in.shape
        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        x = x.flatten(2).transpose(1, 2)  # (N, H*W, inner)
        if self.use_linear:
            x = self.proj_in(x)
        for k, block in enumerate(self.transformer_blocks):
            x = block(x, context, spread if k == 0 else None)
        if self.use_linear:
            x = self.proj_out(x)
        x = x.transpose(1, 2).reshape(n, -1, h, w)
        if not self.use_linear:
            x = self.proj_out(x)
        return x + x_in


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` in place and return it (the paper's "zero convolution").

    Parameters on the meta device (a model built before its weights are assigned) are left alone.
    """
    for p in module.parameters():
        if p.device.type != "meta":
            nn.init.zeros_(p)
    return module


def sdxl_label(pooled: torch.Tensor, time_ids: torch.Tensor, time_dim: int = 256) -> torch.Tensor:
    """SDXL's label vector ``y``: pooled text embedding and embedded size/crop conditioning.

    Args:
        pooled: ``(N, 1280)`` pooled output of the second text encoder.
        time_ids: ``(N, 6)`` original height/width, crop top/left, target height/width.
        time_dim: width of each of the 6 embeddings (256 for SDXL).

    Returns:
        ``(N, 1280 + 6 * time_dim)`` (2816 for SDXL) in ``pooled``'s dtype.
    """
    emb = timestep_embedding(time_ids.reshape(-1), time_dim).reshape(time_ids.shape[0], -1)
    return torch.cat([pooled, emb.to(pooled.dtype)], dim=1)
