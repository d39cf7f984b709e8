"""Make the pack importable as ``affordance`` whatever the clone folder is called.

The root ``__init__.py`` is registered but deliberately not executed, and the repository root is never
put on ``sys.path`` (ComfyUI owns the top-level name ``nodes``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PKG = "affordance"
if PKG not in sys.modules or Path(getattr(sys.modules[PKG], "__file__", "") or "").resolve() != ROOT / "__init__.py":
    _spec = importlib.util.spec_from_file_location(PKG, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    assert _spec is not None
    sys.modules[PKG] = importlib.util.module_from_spec(_spec)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "comfy: needs a ComfyUI checkout in COMFYUI_PATH")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")
    config.addinivalue_line("markers", "slow: full-size models; a few seconds to a minute each")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def keep_torch_threads() -> Iterator[None]:
    """Put torch's CPU thread count back after a test whose benchmark sets it (``--threads``)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def python_cmd() -> list[str]:
    """This interpreter, with ``-P`` (the working folder never shadows a module) where Python has it (3.11+)."""
    return [sys.executable, "-P"] if sys.version_info >= (3, 11) else [sys.executable]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def comfyui_path() -> Path:
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        pytest.skip("COMFYUI_PATH is not set")
    return Path(path)


class StandInGraphs:
    """A graph backend without a GPU: "records" by keeping the forward and replays it into the same tensors.

    It keeps a recording's contract (static inputs read at replay time, static outputs overwritten by each
    replay) so the runner's logic is tested on the CPU. ``reason`` refuses capture, ``fail`` makes the
    capture raise (a ``RuntimeError`` with that text, or the exception given), ``corrupt`` makes replays
    wrong (as a bad recording would be), ``empty`` makes replays write nothing (as a recording made on
    another device's stream would: its capture computed the outputs once, eagerly), ``no_reference`` leaves out
    the eager forward a capture should hand back (a backend breaking the protocol). ``pools`` lists the
    pool each capture was given; each new pool is a fresh object.
    """

    def __init__(
        self,
        reason: str | None = None,
        fail: str | BaseException | None = None,
        corrupt: bool = False,
        empty: bool = False,
        no_reference: bool = False,
    ) -> None:
        self.reason, self.fail, self.corrupt, self.empty = reason, fail, corrupt, empty
        self.no_reference = no_reference
        self.captures = 0
        self.pools: list[object] = []

    def why_not(self, network, x):
        return self.reason

    def capture(self, forward, device, pool=None):
        from affordance.controlnet.graphs import Captured

        self.pools.append(pool)
        reference = forward()
        if isinstance(self.fail, BaseException):
            raise self.fail
        if self.fail:
            raise RuntimeError(self.fail)
        outputs = forward()
        self.captures += 1

        def replay() -> None:
            if self.empty:
                return
            for o, fresh in zip(outputs, forward()):
                if o is not None:
                    o.copy_(fresh + 1 if self.corrupt else fresh)

        reference = None if self.no_reference else reference
        return Captured(replay, outputs, reference, pool=object() if pool is None else pool)


@pytest.fixture
def standin_graphs():
    """Factory of :class:`StandInGraphs` backends."""
    return StandInGraphs


def _damaged_copies(data: bytes, seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    """``count`` seeded damaged versions of ``data``, each with a short description of its damage.

    Damage lands mostly where parsers look (the first 4 KiB: headers, a safetensors JSON, a pickle; the last
    1 KiB: a zip's central directory), some anywhere: a byte changed, a 32-bit field set to an extreme value,
    a run zeroed or repeated, the file cut short, a field of a zip directory entry set to an extreme value.
    """
    import random
    import struct

    rng = random.Random(seed)
    n = len(data)
    directory = [i for i in range(n - 46) if data.startswith(b"PK\x01\x02", i)]  # a zip's central directory entries

    def offset() -> int:
        where = rng.random()
        if where < 0.45:
            return rng.randrange(min(n, 4096))
        if where < 0.8:
            return rng.randrange(max(0, n - 1024), n)
        return rng.randrange(n)

    for _ in range(count):
        buf, kind, at = bytearray(data), rng.randrange(7 if directory else 6), offset()
        if kind == 0:
            buf[at] ^= 1 << rng.randrange(8)
            what = f"bit flipped at {at}"
        elif kind == 1:
            buf[at] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x95, 0x58))
            what = f"byte set to {buf[at]:#x} at {at}"
        elif kind == 2:
            at = min(at, n - 4)
            value = rng.choice((0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 2 * n, n + 1))
            buf[at : at + 4] = struct.pack("<I", value)
            what = f"32-bit field set to {value:#x} at {at}"
        elif kind == 3:
            length = rng.randrange(1, 65)
            buf[at : at + length] = bytes(len(buf[at : at + length]))
            what = f"{length} bytes zeroed at {at}"
        elif kind == 4:
            length = rng.randrange(1, 65)
            buf[at:at] = buf[at : at + length]
            what = f"{length} bytes repeated at {at}"
        elif kind == 5:
            del buf[at:]
            what = f"cut to {at} bytes"
        else:  # a field of a zip directory entry: versions, flags, method, sizes, name length, record offset
            entry = rng.choice(directory)
            field, width = rng.choice(((4, 2), (6, 2), (8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (42, 4)))
            value = rng.choice((0, 1, 0xFFFF, 0xFFFFFFFF)[: 3 if width == 2 else 4]) if rng.random() < 0.7 else 2 * n
            value &= (1 << 8 * width) - 1
            buf[entry + field : entry + field + width] = value.to_bytes(width, "little")
            what = f"zip directory entry at {entry}: field +{field} set to {value:#x}"
        yield what, bytes(buf)


@pytest.fixture
def damaged_copies():
    """Factory of seeded damaged versions of a file's bytes (:func:`_damaged_copies`), for reader fuzz tests."""
    return _damaged_copies


def _frame_damaged_zip(state_dict: dict) -> bytes:
    """``torch.save(state_dict)``'s zip with one byte of its protocol-2 ``data.pkl`` damaged into FRAME (0x95),
    the opcode that begins pickles of protocol 4 and newer (found by fuzzing: such a file was called protocol 4)."""
    import io
    import zipfile

    buf = io.BytesIO()
    torch.save(state_dict, buf)
    with zipfile.ZipFile(buf) as src:
        members = [(i.filename, src.read(i)) for i in src.infolist()]
    name, pkl = members[0]
    assert name.endswith("data.pkl") and pkl[:2] == b"\x80\x02"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for n, b in [(name, pkl[:2] + b"\x95" + pkl[3:]), *members[1:]]:
            zf.writestr(n, b)
    return out.getvalue()


@pytest.fixture
def frame_damaged_zip():
    """Factory: the bytes of a zip checkpoint whose protocol-2 pickle holds a FRAME byte (:func:`_frame_damaged_zip`)."""
    return _frame_damaged_zip
