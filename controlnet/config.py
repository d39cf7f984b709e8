"""ControlNet configuration: presets for SD1.x, SD2.x and SDXL, and inference from a state dict.

The configuration is always read from the weights (keys and shapes), never from a file name. Keys are
those of the original (lllyasviel / LDM) layout without the ``control_model.`` prefix.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from .errors import ConfigError, KeyMismatchError, UnknownFormatError


class Family(str, enum.Enum):
    """The base-model family a ControlNet belongs to; it decides how many residuals it yields."""

    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"

    @property
    def label(self) -> str:
        """Human name used in messages."""
        return {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}[self.value]


@dataclass(frozen=True)
class ControlNetConfig:
    """Architecture of a ControlNet (the trainable copy of an SD UNet encoder plus hint encoder).

    Attributes:
        model_channels: channels of the first UNet level (320 for every official model).
        channel_mult: channel multiplier of each level, e.g. ``(1, 2, 4, 4)`` for SD1/2, ``(1, 2, 4)`` SDXL.
        num_res_blocks: residual blocks per level.
        transformer_depth: transformer blocks after each residual block, flattened over levels
            (length ``sum(num_res_blocks)``; 0 means no attention).
        transformer_depth_middle: transformer blocks in the middle block (0: two ResBlocks only).
        context_dim: width of the text context (768 SD1, 1024 SD2, 2048 SDXL).
        use_linear_in_transformer: linear (SD2/SDXL) instead of 1x1-conv projections.
        num_heads: fixed head count (SD1 uses 8); -1 when ``num_head_channels`` decides.
        num_head_channels: fixed head width (SD2/SDXL use 64); -1 when ``num_heads`` decides.
        adm_in_channels: width of the label vector ``y`` (2816 for SDXL); ``None`` without one.
        in_channels: latent channels (4).
        hint_channels: channels of the hint image (3).
        global_average_pooling: average each residual over space (the 1.1 shuffle model).
        attention: per residual block, whether an attention layer follows it; ``None`` (the usual case):
            where ``transformer_depth`` is above 0. An attention layer of depth 0 (norm and projections
            around no transformer block, added to its input) occurs in diffusers' SDXL "small" and "mid"
            ControlNets (``transformer_layers_per_block`` ``[0, 0, 0]`` and ``[0, 0, 1]``).
        attention_middle: whether the middle block has an attention layer; ``None``: where
            ``transformer_depth_middle`` is above 0.
        middle_resblocks: ResBlocks in the middle block: 2 (around its attention layer, every official
            model) or 1 (a lone ResBlock without attention: diffusers' ``mid_block_type`` "UNetMidBlock2D").
    """

    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: tuple[int, ...] = (2, 2, 2, 2)
    transformer_depth: tuple[int, ...] = (1, 1, 1, 1, 1, 1, 0, 0)
    transformer_depth_middle: int = 1
    context_dim: int = 768
    use_linear_in_transformer: bool = False
    num_heads: int = 8
    num_head_channels: int = -1
    adm_in_channels: int | None = None
    in_channels: int = 4
    hint_channels: int = 3
    global_average_pooling: bool = False
    attention: tuple[bool, ...] | None = None
    attention_middle: bool | None = None
    middle_resblocks: int = 2

    def __post_init__(self) -> None:
        if len(self.num_res_blocks) != len(self.channel_mult):
            raise ConfigError(
                f"num_res_blocks has {len(self.num_res_blocks)} levels but channel_mult has "
                f"{len(self.channel_mult)}: give one entry per level."
            )
        if any(n < 1 for n in self.num_res_blocks):  # its weights could not be read back (nor written for diffusers)
            raise ConfigError(f"num_res_blocks needs at least one ResBlock per level, got {self.num_res_blocks}.")
        if len(self.transformer_depth) != sum(self.num_res_blocks):
            raise ConfigError(
                f"transformer_depth needs one entry per residual block ({sum(self.num_res_blocks)}), "
                f"got {len(self.transformer_depth)}."
            )
        if self.attention is not None:
            if len(self.attention) != len(self.transformer_depth):
                raise ConfigError(
                    f"attention needs one entry per residual block ({len(self.transformer_depth)}), "
                    f"got {len(self.attention)}."
                )
            if any(d > 0 and not a for d, a in zip(self.transformer_depth, self.attention)):
                raise ConfigError("a residual block with transformer blocks must have its attention layer.")
        if self.transformer_depth_middle > 0 and self.attention_middle is False:
            raise ConfigError("the middle block has transformer blocks, so it must have its attention layer.")
        if self.middle_resblocks not in (1, 2):
            raise ConfigError(f"the middle block has 1 or 2 ResBlocks, got {self.middle_resblocks}.")
        if self.middle_resblocks == 1 and self.has_middle_attention:
            raise ConfigError("a middle block with an attention layer has two ResBlocks around it.")
        for name, value in (("num_heads", self.num_heads), ("num_head_channels", self.num_head_channels)):
            if value != -1 and value < 1:
                raise ConfigError(f"{name} must be a positive whole number, or -1 to use the other; got {value}.")
        if (self.num_heads == -1) == (self.num_head_channels == -1):
            raise ConfigError(
                f"set exactly one of num_heads ({self.num_heads}) and num_head_channels "
                f"({self.num_head_channels}); the other must be -1."
            )

    def has_attention(self, block: int) -> bool:
        """Whether residual block ``block`` (0-based, over all levels) is followed by an attention layer."""
        if self.attention is not None:
            return self.attention[block]
        return self.transformer_depth[block] > 0

    @property
    def has_middle_attention(self) -> bool:
        """Whether the middle block has an attention layer (between its two ResBlocks)."""
        if self.attention_middle is not None:
            return self.attention_middle
        return self.transformer_depth_middle > 0

    @property
    def family(self) -> Family:
        """SD1, SD2 or SDXL, from the context width and label embedding."""
        if self.adm_in_channels is not None and self.context_dim == 2048:
            return Family.SDXL
        if self.adm_in_channels is None and self.context_dim == 768:
            return Family.SD1
        if self.adm_in_channels is None and self.context_dim == 1024:
            return Family.SD2
        raise UnknownFormatError(
            f"a ControlNet with context width {self.context_dim} and label width {self.adm_in_channels} "
            "matches no supported family (SD1.x: 768 and none, SD2.x: 1024 and none, SDXL: 2048 and 2816). "
            "Use a ControlNet made for SD1.5, SD2.x or SDXL."
        )

    @property
    def num_input_blocks(self) -> int:
        """Number of UNet input blocks, hence of skip residuals (12 for SD1/2, 9 for SDXL)."""
        return 1 + sum(self.num_res_blocks) + len(self.channel_mult) - 1

    @property
    def num_residuals(self) -> int:
        """Skip residuals plus the middle one (13 for SD1/2, 10 for SDXL)."""
        return self.num_input_blocks + 1

    def residual_channels(self) -> tuple[int, ...]:
        """Channels of each residual in output order (input blocks, then middle)."""
        return unet_residual_channels(self.model_channels, self.channel_mult, self.num_res_blocks)

    def residual_downsampling(self) -> tuple[int, ...]:
        """Spatial downsampling of each residual relative to the latent (1, 2, 4 or 8)."""
        factors = [1]
        factor = 1
        for level in range(len(self.channel_mult)):
            factors.extend([factor] * self.num_res_blocks[level])
            if level != len(self.channel_mult) - 1:
                factor *= 2
                factors.append(factor)
        factors.append(factor)
        return tuple(factors)

    def with_options(self, **changes: object) -> ControlNetConfig:
        """Return a copy with the given fields changed (e.g. ``global_average_pooling=True``)."""
        return replace(self, **changes)  # type: ignore[arg-type]


SD15 = ControlNetConfig()
SD21 = ControlNetConfig(context_dim=1024, use_linear_in_transformer=True, num_heads=-1, num_head_channels=64)
SDXL = ControlNetConfig(
    channel_mult=(1, 2, 4),
    num_res_blocks=(2, 2, 2),
    transformer_depth=(0, 0, 2, 2, 10, 10),
    transformer_depth_middle=10,
    context_dim=2048,
    use_linear_in_transformer=True,
    num_heads=-1,
    num_head_channels=64,
    adm_in_channels=2816,
)
PRESETS: dict[str, ControlNetConfig] = {"sd15": SD15, "sd21": SD21, "sdxl": SDXL}

_BLOCK = re.compile(r"^input_blocks\.(\d+)\.")
_TBLOCK = re.compile(r"\.transformer_blocks\.(\d+)\.")


def unet_residual_channels(
    model_channels: int, channel_mult: Sequence[int], num_res_blocks: Sequence[int]
) -> tuple[int, ...]:
    """Channels of the skip connections of a UNet encoder of this shape, then of its middle block: what a
    ControlNet's residuals must match, one by one, to be added to them.

    Args:
        model_channels: channels of the first level. channel_mult: multiplier per level.
        num_res_blocks: residual blocks per level (one entry per level).
    """
    chans = [model_channels]
    for level, mult in enumerate(channel_mult):
        chans.extend([mult * model_channels] * num_res_blocks[level])
        if level != len(channel_mult) - 1:
            chans.append(mult * model_channels)
    chans.append(channel_mult[-1] * model_channels)
    return tuple(chans)


def _depth(keys: set[str], prefix: str) -> int:
    """Number of transformer blocks under ``prefix`` (a SpatialTransformer)."""
    found = {int(m.group(1)) for k in keys if k.startswith(prefix) and (m := _TBLOCK.search(k[len(prefix) - 1 :]))}
    return max(found) + 1 if found else 0


def _ndim(t: torch.Tensor, key: str, ndim: int) -> torch.Tensor:
    """``t`` (the weight ``key``), checked to have ``ndim`` dimensions (a damaged or foreign file otherwise)."""
    if t.ndim != ndim:
        raise KeyMismatchError(
            f"{key} should have {ndim} dimensions, got shape {tuple(t.shape)}: the file is damaged or not a ControlNet."
        )
    return t


def config_from_state_dict(
    sd: Mapping[str, torch.Tensor],
    *,
    num_heads: int | None = None,
    num_head_channels: int | None = None,
    global_average_pooling: bool = False,
) -> ControlNetConfig:
    """Infer the architecture from an original-layout state dict (no ``control_model.`` prefix).

    Args:
        sd: key -> tensor; only names and shapes are read.
        num_heads: override the head count (otherwise 8 for a 768-wide context, as SD1 uses).
        num_head_channels: override the head width (otherwise 64 for SD2/SDXL contexts).
        global_average_pooling: the explicit shuffle-model option (weights cannot tell it).

    Returns:
        The configuration whose :class:`~controlnet.model.ControlNet` has exactly these keys and shapes.

    Raises:
        KeyMismatchError: a key needed to read the architecture is missing or has an odd shape, or a tensor
            has a zero-size axis.
    """
    keys = set(sd)

    def need(key: str) -> torch.Tensor:
        if key not in sd:
            raise KeyMismatchError(
                f"cannot read the ControlNet architecture: key {key!r} is missing "
                f"({len(keys)} keys present). The file is incomplete or of another layout."
            )
        return sd[key]

    empty = sorted(k for k, v in sd.items() if v.ndim and not v.numel())
    if empty:
        raise KeyMismatchError(
            f"{len(empty)} tensor(s) of the ControlNet have no elements, e.g. {empty[0]!r} of shape "
            f"{tuple(sd[empty[0]].shape)}: a layer of width 0 cannot be built. The file is damaged; download it again."
        )
    conv_in = need("input_blocks.0.0.weight")
    if conv_in.ndim != 4:
        raise KeyMismatchError(f"input_blocks.0.0.weight should be a 4-D conv weight, got shape {tuple(conv_in.shape)}.")
    model_channels, in_channels = int(conv_in.shape[0]), int(conv_in.shape[1])
    hint_channels = int(_ndim(need("input_hint_block.0.weight"), "input_hint_block.0.weight", 4).shape[1])

    indices = sorted({int(m.group(1)) for k in keys if (m := _BLOCK.match(k))})
    if indices != list(range(len(indices))):
        raise KeyMismatchError(f"input block indices are not contiguous: found {indices}.")
    levels: list[list[tuple[int, int, bool]]] = [[]]  # per level: (channel multiplier, depth, attention)
    for i in indices[1:]:
        if f"input_blocks.{i}.0.op.weight" in keys:  # a downsampler closes the level
            levels.append([])
            continue
        out = int(_ndim(need(key := f"input_blocks.{i}.0.out_layers.3.weight"), key, 4).shape[0])
        mult, rem = divmod(out, model_channels)
        if rem:
            raise KeyMismatchError(f"input block {i} has {out} channels, not a multiple of {model_channels}.")
        has_attn = any(k.startswith(f"input_blocks.{i}.1.") for k in keys)
        levels[-1].append((mult, _depth(keys, f"input_blocks.{i}.1."), has_attn))
    if any(not level for level in levels):
        raise KeyMismatchError("a level of the encoder has no residual block; the encoder is truncated or malformed.")
    if any(len({m for m, _, _ in level}) != 1 for level in levels):
        raise KeyMismatchError("channels change inside a level of the encoder; this is not an SD UNet encoder.")
    mults = [level[0][0] for level in levels]
    num_res_blocks = [len(level) for level in levels]
    transformer_depth = [d for level in levels for _, d, _ in level]
    attention = tuple(a for level in levels for _, _, a in level)

    for i in range(len(indices)):
        need(f"zero_convs.{i}.0.weight")
    need("middle_block_out.0.weight")

    attention_middle = "middle_block.1.norm.weight" in keys
    depth_middle = _depth(keys, "middle_block.1.") if attention_middle else 0
    # a lone ResBlock (diffusers' UNetMidBlock2D) leaves nothing after middle_block.0
    middle_resblocks = 2 if any(k.startswith("middle_block.1.") for k in keys) else 1

    adm = int(_ndim(sd["label_emb.0.0.weight"], "label_emb.0.0.weight", 2).shape[1]) if "label_emb.0.0.weight" in keys else None
    attn_keys = sorted(k for k in keys if k.endswith("attn2.to_k.weight"))
    # without cross-attention (SDXL "small") the text width is never used; it still names the family
    context_dim = int(_ndim(sd[attn_keys[0]], attn_keys[0], 2).shape[1]) if attn_keys else (2048 if adm is not None else 768)
    proj = next((k for k in sorted(keys) if k.endswith("proj_in.weight")), None)
    use_linear = proj is not None and sd[proj].ndim == 2
    if num_heads is None and num_head_channels is None:
        num_heads, num_head_channels = (8, -1) if context_dim == 768 else (-1, 64)
    heads = -1 if num_heads is None else num_heads  # the one given decides, the other is -1
    head_channels = -1 if num_head_channels is None else num_head_channels

    try:
        return ControlNetConfig(
            model_channels=model_channels,
            channel_mult=tuple(mults),
            num_res_blocks=tuple(num_res_blocks),
            transformer_depth=tuple(transformer_depth),
            transformer_depth_middle=depth_middle,
            context_dim=context_dim,
            use_linear_in_transformer=use_linear,
            num_heads=heads,
            num_head_channels=head_channels,
            adm_in_channels=adm,
            in_channels=in_channels,
            hint_channels=hint_channels,
            global_average_pooling=global_average_pooling,
            # explicit only where an attention layer has no transformer block, so usual files equal the presets
            attention=attention if any(a and not d for a, d in zip(attention, transformer_depth)) else None,
            attention_middle=True if attention_middle and not depth_middle else None,
            middle_resblocks=middle_resblocks,
        )
    except ValueError as exc:
        raise KeyMismatchError(f"inconsistent ControlNet architecture in the weights: {exc}") from exc
