"""Load any supported ControlNet file into our :class:`~controlnet.model.ControlNet`.

Pipeline: read the file safely -> detect the layout from keys -> keep only the ControlNet's tensors
-> rename to the original layout -> infer the configuration -> check every key, shape and value ->
build the model without allocating, then assign the tensors (read into memory of their own, only those of
the ControlNet, after every key and shape was checked; zip checkpoints on torch before 2.11 are mapped and
copied once). Any failure rejects the whole file; nothing is half-loaded.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch

from .checkpoint import RawCheckpoint, read_checkpoint
from .config import ControlNetConfig, Family, config_from_state_dict
from .errors import CheckpointError, CorruptCheckpointError, InvalidWeightsError, KeyMismatchError, UnknownFormatError
from .formats import Detection, Layout, detect_format
from .keymap import diffusers_to_original
from .layers import Ops
from .model import ControlNet

log = logging.getLogger("affordance.controlnet")


@dataclass(frozen=True)
class LoadReport:
    """What was found in a file and what was kept.

    Attributes:
        path: the weights file that was read.
        container: ``safetensors``, ``torch-zip`` or ``torch-legacy``.
        layout: the detected key layout.
        family: SD1, SD2 or SDXL.
        stored_dtypes: dtype name -> number of ControlNet tensors stored in it.
        stored_elements: dtype name -> number of ControlNet parameters (elements) stored in it.
        num_keys: ControlNet tensors kept.
        dropped_keys: tensors of the file that are not part of the ControlNet (rest of a merged checkpoint).
        num_params: parameters of the ControlNet.
        skipped_entries: non-tensor entries of a pickle (ignored).
        mapped: the tensors view the file through a memory map (a zip checkpoint on torch before 2.11):
            :func:`build_controlnet` copies them, so the model never depends on the file.
    """

    path: Path
    container: str
    layout: Layout
    family: Family
    stored_dtypes: dict[str, int]
    num_keys: int
    dropped_keys: int
    num_params: int
    skipped_entries: tuple[str, ...] = ()
    mapped: bool = False
    stored_elements: dict[str, int] = field(default_factory=dict)

    @property
    def storage_dtype(self) -> torch.dtype | None:
        """The dtype holding most of the file's ControlNet parameters (as stored, before fp8 is widened).

        Counted by elements, not tensors, as ComfyUI's ``weight_dtype`` does: an fp8 file that keeps its many
        small biases and norms in fp32 is an fp8 file. ``None`` if nothing was counted.
        """
        if not self.stored_elements:
            return None
        name = max(self.stored_elements, key=lambda n: self.stored_elements[n])
        return getattr(torch, name, None)


@dataclass(frozen=True)
class ControlNetWeights:
    """A ControlNet state dict in the original layout (no prefix) with its configuration.

    Attributes:
        state_dict: key -> tensor, as stored (dtype unchanged, CPU, possibly memory-mapped).
        config: the architecture inferred from the keys and shapes.
        report: what the file held.
    """

    state_dict: dict[str, torch.Tensor]
    config: ControlNetConfig
    report: LoadReport


def _positive_ints(name: str, value: object, source: str) -> int | list[int]:
    """``value`` (config.json's ``name``) if it is a positive int or a non-empty list of them (``bool`` excluded).

    Raises:
        CorruptCheckpointError: anything else.
    """
    items = value if isinstance(value, list) and value else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        raise CorruptCheckpointError(
            f"{source}: config.json's {name} is {value!r}, not a positive whole number or a list of them. "
            "Restore the original config.json, or remove it (the weights alone are enough to load the model)."
        )
    return cast("int | list[int]", value)


def _heads_from_diffusers_config(cfg: Mapping[str, object], source: str) -> dict[str, int]:
    """Head settings of a diffusers ``config.json`` (its ``attention_head_dim`` holds head *counts*).

    Raises:
        CorruptCheckpointError: head counts or widths that are not positive whole numbers.
        UnknownFormatError: per-level heads that are neither a fixed count nor a fixed width.
    """
    # diffusers' own rule: num_attention_heads when set (truthy), else attention_head_dim
    key = "num_attention_heads" if cfg.get("num_attention_heads") else "attention_head_dim"
    given = cfg.get(key)
    listed = cfg.get("block_out_channels")
    if given is None or not isinstance(listed, list):
        return {}
    heads = _positive_ints(key, given, source)
    _positive_ints("block_out_channels", listed, source)
    widths: list[int] = listed
    if isinstance(heads, int):
        return {"num_heads": heads}
    if len(heads) == len(widths):
        if len(set(heads)) == 1:
            return {"num_heads": heads[0]}
        per_head = {w // h for w, h in zip(widths, heads)}
        if len(per_head) == 1:
            if (width := per_head.pop()) < 1:
                raise CorruptCheckpointError(
                    f"{source}: config.json's {key} {heads} asks for more heads than block_out_channels {widths} "
                    "has channels. Restore the original config.json, or remove it (the weights alone are enough "
                    "to load the model)."
                )
            return {"num_head_channels": width}
    raise UnknownFormatError(
        f"{source}: config.json sets heads {heads} for widths {widths}; only a fixed head count or a fixed head "
        "width is supported."
    )


def _config_mismatch(cfg: Mapping[str, object], sd: Mapping[str, torch.Tensor]) -> str | None:
    """How a diffusers ``config.json`` contradicts the weights it came with, or ``None`` when it fits them."""
    try:
        base = config_from_state_dict(sd)
    except CheckpointError:
        return None  # the weights themselves are wrong: reported by the normal checks, with their own message
    expected: dict[str, object] = {
        "block_out_channels": [m * base.model_channels for m in base.channel_mult],
        "in_channels": base.in_channels,
        "conditioning_channels": base.hint_channels,
        "projection_class_embeddings_input_dim": base.adm_in_channels,
    }
    if len(set(base.num_res_blocks)) == 1:
        expected["layers_per_block"] = base.num_res_blocks[0]
    if any(k.endswith("attn2.to_k.weight") for k in sd):  # without cross-attention the width is not in the weights
        expected["cross_attention_dim"] = base.context_dim
    if base.has_middle_attention or base.middle_resblocks == 1:  # the two middle blocks diffusers can build
        expected["mid_block_type"] = "UNetMidBlock2DCrossAttn" if base.has_middle_attention else "UNetMidBlock2D"
    defaults = {
        "in_channels": 4,
        "conditioning_channels": 3,
        "projection_class_embeddings_input_dim": None,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
    }
    wrong = [
        f"{key} {cfg.get(key, defaults.get(key))!r} (the weights have {value!r})"
        for key, value in expected.items()
        if cfg.get(key, defaults.get(key)) != value
    ]
    return "; ".join(wrong) or None


_FP8 = tuple(
    getattr(torch, n)
    for n in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
    if hasattr(torch, n)
)


def _widen_fp8(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp8 weights as fp16 (exact: every fp8 value is an fp16 value); the model computes in fp16 or wider."""
    return {k: v.to(torch.float16) if v.dtype in _FP8 else v for k, v in sd.items()}


_WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)  # what the model computes in


