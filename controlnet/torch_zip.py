"""Where a PyTorch zip checkpoint (``torch.save``'s format since 1.6) keeps the bytes of each storage.

Such a file is a zip archive: ``<archive>/data.pkl`` (the pickle), ``<archive>/data/<key>`` (one record per
storage, stored uncompressed), ``<archive>/byteorder`` and a few small records. Knowing where each record's
bytes begin lets a reader fetch only the storages it needs, with plain reads, instead of memory-mapping the
file (a mapped file cut short while it is read kills the process with SIGBUS).
"""

from __future__ import annotations

import struct
import sys
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # signature ... file name length, extra field length
_LOCAL_SIGNATURE = 0x04034B50


@dataclass(frozen=True)
class Record:
    """One member of the archive.

    Attributes:
        name: its name inside the archive (e.g. ``"archive/data/0"``).
        size: its length in bytes, uncompressed.
        stored: kept as is (``ZIP_STORED``), so its bytes can be read straight from the file.
    """

    name: str
    size: int
    stored: bool


@dataclass(frozen=True)
class Layout:
    """The archive's members by where their bytes begin, and the byte order its storages were written in.

    Attributes:
        records: file offset of the first byte of a member's data -> that member.
        byteorders: what each ``byteorder`` record says (files written before torch 2.1 have none: little-endian).
    """

    records: dict[int, Record]
    byteorders: tuple[str, ...]

    @property
    def foreign_byteorder(self) -> bool:
        """Some storages may have been written in another byte order than this machine's (and must be swapped).

        A file without a ``byteorder`` record is little-endian (torch assumes so)."""
        return any(b != sys.byteorder for b in self.byteorders or ("little",))

    @property
    def torchscript(self) -> bool:
        """A TorchScript program (``torch.jit.save``: its Python code and constants), not a pickled state dict."""
        return any("/code/" in rec.name or rec.name.endswith("/constants.pkl") for rec in self.records.values())

    @property
    def storages_stored(self) -> bool:
        """Every storage record is kept as is (not recompressed): its bytes can be read, or mapped, in place."""
        return all(rec.stored for rec in self.records.values() if _storage_key(rec.name) is not None)

    @property
    def storages_in_order(self) -> bool:
        """The storage records ``<archive>/data/<key>`` lie in the file as ``torch.save`` writes them: keys 0, 1,
        2... in file order. torch locates storages by position in such files; in any other (re-packed or crafted)
        archive a position may name another record than the key the pickle means."""
        keys = [_storage_key(rec.name) for _, rec in sorted(self.records.items())]
        keys = [k for k in keys if k is not None]
        return keys == list(range(len(keys)))


def _storage_key(name: str) -> int | None:
    """The key of a storage record (``"archive/data/12"`` -> 12); ``None`` for other members."""
    parts = name.rsplit("/", 2)
    if len(parts) >= 2 and parts[-2] == "data" and parts[-1].isdigit():
        return int(parts[-1])
    return None


def read_layout(f: BinaryIO) -> Layout:
    """Read the central directory and every member's local header of the open archive ``f``.

    Raises:
        zipfile.BadZipFile, struct.error, ValueError, OSError, NotImplementedError, RuntimeError: not a
            readable zip archive (e.g. an unsupported or encrypted member; callers name the file and turn these
            into their own errors).
    """
    records: dict[int, Record] = {}
    byteorders: list[str] = []
    with zipfile.ZipFile(f) as zf:
        for info in zf.infolist():
            f.seek(info.header_offset)
            head = f.read(_LOCAL_HEADER.size)
            fields = _LOCAL_HEADER.unpack(head)  # struct.error when the file ends inside the header
            if fields[0] != _LOCAL_SIGNATURE:
                raise zipfile.BadZipFile(f"member {info.filename!r} has no local header at byte {info.header_offset}")
            start = info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10]
            records[start] = Record(info.filename, info.file_size, info.compress_type == zipfile.ZIP_STORED)
            if info.filename.rsplit("/", 1)[-1] == "byteorder":
                with zf.open(info) as member:  # a few bytes at most, whatever the member claims
                    byteorders.append(member.read(16).decode("ascii", errors="replace"))
    return Layout(records, tuple(byteorders))


__all__ = ["Layout", "Record", "read_layout"]
