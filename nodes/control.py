"""Our control object: rides on ComfyUI's conditioning and yields weighted residuals at each model call.

It fulfils ComfyUI's duck-typed control contract (``get_control``, ``pre_run``, ``cleanup``,
``get_models``, ``get_extra_hooks``, ``inference_memory_requirements``, ``copy``, ``set_cond_hint``,
``set_previous_controlnet``, and since ComfyUI 0.23 the MultiGPU members ``multigpu_clones``,
``get_instance_for_device``, ``deepclone_multigpu``) without importing ComfyUI at module level, so it
chains both ways with ComfyUI's own ControlNet and T2I-Adapter objects. The sampling maths lives in
:mod:`controlnet`; this file only adapts it to ComfyUI's calling conventions (sigmas, batched cond/uncond
chunks, popped lists).
"""

from __future__ import annotations

import copy as copy_module
import logging
import os
import weakref
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import torch

from ..controlnet.config import unet_residual_channels
from ..controlnet.errors import ControlNetError, HintError, InputError
from ..controlnet.graphs import GraphBackend, GraphedControlNet, Outputs
from ..controlnet.hint import broadcast_batch, check_hint_batch, fit_hint, mask_for, window_batch
from ..controlnet.model import HINT_DOWNSCALE, ControlNet
from ..controlnet.reuse import ResidualCache, ReusePolicy, ReuseStats
from ..controlnet.rows import kept_runs, spread_rows, take_rows
from ..controlnet.schedule import ProgressMap, StrengthSchedule
from ..controlnet.weights import ControlWeights
from .negative_rows import row_flags
from .row_places import shared_rows

log = logging.getLogger("affordance.nodes")

CONTEXT_FAMILIES = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL"}
GRAPHS_ENV = "AFFORDANCE_CUDA_GRAPHS"


def graphs_requested() -> bool:
    """Whether the user asked for CUDA-graph replay (``AFFORDANCE_CUDA_GRAPHS=1``; off by default)."""
    return os.environ.get(GRAPHS_ENV, "").strip().lower() in ("1", "on", "true", "yes")


class FamilyMismatchError(ControlNetError, ValueError):
    """The ControlNet was made for another base-model family (or UNet shape) than the model being sampled."""