def _check_values(sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights (fp8 already widened) of a data type the model cannot compute in, or holding NaN or Inf."""
    bad = []
    for key, t in sd.items():
        if not t.is_floating_point():
            raise InvalidWeightsError(
                f"{source}: ControlNet weight {key!r} is stored as {t.dtype}, not floating point; the file is damaged "
                "or quantised in a way Affordance does not read."
            )
        if t.dtype not in _WEIGHT_DTYPES:  # e.g. float8_e8m0fnu (block scales), float4_e2m1fn_x2 (packed)
            raise InvalidWeightsError(
                f"{source}: ControlNet weight {key!r} is stored as {t.dtype}, a format that holds no plain weights "
                "(Affordance reads fp32, fp16, bf16 and fp8 e4m3/e5m2 weights); the file is quantised in a way "
                "Affordance does not read. Use an fp16, bf16 or fp32 copy of the model."
            )
        if t.numel() and not all(torch.isfinite(v) for v in torch.aminmax(t)):  # NaN and +-Inf show in min/max
            bad.append(key)
    if bad:
        raise InvalidWeightsError(
            f"{source}: {len(bad)} weight tensor(s) hold NaN or Inf values ({', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}). The model is broken (a failed training or conversion); "
            "use another copy."
        )


def _check_keys(sd: Mapping[str, torch.Tensor], config: ControlNetConfig, source: str) -> None:
    try:
        with torch.device("meta"):
            expected = ControlNet(config).state_dict()
    except ValueError as exc:
        raise KeyMismatchError(f"{source}: the weights describe an impossible architecture ({exc}).") from exc
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [
        f"{k} {tuple(sd[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in sorted(set(sd) & set(expected))
        if sd[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"
            )
        if wrong:
            parts.append(f"{len(wrong)} with a wrong shape: {', '.join(wrong[:4])}{' ...' if len(wrong) > 4 else ''}")
        raise KeyMismatchError(
            f"{source} looks like a {config.family.label} ControlNet but its keys do not fit that architecture "
            f"({'; '.join(parts)}). The file is incomplete or damaged; nothing was loaded."
        )


def extract_controlnet(
    raw: RawCheckpoint, *, global_average_pooling: bool | None = None
) -> ControlNetWeights:
    """Turn raw file tensors into a checked, original-layout ControlNet state dict.

    Args:
        raw: the output of :func:`read_checkpoint`.
        global_average_pooling: force the shuffle-model option on or off; ``None`` takes it from a
            diffusers ``config.json`` (``global_pool_conditions``) or the file metadata, else off.

    Raises:
        CheckpointError: subclasses for a foreign family, unknown layout, key or value problems.
    """
    source = str(raw.path)
    detection: Detection = detect_format(raw.tensors.keys(), source)
    # original-layout name -> key in the file, for the ControlNet's tensors only
    source_of = {k[len(detection.prefix) :]: k for k in raw.tensors if detection.selects(k)}
    if detection.layout is Layout.DIFFUSERS:
        source_of = diffusers_to_original(source_of)
    sd = {name: raw.tensors[k] for name, k in source_of.items()}  # safetensors: shapes and dtypes only until checked
    dropped = len(raw.tensors) - len(sd)
    overrides: dict[str, int] = {}
    cfg_json: Mapping[str, object] | None = None  # a diffusers config.json that describes these weights
    if detection.layout is Layout.DIFFUSERS:
        cfg_json = raw.config or None
        why = _config_mismatch(cfg_json, sd) if cfg_json else None
        if why and raw.config_is_sibling:  # another model's config.json in the same folder: never applied
            log.warning("%r: ignoring the config.json beside it, which describes another model (%s)", source, why)
            cfg_json = None
        elif why:
            raise CorruptCheckpointError(
                f"{source}: the folder's config.json does not describe these weights: {why}. Restore the "
                "config.json that came with the model, or remove it (the weights alone are enough to load it)."
            )
        if cfg_json:
            overrides = _heads_from_diffusers_config(cfg_json, source)
            if str(cfg_json.get("controlnet_conditioning_channel_order", "rgb")).lower() == "bgr":
                raise UnknownFormatError(
                    f"{source}: config.json asks for BGR hints (controlnet_conditioning_channel_order='bgr'), "
                    "which Affordance does not support; convert the model or swap the hint channels."
                )
    if global_average_pooling is None:
        gap = cfg_json.get("global_pool_conditions") is True if cfg_json else False  # not "false" (a string)
        gap = gap or raw.metadata.get("affordance.global_average_pooling") == "true"
    else:
        gap = global_average_pooling
    try:
        config = config_from_state_dict(sd, global_average_pooling=gap, **overrides)
    except KeyMismatchError as exc:
        raise KeyMismatchError(
            f"{source}: {exc} If it is meant to be a ControlNet, download it again."
        ) from exc
    _check_keys(sd, config, source)
    if raw.fetch is not None:  # every key and shape is right: only now are the tensors read
        data = raw.materialized(source_of.values())
        sd = {name: data[k] for name, k in source_of.items()}
    stored = dict(Counter(str(t.dtype).removeprefix("torch.") for t in sd.values()))
    elements: Counter[str] = Counter()
    for t in sd.values():
        elements[str(t.dtype).removeprefix("torch.")] += t.numel()
    sd = _widen_fp8(sd)
    _check_values(sd, source)
    report = LoadReport(
        path=raw.path,
        container=raw.container,
        layout=detection.layout,
        family=config.family,
        stored_dtypes=stored,
        num_keys=len(sd),
        dropped_keys=dropped,
        num_params=sum(t.numel() for t in sd.values()),
        skipped_entries=tuple(raw.skipped),
        mapped=raw.mapped,
        stored_elements=dict(elements),
    )
    if dropped:
        log.info("%r: kept %d ControlNet tensors, dropped %d others", source, len(sd), dropped)
    return ControlNetWeights(sd, config, report)


def read_controlnet(path: str | Path, *, global_average_pooling: bool | None = None) -> ControlNetWeights:
    """Read and check a ControlNet file or diffusers folder (see :func:`extract_controlnet`)."""
    return extract_controlnet(read_checkpoint(path), global_average_pooling=global_average_pooling)


def _dominant_dtype(sd: Mapping[str, torch.Tensor]) -> torch.dtype:
    """The dtype that holds most of the weights' elements (ComfyUI's ``weight_dtype`` rule).

    Counting tensors instead would call a file of fp32 weights with fp16 biases and norms (more tensors, few
    elements) an fp16 file and round every weight.
    """
    counts: Counter[torch.dtype] = Counter()
    for t in sd.values():
        counts[t.dtype] += t.numel()
    return max(counts, key=lambda d: counts[d])


def build_controlnet(
    weights: ControlNetWeights,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    ops: Ops = None,
    release: bool = False,
) -> ControlNet:
    """Instantiate the network and assign the weights, without a random initialisation.

    Args:
        weights: from :func:`read_controlnet`.
        dtype: weight dtype; ``None`` keeps the stored dtype (the one holding most elements if mixed).
        device: where the parameters go.
        ops: layer classes for the network (see :class:`~controlnet.model.ControlNet`).
        release: hand the weights over: each tensor that has to be converted, moved or copied is removed
            from ``weights.state_dict`` as soon as its successor exists, so a conversion (fp16 file, fp32
            model) never holds both copies of every weight at once. ``weights`` is then left incomplete.

    Returns:
        The model in eval mode. Its parameters own their memory, so a file replaced or truncated later
        changes nothing: tensors still viewing a memory-mapped file (``report.mapped``) are copied once,
        which converting or moving them does anyway; tensors read into memory are not copied again.
    """
    dtype = dtype or _dominant_dtype(weights.state_dict)
    with torch.device("meta"):
        model = ControlNet(weights.config, ops)
    src = weights.state_dict
    sd: dict[str, torch.Tensor] = {}
    for k in list(src):
        v = src[k]
        sd[k] = v.to(device=device, dtype=dtype, copy=weights.report.mapped)
        if release and sd[k] is not v:
            del src[k], v  # the source's memory goes back before the next tensor is converted
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def load_controlnet(
    path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    global_average_pooling: bool | None = None,
) -> tuple[ControlNet, LoadReport]:
    """Load a ControlNet file (any supported layout and container) as our model.

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError: see :func:`read_checkpoint` and :func:`extract_controlnet`.
    """
    weights = read_controlnet(path, global_average_pooling=global_average_pooling)
    return build_controlnet(weights, dtype=dtype, device=device, release=True), weights.report


__all__ = [
    "CheckpointError",
    "ControlNetWeights",
    "LoadReport",
    "build_controlnet",
    "extract_controlnet",
    "load_controlnet",
    "read_controlnet",
]
