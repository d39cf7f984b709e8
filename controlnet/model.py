"""Our host-free ControlNet network for SD1.x, SD2.x and SDXL.

Structure (Zhang & Agrawala 2023): a hint encoder of 8 convolutions (x8 downsampling) whose output is
added after the first input block of a trainable copy of the UNet encoder; every input block and the
middle block feed a zero-initialised 1x1 convolution whose output is one residual.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence as Seq
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .config import ControlNetConfig
from .errors import ConfigError, HintError, InputError
from .layers import Downsample, Ops, ResBlock, Sequence, SpatialTransformer, timestep_embedding, zero_module
from .residuals import ControlResiduals
from .rows import check_shared, repeat_rows, shared_layout, take_rows

HINT_DOWNSCALE = 8
HINT_ENCODE_ROWS = 16
"""Hints encoded at a time: a video's batch goes through the hint encoder in slices of this many images."""


def _hint_block(hint_channels: int, model_channels: int, ops: Ops) -> Sequence:
    """Convs at indices 0, 2, ..., 14 (SiLU between): hint_ch->16->16->32/2->32->96/2->96->256/2->model."""
    chans = [(hint_channels, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 96, 2), (96, 96, 1), (96, 256, 2)]
    layers: list[nn.Module] = []
    for cin, cout, stride in chans:
        layers += [ops.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.SiLU()]
    layers.append(zero_module(ops.Conv2d(256, model_channels, 3, padding=1)))
    return Sequence(*layers)