def _unet_residuals(unet_config: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The residual channels a UNet of ComfyUI's ``unet_config`` takes; ``None`` when the config does not say."""
    try:
        mc, mult, blocks = (unet_config[k] for k in ("model_channels", "channel_mult", "num_res_blocks"))
        mult = [int(m) for m in mult]
        blocks = [int(blocks)] * len(mult) if isinstance(blocks, int) else [int(b) for b in blocks]
        return unet_residual_channels(int(mc), mult, blocks) if len(blocks) == len(mult) and mult else None
    except (KeyError, TypeError, ValueError):
        return None


def _channels(chans: tuple[int, ...]) -> str:
    """``(320, 320, 640)`` -> ``"320 x2, 640"``: repeated channels written once with their count."""
    runs: list[list[int]] = []
    for c in chans:
        if runs and runs[-1][0] == c:
            runs[-1][1] += 1
        else:
            runs.append([c, 1])
    return ", ".join(f"{c} x{n}" if n > 1 else str(c) for c, n in runs)


def _weak(obj: Any) -> weakref.ref | None:
    """A weak reference to ``obj``, or ``None`` when it takes none (what depends on it is then rebuilt)."""
    try:
        return weakref.ref(obj)
    except TypeError:
        return None


def _version(t: torch.Tensor) -> int | None:
    """The tensor's in-place modification count; ``None`` for an inference tensor (ComfyUI samples in inference
    mode, where tensors count none)."""
    try:
        return t._version
    except RuntimeError:
        return None


def merge_controls(out: dict[str, list], prev: dict[str, list] | None) -> dict[str, list]:
    """Sum a previous control's output into ours index-wise (ComfyUI's convention).

    Keys ``input``/``middle``/``output`` are always present; ``None`` entries are holes. ``out``'s tensors
    must be fresh (made for this call): the previous control's are added into them in place when shape
    and dtype match (no new tensor); ``prev``'s tensors are never modified.
    """
    if prev is None:
        return out
    for key in ("input", "middle", "output"):
        mine = out[key]
        for i, p in enumerate(prev.get(key, [])):
            if i >= len(mine):
                mine.append(p)
            elif p is not None:
                m = mine[i]
                if m is None:
                    mine[i] = p
                elif m.shape == p.shape and m.dtype == p.dtype:
                    m.add_(p)
                else:
                    try:
                        mine[i] = p + m
                    except RuntimeError as exc:
                        raise InputError(
                            f"the control chained before this ControlNet gives its {key} residual #{i} the shape "
                            f"{tuple(p.shape)}, this one {tuple(m.shape)}: ControlNets (and T2I-Adapters) in one "
                            "chain must be made for the same model family. Remove the one that does not fit."
                        ) from exc
    return out


class AffordanceControl:
    """A ControlNet applied with a hint, strength, window, per-residual weights, schedule and mask.

    Args:
        network: our host-free :class:`ControlNet` (possibly built with ComfyUI's ops).
        patcher: the ComfyUI ``ModelPatcher`` that loads/offloads ``network`` (``None`` outside ComfyUI).
        manual_cast_dtype: compute dtype when weights are stored in another one.
        name: file name, for messages.
    """

    def __init__(
        self,
        network: ControlNet,
        patcher: Any = None,
        *,
        manual_cast_dtype: torch.dtype | None = None,
        name: str = "ControlNet",
    ) -> None:
        self.network = network
        self.patcher = patcher
        self.manual_cast_dtype = manual_cast_dtype
        self.name = name
        # Contract attributes read by ComfyUI.
        self.previous_controlnet: Any = None
        self.extra_hooks: Any = None
        self.concat_mask = False
        self.extra_args: dict[str, Any] = {}
        # ComfyUI 0.23+ (MultiGPU work units): one deep clone per extra device, made by deepclone_multigpu and
        # chained per device by ComfyUI; it reads this dict for every run (also on one GPU), so it must exist.
        self.multigpu_clones: dict[torch.device, AffordanceControl] = {}
        # AnimateDiff-Evolved's sliding context sets these before each window's model call (it refuses a control
        # object without ``sub_idxs``): the window's frame indices within the whole video, the video's length and
        # the window's. Per run: cleared by pre_run and cleanup; ``sub_idxs`` exists only during a run (see there).
        self._in_run = False
        self._sub_idxs: list[int] | None = None
        self.full_latent_length = 0
        self.context_length = 0
        # Read and written by tiling hosts written for ComfyUI's ControlNet (Tiled Diffusion): they build each tile
        # batch's hint from cond_hint_original with these settings and set it as cond_hint before each call.
        # Ours never sets cond_hint; None means the hint is made from cond_hint_original. Cleared by pre_run.
        self.cond_hint: torch.Tensor | None = None
        self.compression_ratio = HINT_DOWNSCALE
        self.upscale_algorithm = "nearest-exact"
        self.vae: Any = None
        self.latent_format: Any = None
        self.extra_concat_orig: list = []
        # Settings (shared by copies only through copy()).
        self.cond_hint_original: torch.Tensor | None = None
        self._applied_size: tuple[int, ...] | None = None  # the hint's size as the Apply node set it
        self.strength = 1.0
        self.timestep_percent_range = (0.0, 1.0)
        self.weights = ControlWeights()
        self.schedule: StrengthSchedule | None = None
        self.mask: torch.Tensor | None = None
        self.reuse: ReusePolicy | None = None  # lossy residual reuse (AST_ControlResidualReuse); None = exact
        self.cuda_graphs = graphs_requested()  # replay the forward as a CUDA graph where it is safe (lossless)
        self.graph_backend: GraphBackend | None = None  # None: CUDA graphs (tests pass a stand-in)
        self._graph: GraphedControlNet | None = None
        # sampling progress from a sigma, built for one model's sigmas and kept over runs (building it asks the
        # host for a thousand sigmas, each a wait for the GPU when the model's tables live there)
        self._progress: ProgressMap | None = None
        self._progress_for: weakref.ref | None = None  # the model_sampling it was built for
        self._reset_run()

    # ----- configuration -------------------------------------------------------------------------
    def _drop_recordings(self) -> None:
        """Free the CUDA-graph recordings: they hold device memory and live for one run."""
        if self._graph is not None:
            self._graph.release()
            self._graph = None

    def _reset_run(self) -> None:
        """Forget the run: its window and sampling, and what it keeps on the device."""
        self._window: tuple[float, float] | None = None
        self._sampling: Any = None
        self._drop_device_state()

    def _drop_device_state(self) -> None:
        """Drop what a run keeps on the device (recordings, encoded hints, masks, row factors, reused residuals);
        a later call makes again what it needs."""
        self._drop_recordings()
        self._encoded_hints: dict[tuple, torch.Tensor] = {}  # (h, w, device, dtype) -> encoded hint
        self._hint_layouts: dict[tuple, torch.Tensor] = {}  # (that key, rows, chunks) -> hint batch mapped
        self._mask_cache: dict[tuple, torch.Tensor] = {}
        self._factor_cache: dict[tuple, torch.Tensor | None] = {}
        self._reuse_cache: ResidualCache | None = None
        # hints set by a tiling host, encoded: id -> (weak reference to the hint, its version or None, encoded hint,
        # token); the token (never reused, unlike an id) tells the reuse cache one tile's hint from another's
        self._given_hints: dict[int, tuple[weakref.ref, int | None, torch.Tensor, int]] = {}
        self._given_tokens = 0

    @property
    def num_residuals(self) -> int:
        """13 for SD1.x/SD2.x, 10 for SDXL."""
        return self.network.config.num_residuals

    @property
    def family_label(self) -> str:
        """SD1.x, SD2.x or SDXL."""
        return self.network.config.family.label

    def copy(self) -> AffordanceControl:
        """A new object sharing the network and patcher, with the same settings and no per-run state."""
        c = AffordanceControl(self.network, self.patcher, manual_cast_dtype=self.manual_cast_dtype, name=self.name)
        c.cond_hint_original = self.cond_hint_original
        c._applied_size = self._applied_size
        c.strength = self.strength
        c.timestep_percent_range = self.timestep_percent_range
        c.weights = self.weights
        c.schedule = self.schedule
        c.mask = self.mask
        c.reuse = self.reuse
        c.cuda_graphs = self.cuda_graphs
        c.graph_backend = self.graph_backend
        c.extra_args = dict(self.extra_args)
        c.extra_hooks = self.extra_hooks.clone() if self.extra_hooks is not None else None
        return c

    def set_cond_hint(
        self,
        cond_hint: torch.Tensor,
        strength: float = 1.0,
        timestep_percent_range: tuple[float, float] = (0.0, 1.0),
        vae: Any = None,
        extra_concat: list | None = None,
    ) -> AffordanceControl:
        """ComfyUI's Apply nodes call this on a copy: ``(B, C, H, W)`` hint in ``[0, 1]``. Returns self."""
        if extra_concat:
            raise InputError(
                f"{self.name} is an SD-family ControlNet; it takes no extra concatenated inputs (got "
                f"{len(extra_concat)}), which only ComfyUI's inpainting ControlNets of other families use. Apply it with "
                "an Apply ControlNet node."
            )
        self.cond_hint_original = cond_hint
        self._applied_size = tuple(cond_hint.shape[-2:])
        self.strength = float(strength)
        self.timestep_percent_range = (float(timestep_percent_range[0]), float(timestep_percent_range[1]))
        self._reset_run()
        return self

    def configure(
        self,
        *,
        weights: ControlWeights | None = None,
        schedule: StrengthSchedule | None = None,
        mask: torch.Tensor | None = None,
    ) -> AffordanceControl:
        """Set our extras: per-residual weights (checked against this family now), schedule, mask.

        ``mask`` is ``(B, H, W)`` float in ``[0, 1]`` (B = 1 or the per-chunk batch), resized to each residual.
        """
        if weights is not None:
            weights.resolve(self.num_residuals, f"this {self.family_label} ControlNet")
            self.weights = weights
        self.schedule = schedule
        self.mask = mask
        self._reset_run()  # masks, row factors and reused residuals of the old settings must not survive
        return self

    def set_reuse(self, policy: ReusePolicy | None) -> AffordanceControl:
        """Reuse residuals across evaluations (lossy) per ``policy``; ``None`` or ``every_k == 1`` is exact."""
        self.reuse = policy
        self._reuse_cache = None
        return self

    @property
    def reuse_stats(self) -> ReuseStats | None:
        """Computed/reused counts of the current run (``None`` when reuse is off or nothing ran yet)."""
        return None if self._reuse_cache is None else self._reuse_cache.stats

    def set_previous_controlnet(self, controlnet: Any) -> AffordanceControl:
        """Chain onto another control object (ours or ComfyUI's). Returns self."""
        self.previous_controlnet = controlnet
        return self

    def set_extra_arg(self, argument: str, value: Any = None) -> None:
        """Accepted for interface compatibility; SD-family ControlNets take no extra arguments."""
        log.warning("%s ignores extra argument %r (only union ControlNets use one)", self.name, argument)
        self.extra_args[argument] = value

    def preprocess_image(self, image: torch.Tensor) -> torch.Tensor:
        """The hint as the network takes it, for hosts that build hints themselves: SD ControlNets take the
        ``(B, C, H, W)`` image in ``[0, 1]`` unchanged."""
        return image

    # ----- ComfyUI's sampling contract -----------------------------------------------------------
    def pre_run(self, model: Any, percent_to_timestep_function: Callable[[float], float]) -> None:
        """Check the family against the model, and turn the window into sigmas (``t`` is a sigma)."""
        unet_config = getattr(getattr(model, "model_config", None), "unet_config", None) or {}
        ctx = unet_config.get("context_dim")
        my_ctx = self.network.config.context_dim
        transformer = {"image_model", "audio_model"} & unet_config.keys()
        if unet_config and (transformer or (ctx is None and "model_channels" not in unet_config)):
            # a transformer model (Flux, SD3, HunyuanDiT...; some report a text width too): its config names no
            # UNet, and our residuals would fail deep in the sampler
            raise FamilyMismatchError(
                f"{self.name} is an {self.family_label} ControlNet but the model being sampled is not an SD1.x, "
                f"SD2.x or SDXL UNet ({unet_config.get('image_model', 'another architecture')}). Use a ControlNet "
                "made for that model with ComfyUI's own ControlNet nodes."
            )
        if ctx is not None and ctx != my_ctx:
            raise FamilyMismatchError(
                f"{self.name} is an {self.family_label} ControlNet (text width {my_ctx}) but the model being sampled is "
                f"{CONTEXT_FAMILIES.get(ctx, f'a model with text width {ctx}')}. Load a ControlNet made for that model."
            )
        theirs = _unet_residuals(unet_config)
        mine = self.network.config.residual_channels()
        if theirs is not None and theirs != mine:
            # ComfyUI adds residuals to skip connections by position and skips those that do not fit, with a
            # warning in the log: the run would complete with misplaced control, or none
            raise FamilyMismatchError(
                f"{self.name} does not fit the model being sampled: its {len(mine)} residuals have "
                f"{_channels(mine)} channels, but the model's UNet takes {len(theirs)} with {_channels(theirs)} "
                "(a UNet of another shape, e.g. a distilled or pruned one such as BK-SDM). Use a ControlNet trained "
                "for this model's architecture."
            )
        latent = getattr(getattr(model, "latent_format", None), "latent_channels", None)
        if isinstance(latent, int) and latent != self.network.config.in_channels:
            # ComfyUI hands a ControlNet the latent alone (an inpainting UNet's extra mask and image channels are
            # added inside the UNet), so the first convolution would fail at the first step
            raise FamilyMismatchError(
                f"{self.name} takes latents of {self.network.config.in_channels} channels, but the model being "
                f"sampled works on {latent}-channel latents, which is what a ControlNet is given (an inpainting "
                "UNet's extra mask and image channels are not). Use a ControlNet whose first layer takes "
                f"{latent} channels."
            )
        start, end = self.timestep_percent_range
        self._window = (percent_to_timestep_function(start), percent_to_timestep_function(end))
        sampling = getattr(model, "model_sampling", None)
        built_for = self._progress_for() if self._progress_for is not None else None
        if sampling is None or built_for is not sampling:
            self._progress = None  # a map built for another model's sigmas (or for a model we cannot tell apart)
        reuse = self.reuse
        needs_progress = self.schedule is not None or (reuse is not None and reuse.lossy and reuse.windowed)
        if needs_progress and self._progress is None:
            self._progress = ProgressMap(percent_to_timestep_function)
            self._progress_for = _weak(sampling)
        self._sampling = sampling
        self._clear_window_frames()  # an earlier run's sliding-context window never selects this run's hints
        self.cond_hint = None  # nor a tiling host's last tile
        self._in_run = True
        self._reuse_cache = None  # a new run never reuses residuals of an earlier one
        self._drop_recordings()  # nor recordings (if the last run ended without cleanup)
        if self.previous_controlnet is not None:
            self.previous_controlnet.pre_run(model, percent_to_timestep_function)

    def get_models(self) -> list:
        """ModelPatchers to load with the UNet: our MultiGPU clones' (each alone), the chain's, then ours.

        ComfyUI asks for them while preparing a run, before it loads any model: what an earlier run left on the
        device is dropped here. A run that is cancelled or fails ends without ComfyUI's cleanup, and its
        recordings, encoded hints or reused residuals would otherwise be held while the next run's models load.
        Settings and the run's window are kept: called at any other time, this costs only recomputation.
        """
        self._drop_device_state()
        for clone in self.multigpu_clones.values():
            clone._drop_device_state()
        out = [p for clone in self.multigpu_clones.values() for p in clone._own_models()]
        out += self.previous_controlnet.get_models() if self.previous_controlnet is not None else []
        return out + self._own_models()

    def _own_models(self) -> list:
        """This object's ModelPatcher alone (not the chain's, nor its clones')."""
        return [self.patcher] if self.patcher is not None else []

    def get_instance_for_device(self, device: torch.device) -> AffordanceControl:
        """The clone that runs on ``device`` under ComfyUI's MultiGPU work units (self where there is none)."""
        return self.multigpu_clones.get(device, self)

    def deepclone_multigpu(self, load_device: torch.device, autoregister: bool = False) -> AffordanceControl:
        """A copy with its own network and ModelPatcher for ``load_device`` (ComfyUI 0.23+ MultiGPU work units).

        ComfyUI makes one per extra device for every control of a chain, chains the clones per device and
        runs each device's model calls in its own thread. The clone replays no CUDA graphs (eager, lossless):
        recordings are made for one device and stream. ``autoregister`` keeps it in ``multigpu_clones``.
        """
        c = self.copy()
        c.network = copy_module.deepcopy(self.network)
        if self.patcher is not None:
            from ._host import comfy_model_patcher

            c.patcher = comfy_model_patcher().ModelPatcher(
                c.network, load_device=load_device, offload_device=self.patcher.offload_device
            )
        c.cuda_graphs = False
        if autoregister:
            self.multigpu_clones[load_device] = c
        return c

    def get_extra_hooks(self) -> list:
        """Hook groups of the chain (ours has none unless ComfyUI set one)."""
        out = self.previous_controlnet.get_extra_hooks() if self.previous_controlnet is not None else []
        return out + ([self.extra_hooks] if self.extra_hooks is not None else [])

    def inference_memory_requirements(self, dtype: torch.dtype) -> int:
        """Extra bytes needed at inference (the chain's; our weights are counted through the patcher)."""
        if self.previous_controlnet is not None:
            return int(self.previous_controlnet.inference_memory_requirements(dtype))
        return 0

    def cleanup(self) -> None:
        """Forget per-run state; the object is reused by the next prompt."""
        if self.previous_controlnet is not None:
            self.previous_controlnet.cleanup()
        for clone in self.multigpu_clones.values():  # each alone: ComfyUI chained it to other clones
            chained, clone.previous_controlnet = clone.previous_controlnet, None
            try:
                clone.cleanup()
            finally:
                clone.previous_controlnet = chained
        cache = self._reuse_cache
        if cache is not None and cache.stats.reused:
            log.info(
                "%s: ControlNet computed %d times, reused %d times (every_k_steps=%d, lossy)",
                self.name,
                cache.stats.computed,
                cache.stats.reused,
                cache.policy.every_k,
            )
        self._clear_window_frames()
        self.cond_hint = None
        self._in_run = False
        self._reset_run()

    @property
    def _lossy(self) -> bool:
        return self.reuse is not None and self.reuse.lossy

    @property
    def _needs_sigma(self) -> bool:
        """Whether a call must read its sigma on the host: a window narrower than the whole run, a schedule or reuse."""
        return self.timestep_percent_range != (0.0, 1.0) or self.schedule is not None or self._lossy

    @property
    def sub_idxs(self) -> list[int] | None:
        """The frames of the video a sliding-context window samples, set by AnimateDiff-Evolved for each window.

        Only there from ``pre_run`` to ``cleanup``: Advanced-ControlNet takes any object with this attribute for
        one of its own, and its Apply node would call its own objects' methods on ours (``disarm``...); during
        sampling AnimateDiff-Evolved needs it, or refuses the control.

        Raises:
            AttributeError: outside a sampling run (``hasattr`` is then False).
        """
        if not self._in_run:
            raise AttributeError(f"{type(self).__name__} has sub_idxs only while sampling")
        return self._sub_idxs

    @sub_idxs.setter
    def sub_idxs(self, frames: list[int] | None) -> None:
        self._sub_idxs = frames

    def _clear_window_frames(self) -> None:
        """Forget AnimateDiff-Evolved's window (it sets the attributes for each window and never clears them)."""
        self._sub_idxs = None
        self.full_latent_length = 0
        self.context_length = 0

    def _window_frames(self, per: int, transformer_options: Mapping[str, Any]) -> tuple[int, ...] | None:
        """The frames of the video that this model call samples, when it samples one context window of it.

        Two hosts tell it: AnimateDiff-Evolved's sliding context sets ``sub_idxs`` on the control object,
        ComfyUI's Context Windows nodes put the window (``index_list`` along ``dim``) in the transformer options.
        Only a window along the batch (``dim`` 0, the frames of an SD video) of ``per`` frames counts: ComfyUI
        leaves the last window in the options after its windowed calls. ComfyUI 0.21+'s "causal window fix" (on
        by default) samples a window with the frame before it in front (``causal_anchor_index``), so the call
        holds that frame too.
        """
        listed: Any = self._sub_idxs  # what the host gave: checked below
        if listed is None:
            window = transformer_options.get("context_window")
            if window is None or getattr(window, "dim", 0) != 0:
                return None
            listed = getattr(window, "index_list", None)
            anchor = getattr(window, "causal_anchor_index", None)
            if listed is not None and isinstance(anchor, int) and anchor >= 0:
                listed = [anchor, *listed]
        try:
            frames = tuple(int(i) for i in listed)
        except (TypeError, ValueError):
            return None
        return frames if len(frames) == per else None

    def _multiplier(self, sigma: float | None) -> float:
        m = self.strength
        if self.schedule is not None and self._progress is not None and sigma is not None:
            m *= self.schedule.at(self._progress.progress(sigma))
        return m

    def _given_hint(self, x: torch.Tensor) -> torch.Tensor | None:
        """The hint a tiling host set as ``cond_hint`` for this call: ``(rows, C, 8h, 8w)`` for the latent ``x``.

        Tiled Diffusion crops the hint for each batch of tiles and sets it before each call, as ComfyUI's
        ControlNet reads it. A hint of another size is not for this call (ComfyUI's ControlNet remakes it then).
        """
        given = self.cond_hint
        if not isinstance(given, torch.Tensor):
            return None
        cfg = self.network.config
        if given.ndim != 4 or given.shape[1] != cfg.hint_channels or given.shape[0] < 1:
            raise HintError(
                f"{self.name} was given a hint of shape {tuple(given.shape)} as cond_hint (by a node that tiles the "
                f"sampling, such as Tiled Diffusion); it takes (N, {cfg.hint_channels}, H, W)."
            )
        if given.shape[-2:] != (x.shape[-2] * HINT_DOWNSCALE, x.shape[-1] * HINT_DOWNSCALE):
            return None
        return given

    def _check_mask_still_fits(self, given: torch.Tensor | None) -> None:
        """Refuse a mask when a node tiles the sampling: it crops the hint to each tile but cannot crop our mask.

        Tiled Diffusion sets each tile's hint as ``cond_hint``; Ultimate SD Upscale copies the control and puts
        the tile's crop in ``cond_hint_original`` (a hint of another size than the Apply node set). The mask would
        be squeezed into every tile.
        """
        hint, size = self.cond_hint_original, self._applied_size
        if given is not None:
            how = "sets each tile's hint"
        elif hint is not None and size is not None and tuple(hint.shape[-2:]) != size:
            (h, w), (th, tw) = size, hint.shape[-2:]
            how = f"replaced the {w}x{h} hint with a {tw}x{th} crop"
        else:
            return
        raise InputError(
            f"{self.name} has a mask, but a node tiles the sampling (Tiled Diffusion, Ultimate SD Upscale...) and "
            f"{how}: it crops the hint to each tile, not the mask, which would be squeezed into every tile. Remove the "
            "mask from Apply ControlNet (Affordance), or sample without tiling."
        )

    def _encode_given(
        self, given: torch.Tensor, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, int | None]:
        """``given`` encoded, and a token naming it (``None``: not kept, so never reused).

        It is encoded once while the host keeps the same tensor unchanged (Tiled Diffusion sets the same tensor
        for a batch of tiles at every step); entries whose tensor the host dropped are dropped with it.
        """
        entry = self._given_hints.get(id(given))
        version = _version(given)
        if entry is not None and entry[0]() is given and entry[1] == version:
            return entry[2], entry[3]
        for key in [k for k, (ref, *_) in self._given_hints.items() if ref() is None]:
            del self._given_hints[key]
        enc = self.network.encode_hint(given.to(device, dtype))
        ref = _weak(given)
        if ref is None:
            return enc, None
        self._given_tokens += 1
        self._given_hints[id(given)] = (ref, version, enc, self._given_tokens)
        return enc, self._given_tokens

    def _encoded(
        self,
        x: torch.Tensor,
        dtype: torch.dtype,
        n: int,
        chunks: int,
        frames: tuple[int, ...] | None = None,
        given: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The encoded hint for ``n`` rows in ``chunks`` chunks, made once per run and layout (no per-step work).

        The hint is resized and encoded once per latent size, device and dtype (every size is kept: area
        conditionings of two sizes alternate within each step); its batch is then mapped onto each batch
        layout once (``(N or 1, C, h, w)`` -> ``(n, C, h, w)`` or kept at 1 row). Under a context window
        (``frames``, see :meth:`_window_frames`) a batch with more hints than the call has frames gives the
        window's frames' hints (one gather per call, as windows move). A hint ``given`` by a tiling host
        (:meth:`_given_hint`) replaces the hint made from ``cond_hint_original``.
        """
        if given is not None:
            encoded = self._encode_given(given, x.device, dtype)[0]
            if encoded.shape[0] == 1 or encoded.shape[0] == n:
                return encoded
            check_hint_batch(encoded.shape[0], n // max(chunks, 1))
            return broadcast_batch(encoded, n, chunks)
        if self.cond_hint_original is None:
            raise HintError(f"{self.name} has no hint image: apply it with an Apply ControlNet node first.")
        h, w = x.shape[-2] * HINT_DOWNSCALE, x.shape[-1] * HINT_DOWNSCALE
        key = (h, w, x.device, dtype)
        enc = self._encoded_hints.get(key)
        if enc is None:
            # resized where it lies, then moved: a large hint batch never sits on the GPU at full size
            hint = fit_hint(self.cond_hint_original, w, h).to(x.device, dtype)
            enc = self._encoded_hints[key] = self.network.encode_hint(hint)
        if enc.shape[0] == 1 or (chunks <= 1 and enc.shape[0] == n):
            return enc
        if frames is not None and enc.shape[0] > n // max(chunks, 1):
            return window_batch(enc, frames, max(chunks, 1))
        layout = (key, n, chunks)
        if layout not in self._hint_layouts:
            check_hint_batch(enc.shape[0], n // max(chunks, 1))
            self._hint_layouts[layout] = broadcast_batch(enc, n, chunks)
        return self._hint_layouts[layout]

    def _row_scale(self, negatives: tuple[bool, ...] | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """Per-row multiplier ``(n, 1, 1, 1)`` for the negative rows, or ``None`` when every row keeps 1."""
        uncond = self.weights.effective_uncond_multiplier
        if uncond == 1.0 or negatives is None or not any(negatives):
            return None
        rows = torch.tensor([uncond if neg else 1.0 for neg in negatives], device=device, dtype=dtype)
        return rows.view(-1, 1, 1, 1)

    def _factor(
        self,
        n: int,
        chunks: int,
        negatives: tuple[bool, ...] | None,
        h: int,
        w: int,
        device: torch.device,
        dtype: torch.dtype,
        frames: tuple[int, ...] | None = None,
    ) -> torch.Tensor | None:
        """The per-row uncond multiplier times the mask, made once per run and layout (no per-step copies).

        Under a context window whose frames pick rows of the mask (``frames``), it is made for each call
        instead: windows move, and one cached factor per window and residual size would grow with the video.
        """
        key = (n, chunks, negatives, h, w, device, dtype)
        if frames is None and key in self._factor_cache:
            return self._factor_cache[key]
        rows = self._row_scale(negatives, device, dtype)
        mask = self._mask(self.mask, n, chunks, h, w, device, dtype, frames) if self.mask is not None else None
        factor = mask if rows is None else (rows if mask is None else rows * mask)
        if frames is None:
            self._factor_cache[key] = factor
        return factor

    def _mask(
        self,
        mask: torch.Tensor,
        n: int,
        chunks: int,
        h: int,
        w: int,
        device: torch.device,
        dtype: torch.dtype,
        frames: tuple[int, ...] | None = None,
    ) -> torch.Tensor:
        """``mask`` (this control's) resized to ``h x w`` for ``n`` rows in ``chunks`` chunks (the window's rows for ``frames``)."""
        key = (n, chunks, h, w, device, dtype) if frames is None else (h, w, device, dtype)
        if key not in self._mask_cache:
            m = mask_for(mask, h, w).to(device, dtype)  # resized where it lies, then moved
            self._mask_cache[key] = m if frames is not None else broadcast_batch(m, n, chunks)
        if frames is None:
            return self._mask_cache[key]
        return window_batch(self._mask_cache[key], frames, max(chunks, 1), "masks")

    def _reused_or_computed(
        self,
        policy: ReusePolicy,
        sigma: float,
        x_noisy: torch.Tensor,
        batched_number: int,
        transformer_options: dict,
        conditioning: tuple[torch.Tensor | None, ...],
        compute: Callable[[], Outputs],
        place: Hashable = None,
    ) -> Outputs:
        """Unweighted residuals from the run's reuse cache, keyed by ComfyUI's batch layout.

        The layout is the latent's shape, dtype and device, the cond/uncond order of the chunks, the ids of
        the conditioning entries batched together (``uuids``, when ComfyUI gives them) and ``place``, which part
        of a larger picture the call samples (a context window's frames, a tiling host's tile), so residuals of
        one prompt, area, window or tile are never served to another.
        """
        if self._reuse_cache is None:
            self._reuse_cache = ResidualCache(policy)
        layout = (
            tuple(x_noisy.shape),
            x_noisy.dtype,
            x_noisy.device,
            batched_number,
            tuple(transformer_options.get("cond_or_uncond", ())),
            tuple(str(u) for u in transformer_options.get("uuids", ())),
            place,
        )
        progress = self._progress.progress(sigma) if self._progress is not None else None
        return self._reuse_cache.get(sigma, layout, conditioning, compute, reuse_allowed=policy.allows(progress))

    def get_control(
        self, x_noisy: torch.Tensor, t: torch.Tensor, cond: dict, batched_number: int, transformer_options: dict
    ) -> dict[str, list] | None:
        """Residuals for one model call, summed with the previous control's.

        Args:
            x_noisy: ``(N, 4, h, w)`` raw noisy latent (N = chunks x per-chunk batch).
            t: ``(N,)`` sigmas.
            cond: the model call's conditioning (``c_crossattn``, ``y``..., and our Apply node's per-row marks: which
                rows are negative (:mod:`.negative_rows`) and where each row lies, so that rows holding the same
                inputs share the network's text-free layers (:mod:`.row_places`)).
            batched_number: number of cond/uncond chunks in ``x_noisy``.
            transformer_options: holds ``cond_or_uncond`` (per chunk: its index in the guider's call), the
                fallback for finding negative rows when ``cond`` has no marks from our Apply node
                (:mod:`.negative_rows`), and under ComfyUI's Context Windows nodes the window being sampled
                (``context_window``), whose frames pick the hints and masks of a per-frame batch
                (AnimateDiff-Evolved's sliding context sets ``sub_idxs`` instead).

        Returns:
            A new ``{"input": [], "middle": [mid], "output": [residual per input block]}``, or the previous
            control's output (or ``None``) outside the window or at zero strength.
        """
        sigma = None
        if self._needs_sigma:  # reading the sigma waits for the GPU: only when the window, schedule or reuse need it
            # read before the controls below queue their work: read after, it would wait for that work too, and the
            # GPU would idle while this call prepares its own (with no wait the host queues ours behind theirs)
            sigma = float(t[0])
        prev = None
        if self.previous_controlnet is not None:
            prev = self.previous_controlnet.get_control(x_noisy, t, cond, batched_number, transformer_options)
        if sigma is not None and self._window is not None and (sigma > self._window[0] or sigma < self._window[1]):
            return prev
        mult = self._multiplier(sigma)
        weights = self.weights.resolve(self.num_residuals, f"this {self.family_label} ControlNet")
        if mult == 0.0 or not any(weights):
            if self._reuse_cache is not None:
                self._reuse_cache.invalidate()  # never bridge a gap in control with old residuals
            return prev  # no work whose weight is zero

        net = self.network
        dtype = self.manual_cast_dtype or net.dtype
        n = x_noisy.shape[0]
        per = n // max(batched_number, 1)
        frames = self._window_frames(per, transformer_options)
        given = self._given_hint(x_noisy)
        if self.mask is not None:
            self._check_mask_still_fits(given)
        mask_frames = frames if self.mask is not None and self.mask.shape[0] > per else None
        sampling = self._sampling
        if sampling is None:
            raise RuntimeError(f"{self.name} was called before pre_run; ComfyUI's sampler always calls pre_run first.")
        context = cond.get("crossattn_controlnet", cond["c_crossattn"]).to(x_noisy.device, dtype)
        y = cond.get("y") if net.config.adm_in_channels is not None else None
        if net.config.adm_in_channels is not None and y is None:
            raise FamilyMismatchError(f"{self.name} is an SDXL ControlNet but the model gives no SDXL label (y).")
        if y is not None:
            y = y.to(x_noisy.device, dtype)

        needed = tuple(w != 0.0 for w in weights)  # residuals weighted zero are never computed
        uncond = self.weights.effective_uncond_multiplier
        negatives = None  # per row: from the negative side (only needed when that side is weighted apart)
        if uncond != 1.0:
            order = transformer_options.get("cond_or_uncond", ())
            negatives = row_flags(cond, order, n, batched_number, tiled=given is not None)
        runs = None  # rows whose control is weighted zero are never computed either
        if negatives is not None and any(negatives) and uncond == 0.0:
            runs = kept_runs(negatives)
            if not runs:
                return prev  # a call of negative rows only (e.g. SelfAttentionGuidance's extra pass)
        shared = shared_rows(cond, n, runs) if given is None and y is None else None  # rows with the same inputs

        def compute() -> list[torch.Tensor | None]:
            enc = self._encoded(x_noisy, dtype, n, batched_number, frames, given)
            xs, ts, ctx, label = x_noisy, t, context, y
            if runs is not None:  # only the kept rows' inputs are taken (and converted below)
                xs, ts, ctx = take_rows(x_noisy, runs), take_rows(t, runs), take_rows(context, runs)
                label = None if y is None else take_rows(y, runs)
                enc = enc if enc.shape[0] == 1 else take_rows(enc, runs)
            x = sampling.calculate_input(ts, xs).to(dtype)
            timesteps = sampling.timestep(ts)
            if not self.cuda_graphs:
                outs = net(x, None, timesteps, ctx, label, encoded_hint=enc, needed=needed, shared=shared).as_list()
            else:
                if self._graph is None:
                    self._graph = GraphedControlNet(net, self.graph_backend)
                outs = self._graph(x, timesteps, ctx, label, enc, needed, shared)
                if runs is None and self._lossy:  # a recording's outputs are overwritten by its next replay
                    return [None if o is None else o.clone() for o in outs]
            if runs is None:
                return outs
            return [None if o is None else spread_rows(o, runs, n) for o in outs]

        policy = self.reuse if self._lossy else None
        lossy = policy is not None and sigma is not None  # a lossy control always reads the sigma (_needs_sigma)
        if policy is not None and sigma is not None:
            # a tiling host's tiles differ only by their hint: its token (the same tensor for a tile at every
            # step) keys them apart; a hint not kept is never reused
            place: Hashable = frames
            if given is not None:
                token = self._encode_given(given, x_noisy.device, dtype)[1]
                place = (frames, token if token is not None else object())
            outs = self._reused_or_computed(
                policy, sigma, x_noisy, batched_number, transformer_options, (context, y), compute, place
            )
        else:
            outs = compute()
        if self.mask is not None and mask_frames is None:
            check_hint_batch(self.mask.shape[0], per, "masks")
        scaled: list[torch.Tensor | None] = []
        # skipped negative rows are zeros already: only the mask is left to apply (no per-row scaling pass)
        row_kinds = negatives if runs is None else None
        for r, w in zip(outs, weights):
            if r is None:
                scaled.append(None)
                continue
            factor = self._factor(
                n, batched_number, row_kinds, r.shape[-2], r.shape[-1], r.device, r.dtype, mask_frames
            )
            # Fresh outputs are ours to scale in place; kept (reusable) ones get one new tensor each. A scale of
            # exactly 1 (strength 1, balanced weights: the usual case) launches no kernel (x * 1 is x, bit for bit).
            scale = mult * w
            if lossy and factor is None:
                scaled.append(r * scale)
                continue
            if factor is not None:
                r = r.mul_(factor) if not lossy else torch.mul(r, factor)
            scaled.append(r.mul_(scale) if scale != 1.0 else r)
        out = {"input": [], "middle": [scaled[-1]], "output": scaled[:-1]}
        return merge_controls(out, prev)
