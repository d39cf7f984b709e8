"""Convert ControlNets between the original (lllyasviel) and diffusers layouts, as safetensors.

Values are copied untouched (same dtype, same bytes), so ``original -> diffusers -> original`` is
bit-exact; the one exception is fp8 weights, which are read as fp16 (every fp8 value is exactly an fp16
value) and written so, at twice their size. Usage::

    python -m affordance.controlnet.convert SRC DST --to diffusers   # DST.safetensors or a folder
    python -m affordance.controlnet.convert SRC DST --to original [--prefix]

Every temporary file is this module's own (safetensors' writer, which leaves a hidden full-size temporary
file of its own when interrupted, is not used) and is removed on any exit that Python sees, Ctrl-C and,
from :func:`main`, SIGTERM included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

import torch

from .checkpoint import SAFETENSORS_DTYPES, check_source
from .config import ControlNetConfig
from .errors import ControlNetError, InputError, OutputError, UnknownFormatError
from .formats import ORIGINAL_PREFIX
from .keymap import original_to_diffusers
from .loader import ControlNetWeights, read_controlnet

log = logging.getLogger("affordance.controlnet")


def diffusers_config(config: ControlNetConfig) -> dict[str, object]:
    """The diffusers ``config.json`` of a ``ControlNetModel`` with this architecture.

    Raises:
        UnknownFormatError: the architecture has a level whose blocks differ in depth, which diffusers
            cannot express.
    """
    depths: list[int] = []
    attention: list[bool] = []  # per level: a cross-attention block type (its depth may be 0)
    i = 0
    for n in config.num_res_blocks:
        level = {(config.transformer_depth[b], config.has_attention(b)) for b in range(i, i + n)}
        i += n
        if len(level) != 1:
            raise UnknownFormatError(
                f"transformer depths / attention layers {sorted(level)} inside one level cannot be written for diffusers."
            )
        depth, attn = level.pop()
        depths.append(depth)
        attention.append(attn)
    if not config.has_middle_attention and config.middle_resblocks == 2:
        raise UnknownFormatError(
            "a middle block of two ResBlocks without attention cannot be written for diffusers: its UNetMidBlock2D "
            "has a single ResBlock. Keep this ControlNet in the original layout."
        )
    if len(set(config.num_res_blocks)) != 1:
        raise UnknownFormatError(f"diffusers needs the same number of blocks per level, got {config.num_res_blocks}.")
    widths = [m * config.model_channels for m in config.channel_mult]
    if config.num_head_channels == -1:
        heads: int | list[int] = config.num_heads
    else:
        heads = [w // config.num_head_channels for w in widths]
    sdxl = config.adm_in_channels is not None
    return {
        "_class_name": "ControlNetModel",
        "act_fn": "silu",
        "addition_embed_type": "text_time" if sdxl else None,
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": 256 if sdxl else None,
        "attention_head_dim": heads,
        "block_out_channels": widths,
        "class_embed_type": None,
        "conditioning_channels": config.hint_channels,
        "conditioning_embedding_out_channels": [16, 32, 96, 256],
        "controlnet_conditioning_channel_order": "rgb",
        "cross_attention_dim": config.context_dim,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "downsample_padding": 1,
        "encoder_hid_dim": None,
        "encoder_hid_dim_type": None,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "global_pool_conditions": config.global_average_pooling,
        "in_channels": config.in_channels,
        "layers_per_block": config.num_res_blocks[0],
        "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DCrossAttn" if config.has_middle_attention else "UNetMidBlock2D",
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "num_attention_heads": None,
        "num_class_embeds": None,
        "only_cross_attention": False,
        "projection_class_embeddings_input_dim": config.adm_in_channels,
        "resnet_time_scale_shift": "default",
        "transformer_layers_per_block": _layers_per_block(
            depths, attention, config.transformer_depth_middle if config.has_middle_attention else None
        ),
        "upcast_attention": False,
        "use_linear_projection": config.use_linear_in_transformer,
    }


def _layers_per_block(depths: list[int], attention: list[bool], middle: int | None) -> int | list[int]:
    """diffusers' ``transformer_layers_per_block``: one depth per level, the last one also the middle's.

    Levels without attention ignore their entry (written as 1); attention levels of depth 0 stay 0.
    ``middle`` is ``None`` for a middle block without attention (it reads no depth).
    """
    if all(d == 1 for d, a in zip(depths, attention) if a) and middle in (1, None):
        return 1
    per_level = [d if a else 1 for d, a in zip(depths, attention)]
    if middle is not None and per_level[-1] != middle:
        if attention[-1]:
            raise UnknownFormatError(f"diffusers ties the middle depth to the last level's; got {depths} and {middle}.")
        per_level[-1] = middle
    return per_level


class Interrupted(KeyboardInterrupt):
    """A conversion was stopped by a signal (SIGINT or SIGTERM, as :func:`main` turns them into exceptions).

    Attributes:
        signum: the signal that stopped it.
        written: it arrived while the converted files were being put in place and was held back until they
            all were: the destination holds the new files. Otherwise nothing there was changed.
    """

    def __init__(self, signum: int, written: bool = False) -> None:
        super().__init__(signum)
        self.signum = signum
        self.written = written


_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers  # what signal.signal takes
_STOP_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)
_CHUNK = 64 << 20  # bytes written per call: a signal handler (Ctrl-C) runs between two of them
# safetensors' order of dtypes in a file (its Rust enum's, largest first): the same files, byte for byte
_SAFETENSORS_ORDER = ("I64", "F64", "F32", "I32", "BF16", "F16", "I16", "F8_E4M3", "F8_E5M2", "I8", "U8", "BOOL")
_SAFETENSORS_NAMES = {SAFETENSORS_DTYPES[name]: name for name in _SAFETENSORS_ORDER}  # what this writer writes


def _little_endian_bytes(tensor: torch.Tensor) -> memoryview:
    """The bytes of ``tensor`` (on the CPU, contiguous) in little-endian order, as safetensors stores them."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    raw = flat.view(torch.uint8)
    if sys.byteorder == "big" and flat.element_size() > 1:
        raw = raw.reshape(-1, flat.element_size()).flip(1).reshape(-1)
    return raw.numpy().data