class ControlNet(nn.Module):
    """ControlNet for SD-family UNets; parameter names match the original checkpoints.

    Construct from a :class:`ControlNetConfig` (see :func:`controlnet.config.config_from_state_dict`).
    A fresh model has zero convs at zero, so it returns all-zero residuals, as the paper prescribes.

    Args:
        config: the architecture.
        ops: layer classes (``Linear``, ``Conv2d``, ``GroupNorm``, ``LayerNorm``); default :mod:`torch.nn`.
            A host passes its own to stream or cast weights per layer.

    Attributes:
        compute_dtype: dtype the forward computes in; ``None`` means the parameters' dtype. A host that
            stores weights in one dtype and casts them per layer sets this.
    """

    def __init__(self, config: ControlNetConfig, ops: Ops = None) -> None:
        super().__init__()
        ops = ops if ops is not None else nn
        self.config = config
        self.compute_dtype: torch.dtype | None = None
        mc = config.model_channels
        emb_dim = mc * 4
        self.time_embed = nn.Sequential(ops.Linear(mc, emb_dim), nn.SiLU(), ops.Linear(emb_dim, emb_dim))
        if config.adm_in_channels is not None:
            self.label_emb = nn.Sequential(
                nn.Sequential(ops.Linear(config.adm_in_channels, emb_dim), nn.SiLU(), ops.Linear(emb_dim, emb_dim))
            )
        self.input_hint_block = _hint_block(config.hint_channels, mc, ops)

        def heads_for(ch: int) -> tuple[int, int]:
            if config.num_head_channels == -1:
                heads, dim_head = config.num_heads, ch // config.num_heads
            else:
                heads, dim_head = ch // config.num_head_channels, config.num_head_channels
            if heads < 1 or heads * dim_head != ch:
                raise ConfigError(
                    f"{ch} attention channels cannot be split into heads (num_heads={config.num_heads}, "
                    f"num_head_channels={config.num_head_channels})."
                )
            return heads, dim_head

        def transformer(ch: int, depth: int) -> SpatialTransformer:
            heads, dim_head = heads_for(ch)
            return SpatialTransformer(
                ch, heads, dim_head, depth, config.context_dim, config.use_linear_in_transformer, ops
            )

        def zero_conv(ch: int) -> Sequence:
            return Sequence(zero_module(ops.Conv2d(ch, ch, 1)))

        blocks: list[Sequence] = [Sequence(ops.Conv2d(config.in_channels, mc, 3, padding=1))]
        zero_convs: list[Sequence] = [zero_conv(mc)]
        ch = mc
        block = 0
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks[level]):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, mult * mc, ops)]
                ch = mult * mc
                if config.has_attention(block):  # depth 0 possible: norm and projections only
                    layers.append(transformer(ch, config.transformer_depth[block]))
                block += 1
                blocks.append(Sequence(*layers))
                zero_convs.append(zero_conv(ch))
            if level != len(config.channel_mult) - 1:
                blocks.append(Sequence(Downsample(ch, ops)))
                zero_convs.append(zero_conv(ch))
        self.input_blocks = nn.ModuleList(blocks)
        self.zero_convs = nn.ModuleList(zero_convs)
        middle: list[nn.Module] = [ResBlock(ch, emb_dim, ch, ops)]
        if config.has_middle_attention:
            middle.append(transformer(ch, config.transformer_depth_middle))
        if config.middle_resblocks == 2:
            middle.append(ResBlock(ch, emb_dim, ch, ops))
        self.middle_block = Sequence(*middle)
        self.middle_block_out = zero_conv(ch)

    @staticmethod
    def _mlp(mlp: nn.Sequential, v: torch.Tensor) -> torch.Tensor:
        """``Linear, SiLU, Linear`` applied without the container's call (same values, fewer Python calls)."""
        return mlp[2](F.silu(mlp[0](v)))

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the forward computes in: ``compute_dtype`` if set, else the parameters' dtype."""
        return self.compute_dtype or cast(torch.Tensor, self.time_embed[0].weight).dtype

    def encode_hint(self, hint: torch.Tensor) -> torch.Tensor:
        """Run the hint encoder once; the result can be reused for every sampling step.

        A batch of more than :data:`HINT_ENCODE_ROWS` images (a video's hints) is encoded that many at a time
        into the output, so the encoder's full-resolution activations never exist for the whole batch at once.

        Args:
            hint: ``(N or 1, hint_channels, 8h, 8w)`` float, usually in ``[0, 1]``.

        Returns:
            ``(N or 1, model_channels, h, w)`` in the model's dtype.
        """
        self._check_hint(hint)
        n = hint.shape[0]
        if n <= HINT_ENCODE_ROWS:
            return self.input_hint_block(hint.to(self.dtype), None, None)
        first = self.input_hint_block(hint[:HINT_ENCODE_ROWS].to(self.dtype), None, None)
        out = first.new_empty((n, *first.shape[1:]))
        out[:HINT_ENCODE_ROWS] = first
        del first
        for start in range(HINT_ENCODE_ROWS, n, HINT_ENCODE_ROWS):
            stop = min(start + HINT_ENCODE_ROWS, n)
            out[start:stop] = self.input_hint_block(hint[start:stop].to(self.dtype), None, None)
        return out

    def _check_hint(self, hint: torch.Tensor) -> None:
        cfg = self.config
        if hint.ndim != 4 or hint.shape[1] != cfg.hint_channels:
            raise HintError(
                f"the ControlNet expects a hint of shape (N, {cfg.hint_channels}, H, W), got {tuple(hint.shape)}. "
                + (
                    "Convert the image to RGB (3 channels) first."
                    if cfg.hint_channels == 3
                    else f"This model takes {cfg.hint_channels}-channel hints."
                )
            )
        h, w = hint.shape[-2:]
        if h % HINT_DOWNSCALE or w % HINT_DOWNSCALE:
            raise HintError(
                f"hint size {w}x{h} is not divisible by {HINT_DOWNSCALE}; resize it to the latent size x8, "
                f"e.g. {w - w % 8 or 8}x{h - h % 8 or 8}."
            )

    def forward(
        self,
        x: torch.Tensor,
        hint: torch.Tensor | None,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        encoded_hint: torch.Tensor | None = None,
        needed: Seq[bool] | None = None,
        shared: Seq[int] | None = None,
    ) -> ControlResiduals:
        """Compute the residuals.

        Args:
            x: ``(N, in_channels, h, w)`` noisy latent, already scaled for the UNet input.
            hint: ``(N or 1, hint_channels, 8h, 8w)`` control image in ``[0, 1]``; ignored when
                ``encoded_hint`` is given.
            timesteps: ``(N,)`` UNet timesteps (0..999 for SD).
            context: ``(N, S, context_dim)`` text embedding.
            y: ``(N, adm_in_channels)`` label vector; required for SDXL, refused otherwise.
            encoded_hint: output of :meth:`encode_hint` to skip the hint encoder.
            needed: one flag per residual (middle last); a ``False`` entry is not computed and comes back
                as ``None``: its zero conv is skipped, and so are the blocks after the last needed
                residual (the middle block too when the middle residual is not needed). ``None``: all.
            shared: per row, the first row whose ``x``, ``timesteps`` and hint rows equal its own (ComfyUI's cond
                and uncond chunks of one call, whose rows differ only in ``context``). The layers before the first
                one that reads ``context`` (the hint's block, the first ResBlock, the first self-attention) then
                run once per group and their output is repeated: the same residuals with less work. The caller
                vouches for the equality; it is not checked on the device. Ignored with ``y`` (SDXL's label differs
                per row, and the embedding every ResBlock reads with it). ``None``: every row is computed.

        Returns:
            :class:`ControlResiduals` in the model's dtype: ``num_input_blocks`` skip residuals and one
            middle residual, spatially averaged when ``config.global_average_pooling``.
        """
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise InputError(f"latent must be (N, {cfg.in_channels}, h, w), got {tuple(x.shape)}.")
        if context.ndim != 3 or context.shape[-1] != cfg.context_dim:
            raise InputError(
                f"context must be (N, tokens, {cfg.context_dim}) for this {cfg.family.label} ControlNet, "
                f"got {tuple(context.shape)}. Use a text encoder of the same family."
            )
        if (y is None) != (cfg.adm_in_channels is None):
            need = f"a label vector y of width {cfg.adm_in_channels}" if cfg.adm_in_channels else "no label vector y"
            raise InputError(
                f"this {cfg.family.label} ControlNet takes {need}, got {None if y is None else tuple(y.shape)}."
            )
        if y is not None and (y.ndim != 2 or y.shape[-1] != cfg.adm_in_channels):
            raise InputError(
                f"this {cfg.family.label} ControlNet takes a label vector y of shape (N, {cfg.adm_in_channels}), got "
                f"{tuple(y.shape)}. Sample with a model of the same family (an SDXL base or refiner differ here)."
            )
        if encoded_hint is None:
            if hint is None:
                raise HintError("no hint given: pass hint or encoded_hint.")
            encoded_hint = self.encode_hint(hint)
        if encoded_hint.shape[-2:] != x.shape[-2:]:
            raise HintError(
                f"hint of {encoded_hint.shape[-1] * HINT_DOWNSCALE}x{encoded_hint.shape[-2] * HINT_DOWNSCALE} px does "
                f"not match the latent of {x.shape[-1]}x{x.shape[-2]} (needs {x.shape[-1] * HINT_DOWNSCALE}x"
                f"{x.shape[-2] * HINT_DOWNSCALE} px). Resize the hint to the latent size x8."
            )
        if needed is not None and len(needed) != cfg.num_residuals:
            raise InputError(
                f"needed has {len(needed)} flags but this {cfg.family.label} ControlNet has {cfg.num_residuals} "
                "residuals: give one per input block and one for the middle block, middle last."
            )
        if shared is not None and (why := check_shared(shared, x.shape[0])) is not None:
            raise InputError(
                f"shared must give, for each row, the first row with the same inputs; {why}. Pass None to compute "
                "every row."
            )
        if encoded_hint.shape[0] not in (1, x.shape[0]):
            raise HintError(
                f"hint batch {encoded_hint.shape[0]} fits no latent batch of {x.shape[0]}; use "
                + ("1." if x.shape[0] == 1 else f"1 or {x.shape[0]}.")
            )

        want = [True] * cfg.num_residuals if needed is None else [bool(f) for f in needed]
        last = -1  # the last residual needed (a plain loop: torch.compile traces it without a graph break)
        for i, f in enumerate(want):
            if f:
                last = i
        outs: list[torch.Tensor | None] = [None] * cfg.num_residuals
        if last < 0:
            return ControlResiduals(tuple(outs[:-1]), outs[-1])
        dtype = self.dtype
        emb = self._mlp(self.time_embed, timestep_embedding(timesteps.reshape(-1), cfg.model_channels).to(dtype))
        if y is not None:
            emb = emb + self._mlp(cast(nn.Sequential, self.label_emb[0]), y.to(dtype))
        emb = F.silu(emb)  # every ResBlock's embedding projection starts with this SiLU: applied once here
        context = context.to(dtype)
        h = x.to(dtype)
        n_in = len(self.input_blocks)
        layout = shared_layout(shared) if shared is not None and y is None else None
        spread: Callable[[torch.Tensor], torch.Tensor] | None = None  # set while h holds one row per group
        emb_all = emb
        if layout is not None:
            take, back = layout
            h, emb = take_rows(h, take), take_rows(emb, take)
            if encoded_hint.shape[0] != 1:
                encoded_hint = take_rows(encoded_hint, take)

            def spread(t: torch.Tensor) -> torch.Tensor:
                return repeat_rows(t, back)

        pending: torch.Tensor | None = encoded_hint  # added after the first block, then freed
        del encoded_hint
        for i in range(min(last + 1, n_in)):
            if spread is None:
                h = self.input_blocks[i](h, emb, context)
            else:
                h, whole = cast(Sequence, self.input_blocks[i]).forward_shared(h, emb, emb_all, context, spread)
                if whole:
                    spread, emb = None, emb_all
            if pending is not None:
                h = h + pending.to(dtype)
                pending = None  # not needed again: freed now if this call encoded it
            if want[i]:
                out = cast(nn.Sequential, self.zero_convs[i])[0](h)
                outs[i] = out if spread is None else spread(out)
        if want[n_in]:
            if spread is None:
                h = self.middle_block(h, emb, context)
            else:
                h, whole = self.middle_block.forward_shared(h, emb, emb_all, context, spread)
                if not whole:
                    h = spread(h)
            outs[n_in] = self.middle_block_out[0](h)
        if cfg.global_average_pooling:
            outs = [None if o is None else o.mean(dim=(2, 3), keepdim=True).expand_as(o).contiguous() for o in outs]
        return ControlResiduals(tuple(outs[:-1]), outs[-1])
