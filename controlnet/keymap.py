"""Declarative renaming between the original (LDM / lllyasviel) and the diffusers ControlNet layouts.

The renaming is structural: it needs only the number of residual blocks per level and whether the
middle block has attention, which both layouts reveal through their keys. Values are never touched,
so a conversion round-trips bit-exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

import torch

from .errors import KeyMismatchError

_RESNET_SUBKEYS = (
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("time_emb_proj.", "emb_layers.1."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("conv_shortcut.", "skip_connection."),
)


def prefix_pairs(num_res_blocks: tuple[int, ...], mid_attention: bool, mid_resnets: int = 2) -> list[tuple[str, str, bool]]:
    """The table of ``(diffusers prefix, original prefix, is_resnet)`` for one encoder structure.

    ``mid_resnets`` is 2 for a middle block of two ResBlocks (around its attention layer, if any) and 1
    for a lone ResBlock (diffusers' ``UNetMidBlock2D``).
    """
    pairs: list[tuple[str, str, bool]] = [
        ("conv_in.", "input_blocks.0.0.", False),
        ("time_embedding.linear_1.", "time_embed.0.", False),
        ("time_embedding.linear_2.", "time_embed.2.", False),
        ("add_embedding.linear_1.", "label_emb.0.0.", False),
        ("add_embedding.linear_2.", "label_emb.0.2.", False),
        ("controlnet_cond_embedding.conv_in.", "input_hint_block.0.", False),
        ("controlnet_cond_embedding.conv_out.", "input_hint_block.14.", False),
        ("controlnet_mid_block.", "middle_block_out.0.", False),
    ]
    pairs += [(f"controlnet_cond_embedding.blocks.{i}.", f"input_hint_block.{2 * (i + 1)}.", False) for i in range(6)]
    idx = 1
    for level, count in enumerate(num_res_blocks):
        for j in range(count):
            pairs.append((f"down_blocks.{level}.resnets.{j}.", f"input_blocks.{idx}.0.", True))
            pairs.append((f"down_blocks.{level}.attentions.{j}.", f"input_blocks.{idx}.1.", False))
            idx += 1
        if level != len(num_res_blocks) - 1:
            pairs.append((f"down_blocks.{level}.downsamplers.0.conv.", f"input_blocks.{idx}.0.op.", False))
            idx += 1
    pairs += [(f"controlnet_down_blocks.{i}.", f"zero_convs.{i}.0.", False) for i in range(idx)]
    pairs.append(("mid_block.resnets.0.", "middle_block.0.", True))
    if mid_attention:
        pairs.append(("mid_block.attentions.0.", "middle_block.1.", False))
        pairs.append(("mid_block.resnets.1.", "middle_block.2.", True))
    elif mid_resnets == 2:
        pairs.append(("mid_block.resnets.1.", "middle_block.1.", True))
    return pairs


V = TypeVar("V")  # the values are carried over untouched: tensors, or anything else keyed by weight name


def _rename(sd: Mapping[str, V], table: list[tuple[str, str, list[tuple[str, str]]]], what: str) -> dict[str, V]:
    out: dict[str, V] = {}
    unmatched: list[str] = []
    for key, value in sd.items():
        for src, dst, sub in table:
            if key.startswith(src):
                rest = key[len(src) :]
                for a, b in sub:
                    if rest.startswith(a):
                        rest = b + rest[len(a) :]
                        break
                out[dst + rest] = value
                break
        else:
            unmatched.append(key)
    if unmatched:
        shown = ", ".join(sorted(unmatched)[:8])
        raise KeyMismatchError(
            f"{len(unmatched)} key(s) have no place in the {what} layout: {shown}"
            + (" ..." if len(unmatched) > 8 else "")
            + ". The file holds more than a ControlNet of this structure."
        )
    return out


_DOWN_RESNET = re.compile(r"^down_blocks\.(\d+)\.resnets\.(\d+)\.")


def diffusers_structure(keys: set[str]) -> tuple[tuple[int, ...], bool, int]:
    """Read ``(num_res_blocks per level, middle has attention, middle ResBlocks)`` from diffusers keys."""
    counts: dict[int, int] = {}
    for k in keys:
        if m := _DOWN_RESNET.match(k):
            level, j = int(m.group(1)), int(m.group(2))
            counts[level] = max(counts.get(level, 0), j + 1)
    if not counts or sorted(counts) != list(range(len(counts))):
        raise KeyMismatchError(f"diffusers ControlNet has no contiguous down blocks (levels found: {sorted(counts)}).")
    mid_attention = any(k.startswith("mid_block.attentions.0.") for k in keys)
    mid_resnets = 2 if mid_attention or any(k.startswith("mid_block.resnets.1.") for k in keys) else 1
    return tuple(counts[i] for i in range(len(counts))), mid_attention, mid_resnets


def original_structure(keys: set[str]) -> tuple[tuple[int, ...], bool, int]:
    """Read ``(num_res_blocks per level, middle has attention, middle ResBlocks)`` from original-layout keys."""
    indices = sorted({int(k.split(".")[1]) for k in keys if k.startswith("input_blocks.")})
    counts = [0]
    for i in indices[1:]:
        if f"input_blocks.{i}.0.op.weight" in keys:
            counts.append(0)
        else:
            counts[-1] += 1
    mid_attention = any(k.startswith("middle_block.1.proj_in.") for k in keys)
    mid_resnets = 2 if any(k.startswith("middle_block.1.") for k in keys) else 1
    return tuple(counts), mid_attention, mid_resnets


def diffusers_to_original(sd: Mapping[str, V]) -> dict[str, V]:
    """Rename a diffusers ``ControlNetModel`` state dict to the original layout (no prefix); values untouched.

    Raises:
        KeyMismatchError: a key fits no place in the structure the keys describe.
    """
    table = [(d, o, list(_RESNET_SUBKEYS) if res else []) for d, o, res in prefix_pairs(*diffusers_structure(set(sd)))]
    return _rename(sd, table, "diffusers ControlNet")


def original_to_diffusers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original-layout state dict (no prefix) to diffusers ``ControlNetModel`` names."""
    inverse = [(b, a) for a, b in _RESNET_SUBKEYS]
    table = [(o, d, inverse if res else []) for d, o, res in prefix_pairs(*original_structure(set(sd)))]
    # Longest source prefix first, so "input_blocks.1.0." never captures "input_blocks.10.0." keys.
    table.sort(key=lambda row: len(row[0]), reverse=True)
    return _rename(sd, table, "original ControlNet")