def save_file(
    tensors: Mapping[str, torch.Tensor], filename: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` as a safetensors file into ``filename`` itself.

    The same bytes as :func:`safetensors.torch.save_file` (a header padded to 8 bytes; tensors ordered by
    dtype, largest first, then name, so every one is aligned), except the order of the metadata's keys, which
    safetensors does not fix (it follows a per-process hash; here: the order given). Written straight into
    ``filename``: safetensors'
    writer writes a hidden temporary file of its own beside it (``.tmpXXXXXX``, left behind, full size, when
    the process is stopped) and cannot be interrupted until it is done. Here Python writes the bytes in
    chunks, so Ctrl-C or SIGTERM stops it at once, and whoever owns ``filename`` removes it.

    Raises:
        OutputError: a tensor of a dtype this writer does not write.
        OSError: the file cannot be written (no space, no permission).
    """
    for key, tensor in tensors.items():
        if tensor.dtype not in _SAFETENSORS_NAMES:
            raise OutputError(
                f"tensor {key!r} is {tensor.dtype}, which this converter does not write (it writes "
                f"{', '.join(_SAFETENSORS_ORDER)}). Convert it to one of those first."
            )
    order = sorted(tensors, key=lambda k: (_SAFETENSORS_ORDER.index(_SAFETENSORS_NAMES[tensors[k].dtype]), k))
    header: dict[str, object] = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for key in order:
        tensor = tensors[key]
        name = _SAFETENSORS_NAMES[tensor.dtype]
        nbytes = tensor.numel() * tensor.element_size()
        header[key] = {"dtype": name, "shape": list(tensor.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(filename, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for key in order:
            data = _little_endian_bytes(tensors[key])
            for i in range(0, len(data), _CHUNK):
                f.write(data[i : i + _CHUNK])
        f.flush()
        os.fsync(f.fileno())  # on disk before it is renamed over an old file


def _staged(dst: Path, write: Callable[[str], None], staged: dict[Path, Path]) -> None:
    """Write a file beside ``dst`` under a temporary name, recorded as ``staged[dst]``.

    The name is recorded before the file is created, so the caller, which removes every recorded name on any
    failure or interruption (``BaseException``), never misses one. The file gets the permissions of the file it
    will replace, or those of any new file (the umask applies), never a private 0600 that a ComfyUI server
    running as another user could not read.
    """
    tmp = staged[dst] = dst.with_name(f".tmp-{secrets.token_hex(6)}-{dst.name}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    mode = (dst if dst.is_file() else tmp).stat().st_mode & 0o7777
    write(str(tmp))
    os.chmod(tmp, mode)


@contextlib.contextmanager
def _signals_held(held: list[int]) -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block: they are recorded in ``held`` instead of handled.

    Python runs signal handlers in the main thread only, so elsewhere there is nothing to hold. Where a
    handler was not installed from Python (it cannot be put back), nothing is held either.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    current = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    previous: dict[int, _Handler] = {s: h for s, h in current.items() if h is not None}
    if len(previous) < len(current):
        yield
        return

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    with _handled(previous, hold):
        yield


@contextlib.contextmanager
def _handled(previous: dict[int, _Handler], handler: _Handler) -> Iterator[None]:
    """``handler`` for the signals of ``previous`` during the block, then their ``previous`` handlers again.

    The handlers are put back with those signals blocked where the system can block them (POSIX): one that
    arrives meanwhile waits and reaches the restored handler, instead of running between two restores (where
    it could stop the restoring and leave a handler of ours installed).
    """
    try:
        for s in previous:
            signal.signal(s, handler)
        yield
    finally:
        block = getattr(signal, "pthread_sigmask", None)
        mask = block(signal.SIG_BLOCK, set(previous)) if block is not None and previous else None
        try:
            for s, old in previous.items():
                signal.signal(s, old)
        finally:
            if block is not None and mask is not None:
                block(signal.SIG_SETMASK, mask)


def _linked(path: Path, name: Path) -> bool:
    """Give ``path`` the second name ``name`` (a hard link); ``False`` where the file system refuses."""
    try:
        os.link(path, name)
    except OSError:
        return False
    return True


def _undo(
    staged: Mapping[Path, Path], backups: Mapping[Path, Path], moved: set[Path], replaced: list[Path]
) -> list[str]:
    """Put back what :func:`_swap_in` changed; returns what could not be put back (empty: all was)."""
    problems: list[str] = []
    for dst in staged:
        bak = backups.get(dst)
        try:
            if dst in replaced or dst in moved:
                if bak is not None:
                    os.replace(bak, dst)  # the old file back under its name
                else:
                    os.unlink(dst)  # there was none: the new one goes
            elif bak is not None:
                os.unlink(bak)  # a second name of a file that was never touched
        except OSError as err:
            if dst in replaced:
                kept = f"the old one is kept as {bak}" if bak is not None else "there was none before"
                problems.append(f"{dst.name} is the new file ({kept}; {err.strerror or err})")
            elif dst in moved:  # moved aside, never replaced: nothing is under its name
                problems.append(f"{dst.name} is missing (the old one is kept as {bak}; {err.strerror or err})")
            else:
                log.warning("could not remove %s, a second name of %s: %s; delete it", bak, dst, err.strerror or err)
    return problems


def _swap_in(staged: Mapping[Path, Path]) -> None:
    """Rename staged files onto their destinations: all of them, or (after a failure) none.

    One file is one atomic rename. Several (a diffusers folder's weights and ``config.json``) are renamed
    one by one, so each file to be replaced first gets a second name (a hard link; where the file system
    has none, or the file is a symbolic link, it is moved aside): if a later rename fails, the earlier ones
    are undone from those names, and once all are in place the second names are removed.

    Raises:
        OSError: a rename failed; every destination holds what it held before.
        OutputError: a rename failed and undoing the earlier ones failed too; says which files are new and
            where the old ones were kept.
    """
    if len(staged) == 1:
        [(dst, tmp)] = staged.items()
        os.replace(tmp, dst)
        return
    backups: dict[Path, Path] = {}
    moved: set[Path] = set()  # moved aside, not linked: missing until replaced or put back
    replaced: list[Path] = []
    try:
        for dst in staged:
            if not os.path.lexists(dst):
                continue
            bak = dst.with_name(f".bak-{secrets.token_hex(6)}-{dst.name}")
            if dst.is_symlink() or not _linked(dst, bak):
                os.rename(dst, bak)
                moved.add(dst)
            backups[dst] = bak
        for dst, tmp in staged.items():
            os.replace(tmp, dst)
            replaced.append(dst)
    except BaseException as exc:
        problems = _undo(staged, backups, moved, replaced)
        if problems:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
            folder = next(iter(staged)).parent
            raise OutputError(
                f"cannot write {folder}: {reason}. Its files could not all be replaced, and putting the old ones "
                f"back failed too: {'; '.join(problems)}. The folder now mixes new and old files: rename the "
                "old file back, or run the conversion again with --force (overwrite=True) once the cause is fixed."
            ) from exc
        raise
    for dst, bak in backups.items():
        try:
            os.unlink(bak)
        except OSError as err:
            log.warning("could not remove %s, the old %s: %s; delete it", bak, dst.name, err.strerror or err)


def _atomic_save(files: Mapping[Path, Callable[[str], None]]) -> None:
    """Write every file to a temporary name first, then swap them all into place together.

    Nothing is replaced until everything is written, so a failure (disk full, no permission, a crash,
    Ctrl-C) leaves what was there untouched and no temporary file behind. The swap (see :func:`_swap_in`)
    puts every file in place or none; SIGINT and SIGTERM are held back while it runs and handled once it is
    done.

    Raises:
        OSError: writing or renaming failed; nothing was changed.
        OutputError: the swap failed half-way and could not be undone (says what is where).
        Interrupted: a signal held back during the swap, delivered after it (``written=True``), where its
            handler raises :class:`KeyboardInterrupt`.
    """
    staged: dict[Path, Path] = {}
    swapped = False
    try:
        for dst, write in files.items():
            _staged(dst, write, staged)
        held: list[int] = []
        with _signals_held(held):
            _swap_in(staged)
            swapped = True  # set while signals are held: after it, any interruption finds the files in place
        if held:  # every file is in place: handle the signal now
            signal.raise_signal(held[0])
    except KeyboardInterrupt as exc:
        if swapped and not (isinstance(exc, Interrupted) and exc.written):
            signum = exc.signum if isinstance(exc, Interrupted) else (held[0] if held else signal.SIGINT)
            raise Interrupted(signum, written=True) from exc
        raise
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


def _safetensors_writer(tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> Callable[[str], None]:
    return lambda tmp: save_file(tensors, tmp, metadata=metadata)


def _text_writer(text: str) -> Callable[[str], None]:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return write


def _check_target(path: Path, overwrite: bool, source: Path) -> None:
    """Refuse to write over a folder, or over an existing file unless ``overwrite`` is set.

    Raises:
        OutputError: naming the path and how to go on.
    """
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name ending in .safetensors (or another folder).")
    if os.path.lexists(path) and not overwrite:  # a link (even dangling, or a loop) is replaced too: refuse it
        same = source.exists() and path.resolve() == source.resolve()
        raise OutputError(
            f"{path} already exists{' (it is the file being converted)' if same else ''}; nothing was written. "
            "Choose another name, or pass --force (overwrite=True) to replace it; the old file stays intact "
            "until the new one is completely written."
        )


def _metadata(weights: ControlNetWeights, layout: str) -> dict[str, str]:
    meta = {"format": "pt", "affordance.layout": layout, "affordance.family": weights.config.family.value}
    if weights.config.global_average_pooling:
        meta["affordance.global_average_pooling"] = "true"
    return meta


def to_diffusers(weights: ControlNetWeights) -> dict[str, torch.Tensor]:
    """The state dict under diffusers names (tensors shared, not copied)."""
    return original_to_diffusers(weights.state_dict)


def to_original(weights: ControlNetWeights, *, prefix: bool = False) -> dict[str, torch.Tensor]:
    """The state dict under original names, optionally with the ``control_model.`` prefix."""
    p = ORIGINAL_PREFIX if prefix else ""
    return {p + k: v for k, v in weights.state_dict.items()}


def convert_file(
    src: str | Path,
    dst: str | Path,
    *,
    to: str,
    prefix: bool = False,
    global_average_pooling: bool | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert ``src`` (any supported file or folder) and write ``dst`` as safetensors.

    Args:
        src: a ControlNet file or diffusers folder.
        dst: for ``to="diffusers"``, a ``.safetensors`` file, or a folder that receives ``config.json``
            and ``diffusion_pytorch_model.safetensors``; for ``to="original"``, a ``.safetensors`` file.
        to: ``"diffusers"`` or ``"original"``.
        prefix: with ``to="original"``, write keys with the ``control_model.`` prefix.
        global_average_pooling: mark the model as a shuffle-type model (kept in the metadata or the
            diffusers config); ``None`` keeps what the source says.
        overwrite: replace files that already exist (the source itself included). Either way a file is
            only replaced once its successor is completely written.

    Returns:
        The path written (the weights file).

    Raises:
        InputError: ``to`` is neither ``"diffusers"`` nor ``"original"``, or an original-layout destination
            does not end in ``.safetensors``.
        FileNotFoundError: ``src`` does not exist.
        CheckpointError: ``src`` is not a ControlNet we can read (as :func:`read_controlnet`).
        OutputError: the destination exists (without ``overwrite``), is a folder where a file is due or a
            file where a folder is due, or cannot be written.
    """
    if to not in ("diffusers", "original"):
        raise InputError(f"to must be 'diffusers' or 'original', got {to!r}.")
    src, dst = Path(src), Path(dst)
    try:
        check_source(src)  # missing, a link loop, a FIFO or device: said before anything about the destination
    except PermissionError:
        pass  # read_controlnet says it below, as an UnreadableCheckpointError
    single_file = dst.suffix.lower() == ".safetensors"
    if to == "original" and not single_file:
        raise InputError(
            f"original-layout files are written as .safetensors, got {dst.name!r}: give a name ending in .safetensors."
        )
    folder = dst.parent if single_file else dst
    if folder.exists() and not folder.is_dir():
        raise OutputError(
            f"{folder} is a file, not a folder; a diffusers ControlNet is written as a folder (config.json + "
            "diffusion_pytorch_model.safetensors). Give a folder name, or a name ending in .safetensors."
        )
    targets = [dst] if single_file else [dst / "diffusion_pytorch_model.safetensors", dst / "config.json"]
    for path in targets:
        _check_target(path, overwrite, src)
    weights = read_controlnet(src, global_average_pooling=global_average_pooling)
    if to == "original":
        writers = {dst: _safetensors_writer(to_original(weights, prefix=prefix), _metadata(weights, "original"))}
    elif single_file:
        writers = {dst: _safetensors_writer(to_diffusers(weights), _metadata(weights, "diffusers"))}
    else:
        config = json.dumps(diffusers_config(weights.config), indent=2) + "\n"
        writers = {
            targets[0]: _safetensors_writer(to_diffusers(weights), _metadata(weights, "diffusers")),
            targets[1]: _text_writer(config),
        }
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # folders this call creates
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_save(writers)
    except BaseException as exc:  # Ctrl-C and SystemExit too: no folder of ours is left behind
        if not (isinstance(exc, Interrupted) and exc.written):
            for p in made:  # innermost first; only if still empty
                try:
                    p.rmdir()
                except OSError:
                    break
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):  # an OutputError says what changed
            raise OutputError(
                f"cannot write {dst}: {exc.strerror or exc}. Nothing there was changed; choose a writable place "
                "with enough free space."
            ) from exc
        raise
    return targets[0]


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    """A signal handler: stop the conversion with :class:`Interrupted`, so that it cleans up after itself."""
    raise Interrupted(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` for the block (from the main thread; ignored signals
    stay ignored), then put the previous handlers back."""
    previous: dict[int, _Handler] = {}
    if threading.current_thread() is threading.main_thread():
        for s in _STOP_SIGNALS:
            handler = signal.getsignal(s)
            if handler is not None and handler is not signal.SIG_IGN:
                previous[s] = handler
    with _handled(previous, _raise_interrupted):
        yield


def main(argv: Sequence[str] | None = None, prog: str = "python -m affordance.controlnet.convert") -> int:
    """Command-line entry point; returns the process exit code.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        prog: the program name shown in usage and help (``python -m affordance convert`` when called from
            the pack's main command).

    Returns:
        0 when written, 2 on an error (said on stderr), 128 + the signal's number when stopped by Ctrl-C
        (130) or SIGTERM (143); every temporary file and every folder the call created is removed then.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Convert a ControlNet between the original and diffusers layouts (written as safetensors).",
    )
    parser.add_argument("src", help="ControlNet file (.safetensors/.pth/.ckpt/.bin) or diffusers folder")
    parser.add_argument("dst", help="output .safetensors file, or a folder for --to diffusers")
    parser.add_argument("--to", choices=["diffusers", "original"], required=True)
    parser.add_argument("--prefix", action="store_true", help="original layout with 'control_model.' keys")
    parser.add_argument(
        "--global-average-pooling",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mark as a shuffle-type model (averaged residuals), or with --no-global-average-pooling clear "
        "that mark of a source that has it (default: as the source says)",
    )
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        with interruptible():
            out = convert_file(
                args.src,
                args.dst,
                to=args.to,
                prefix=args.prefix,
                global_average_pooling=args.global_average_pooling,
                overwrite=args.force,
            )
    except KeyboardInterrupt as exc:
        written = isinstance(exc, Interrupted) and exc.written
        log.error("interrupted; %s %s", args.dst, "was written" if written else "was not changed")
        return 128 + (exc.signum if isinstance(exc, Interrupted) else signal.SIGINT)
    except (ControlNetError, OSError, ValueError) as exc:
        log.error("error: %s", exc)
        return 2
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
