"""Replaying a ControlNet forward as a CUDA graph: one capture per batch layout, checked, with an eager fallback.

An eager ControlNet step launches several hundred small kernels, and on a fast GPU the launches, not the
maths, set its cost. A CUDA graph records the launches once and replays them with one call. A graph
reads and writes fixed addresses, so :class:`GraphedControlNet` keeps static input buffers (the inputs
are copied in before each replay) and returns the graph's static outputs, which the next replay
overwrites.

Safety: a graph is captured only when every weight already sits on the input's device, no layer casts
or patches its weights per call (ComfyUI's low-VRAM streaming and manual casting do), and autograd is
off. A recording reads the weights at their addresses, so every call first checks that no weight was
replaced or moved (ComfyUI patches replace parameters; in-place updates are seen by the replay) and
records again if one was. Right after a capture the static outputs are filled with NaN, the recording is
replayed and its outputs are compared with an eager forward of the same inputs (so a recording that writes
nothing, e.g. one made on another device's stream, cannot pass); a failed capture or a replay that
disagrees turns graphs off for that layout and the eager forward is used, so the result never depends on
the graph. Only a ``RuntimeError`` (what CUDA and PyTorch raise for a capture that cannot be made) falls
back: anything else, such as a host's request to stop, is raised as an eager call would raise it. The
capture itself is behind :class:`GraphBackend` so that everything else here is exercised without a GPU.

Memory: the layouts of one runner share one memory pool (their intermediates are reused across layouts;
the outputs of one layout may be overwritten by another's replay, which the runner's contract allows:
outputs are valid until its next call), and the eager reference is dropped once checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

log = logging.getLogger("affordance.controlnet")

Outputs = list[torch.Tensor | None]
# one call's inputs: x, timesteps, context, y (or None), encoded hint
Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]


@dataclass
class Captured:
    """A recorded forward.

    Attributes:
        replay: re-runs the recorded kernels, reading the static inputs and overwriting ``outputs``.
        outputs: the static outputs (``None`` where a residual was not requested).
        reference: an eager forward of the same inputs, run just before the capture (the warm-up); the
            runner drops it once the recording is checked.
        handle: whatever keeps the recording alive (the ``torch.cuda.CUDAGraph``).
        pool: the memory pool the recording allocated from, to be shared by the runner's next captures.
    """

    replay: Callable[[], Any]
    outputs: Outputs
    reference: Outputs | None
    handle: Any = None
    pool: Any = None


class GraphBackend(Protocol):
    """What a graph runner needs from the device: whether it can capture, and the capture itself."""

    def why_not(self, network: nn.Module, x: torch.Tensor) -> str | None:
        """``None`` when ``network`` can be captured for inputs like ``x``, else the reason in words."""
        ...

    def capture(self, forward: Callable[[], Outputs], device: torch.device, pool: Any = None) -> Captured:
        """Warm ``forward`` up (the eager reference), then record it, allocating from ``pool`` (``None``: a new
        pool, returned in :attr:`Captured.pool`)."""
        ...


def weights_movable_reason(network: nn.Module, device: torch.device) -> str | None:
    """Why ``network``'s weights cannot be baked into a recording on ``device``, or ``None``.

    Weights must all be on ``device`` and no layer may cast or patch them per call (ComfyUI's ops set
    ``comfy_cast_weights`` for low-VRAM streaming and manual casting, and hold patch functions in
    ``weight_function``/``bias_function``).
    """
    for name, t in [*network.named_parameters(), *network.named_buffers()]:
        if t.device != device:
            return f"weight {name} is on {t.device}, not {device} (offloaded, e.g. low-VRAM mode)"
    for name, m in network.named_modules():
        if getattr(m, "comfy_cast_weights", False):
            return f"layer {name or 'root'} casts its weights per call (low-VRAM or manual-cast mode)"
        if getattr(m, "weight_function", None) or getattr(m, "bias_function", None):
            return f"layer {name or 'root'} patches its weights per call"
    if torch.is_grad_enabled() and any(p.requires_grad for p in network.parameters()):
        return "autograd is on (graphs are for inference)"
    return None


_CAPTURE_STREAMS: dict[torch.device, Any] = {}


def capture_stream(device: torch.device) -> Any:
    """The side stream every capture on ``device`` uses, made once (as PyTorch's own default capture stream).

    cuBLAS keeps a workspace per stream it has run on (32 MiB on an H100), allocated at the warm-up and read by
    every replay of a recording made there: a new stream per capture would leave one more behind each time.
    """
    if device.index is None:  # "cuda" names the current device: one key per physical device
        device = torch.device("cuda", torch.cuda.current_device())
    stream = _CAPTURE_STREAMS.get(device)
    if stream is None:
        stream = _CAPTURE_STREAMS[device] = torch.cuda.Stream(device)
    return stream


class CudaGraphBackend:
    """Captures with :class:`torch.cuda.CUDAGraph` (warm-up on a side stream, as PyTorch requires).

    Args:
        stream: the side stream to warm up and capture on; default :func:`capture_stream` (one per device).
            Recordings that will be replayed at the same time, on different streams, need different capture
            streams: a recording reuses its capture stream's cuBLAS workspace.
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def why_not(self, network: nn.Module, x: torch.Tensor) -> str | None:
        if x.device.type != "cuda":
            return f"the input is on {x.device}, not a CUDA device"
        return weights_movable_reason(network, x.device)

    def capture(self, forward: Callable[[], Outputs], device: torch.device, pool: Any = None) -> Captured:
        # on the weights' device (not whichever is current) and on a stream of that device: PyTorch's default
        # capture stream belongs to the device that was current when it was first made
        with torch.cuda.device(device):
            current = torch.cuda.current_stream(device)
            side = self.stream if self.stream is not None else capture_stream(device)
            side.wait_stream(current)
            with torch.cuda.stream(side):
                reference = forward()  # lazy library set-up (cuBLAS, cuDNN plans) happens here, not in the capture
            current.wait_stream(side)
            for r in reference:  # made on the side stream, read on the current one (e.g. returned when disagreeing)
                if r is not None:
                    r.record_stream(current)
            pool = torch.cuda.graph_pool_handle() if pool is None else pool
            graph = torch.cuda.CUDAGraph()
            # thread_local: CUDA calls of the host's other threads (previews, a server) must not break the capture
            with torch.cuda.graph(graph, pool=pool, stream=side, capture_error_mode="thread_local"):
                outputs = forward()
        return Captured(graph.replay, outputs, reference, graph, pool)


@dataclass
class _Layout:
    static: tuple[torch.Tensor | None, ...]
    captured: Captured | None  # None: this layout runs eagerly


def _signature(t: torch.Tensor | None) -> Hashable:
    return None if t is None else (tuple(t.shape), t.dtype, t.device, t.stride())


def agree(a: Outputs, b: Outputs, rtol: float = 2e-3) -> bool:
    """Whether two output lists match: same holes, and values within ``rtol`` of each tensor's range."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if (x is None) != (y is None):
            return False
        if x is None or y is None:
            continue
        if x.shape != y.shape:
            return False
        scale = float(y.detach().abs().amax()) if y.numel() else 0.0
        if not torch.allclose(x.detach().float(), y.detach().float(), rtol=rtol, atol=rtol * max(scale, 1e-6)):
            return False
    return True


class GraphedControlNet:
    """Runs a ControlNet forward through a recorded graph per input layout, else eagerly.

    One runner serves one caller for one sampling run: its outputs are overwritten by its next call
    (copy what must outlive it), and :meth:`release` frees the recordings' memory at the end of the run.

    Args:
        network: the ControlNet (its ``forward(x, hint, timesteps, context, y, encoded_hint=, needed=)``).
        backend: the capture; default :class:`CudaGraphBackend`.
        max_layouts: at most this many layouts are recorded; later ones run eagerly.
        check: compare each fresh recording with the eager forward before trusting it.
        max_rerecords: after the weights were replaced this many times, the runner stays eager.
    """

    def __init__(
        self,
        network: nn.Module,
        backend: GraphBackend | None = None,
        *,
        max_layouts: int = 4,
        check: bool = True,
        max_rerecords: int = 3,
    ) -> None:
        self.network = network
        self.backend: GraphBackend = backend if backend is not None else CudaGraphBackend()
        self.max_layouts = max_layouts
        self.check = check
        self.max_rerecords = max_rerecords
        self._layouts: dict[Hashable, _Layout] = {}
        # the modules' own tables, read again at each check: an entry may have been set to None since
        self._slots: list[tuple[dict[str, Any], str]] = [
            (table, name)
            for m in network.modules()
            for table in (m._parameters, m._buffers)
            for name, t in table.items()
            if t is not None
        ]
        self._weights: tuple[int, ...] | None = None  # the addresses the recordings read
        self._pool: Any = None  # the memory pool this runner's recordings share
        self.replays = 0
        self.eager_calls = 0
        self.rerecords = 0

    @property
    def recorded(self) -> int:
        """How many layouts currently replay a recording."""
        return sum(1 for v in self._layouts.values() if v.captured is not None)

    def release(self) -> None:
        """Drop every recording and static buffer (their memory returns to the allocator)."""
        self._layouts.clear()
        self._weights = None
        self._pool = None

    def _addresses(self) -> tuple[int, ...] | None:
        """Where every weight lives now (``None`` if one was removed): 0.2 us a tensor, 60 us for SD1.5 here."""
        try:
            return tuple(table[name].data_ptr() for table, name in self._slots)
        except (KeyError, AttributeError):
            return None

    def _drop_if_weights_changed(self) -> None:
        """Drop the recordings when a weight was replaced or moved since they were made (counted in ``rerecords``)."""
        if self._weights is None or self._addresses() == self._weights:
            return
        self.release()
        self.rerecords += 1
        if self.rerecords > self.max_rerecords:
            log.info("CUDA graphs off for this run: the ControlNet's weights were replaced %d times", self.rerecords)
        else:
            log.info("CUDA graphs: the ControlNet's weights were replaced or moved; recording again")

    def __call__(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        y: torch.Tensor | None,
        encoded_hint: torch.Tensor,
        needed: Sequence[bool] | None = None,
        shared: Sequence[int] | None = None,
    ) -> Outputs:
        """The residuals (middle last), as the network's forward with ``encoded_hint`` would give them.

        Args:
            x: ``(N, C, h, w)`` UNet input; timesteps ``(N,)``; context ``(N, S, D)``; y ``(N, A)`` or ``None``;
                encoded_hint ``(N or 1, model_channels, h, w)``; needed: one flag per residual or ``None``;
                shared: per row, the first row with the same inputs, or ``None`` (the network's ``shared``).

        Returns:
            One tensor per residual (``None`` where not needed). When recorded these are the static
            outputs, valid until this runner's next call.
        """
        inputs: Inputs = (x, timesteps, context, y, encoded_hint)
        flags = None if needed is None else tuple(bool(f) for f in needed)
        rows = None if shared is None else tuple(shared)
        if self.rerecords <= self.max_rerecords:
            self._drop_if_weights_changed()
        if self.rerecords > self.max_rerecords:
            return self._eager(inputs, flags, rows)
        # inference mode is part of the layout: static buffers made under it cannot be written outside it
        key = (tuple(_signature(t) for t in inputs), flags, rows, torch.is_inference_mode_enabled())
        layout = self._layouts.get(key)
        if layout is None:
            layout, outputs = self._record(key, inputs, flags, rows)
            if outputs is not None:
                return outputs
        if layout.captured is None:
            return self._eager(inputs, flags, rows)
        for dst, src in zip(layout.static, inputs):
            if dst is not None and src is not None:
                dst.copy_(src)
        layout.captured.replay()
        self.replays += 1
        return layout.captured.outputs

    def _eager(self, inputs: Inputs, flags: tuple[bool, ...] | None, rows: tuple[int, ...] | None) -> Outputs:
        self.eager_calls += 1
        x, timesteps, context, y, enc = inputs
        return self.network(x, None, timesteps, context, y, encoded_hint=enc, needed=flags, shared=rows).as_list()

    def _record(
        self, key: Hashable, inputs: Inputs, flags: tuple[bool, ...] | None, rows: tuple[int, ...] | None
    ) -> tuple[_Layout, Outputs | None]:
        """Record a new layout; returns it and, when recording produced them, this call's outputs."""
        eager = _Layout((), None)
        if self.recorded >= self.max_layouts:
            log.info("CUDA graphs: %d layouts recorded already; this one runs eagerly", self.max_layouts)
            self._layouts[key] = eager
            return eager, None
        reason = self.backend.why_not(self.network, inputs[0])
        addresses = self._addresses()
        if reason is None and addresses is None:
            reason = "one of its weights was removed, so a replaced weight could not be noticed"
        if reason is not None:
            log.info("CUDA graphs off for this ControlNet: %s", reason)
            self._layouts[key] = eager
            return eager, None
        static = tuple(None if t is None else t.clone() for t in inputs)
        sx, st, sctx, sy, senc = static

        def forward() -> Outputs:
            return self.network(sx, None, st, sctx, sy, encoded_hint=senc, needed=flags, shared=rows).as_list()

        try:
            captured = self.backend.capture(forward, inputs[0].device, self._pool)
            self._pool = captured.pool
            if self.check:  # the replay must write every output: what the capture left there does not count
                for o in captured.outputs:
                    if o is not None and o.is_floating_point():
                        o.fill_(float("nan"))
            captured.replay()
            if self.check and (captured.reference is None or not agree(captured.outputs, captured.reference)):
                log.warning("CUDA graphs off for this layout: the replay disagreed with the eager forward")
                self._layouts[key] = eager
                return eager, captured.reference
        except RuntimeError as exc:  # a capture that cannot be made falls back to eager; the result never depends on it
            log.warning("CUDA graphs off for this layout: capture failed (%s: %s)", type(exc).__name__, exc)
            self._layouts[key] = eager
            return eager, None
        captured.reference = None  # checked: its memory goes back now, not at the end of the run
        layout = _Layout(static, captured)
        self._layouts[key] = layout
        if self._weights is None:
            self._weights = addresses
        self.replays += 1
        return layout, captured.outputs
