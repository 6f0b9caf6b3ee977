"""The `.kiln` container: a small binary header and three checksummed sections. No pickle.

Layout (all integers little-endian):

    magic           8 bytes   b"KILNPRG\\0"
    format version  u32
    section count   u32       (3 in versions 1 and 2)
    per section     tag (4 bytes ASCII), length (u64), sha256 of the section (32 bytes)
    header sha256   32 bytes  over every header byte before it
    sections        back to back, in header order; nothing after the last

Version 1 and 2 sections (they differ only in the metadata's `dim_map`): `META` (metadata, UTF-8 JSON), `GRPH` (the graph in kiln's text IR),
`TENS` (the state tensors, a safetensors file). `read_sections` checks the container;
`program.py` checks what the sections say.
"""
from __future__ import annotations

import hashlib
import os
import struct

MAGIC = b"KILNPRG\0"
FORMAT_VERSION = 2  # 2: the metadata's dim_map entries are multilinear ({token, kind, terms})
OLDEST_READABLE = 1  # 1: affine dim_map entries ({token, kind, const, coeffs}), read as multilinear
SECTION_TAGS = (b"META", b"GRPH", b"TENS")
_FIXED = struct.Struct("<8sII")
_ENTRY = struct.Struct("<4sQ32s")
_MAX_SECTIONS = 16


class ExportFormatError(ValueError):
    """A `.kiln` file that cannot be loaded; the message names the file and what is wrong."""

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = "; ".join(line.strip() for line in problem.splitlines() if line.strip())
        super().__init__(f"{path}: {self.problem}")


def pack(sections: dict[bytes, bytes], version: int = FORMAT_VERSION) -> bytes:
    """The file bytes for `sections` (tag -> payload), in the order given."""
    head = _FIXED.pack(MAGIC, version, len(sections))
    for tag, data in sections.items():
        head += _ENTRY.pack(tag, len(data), hashlib.sha256(data).digest())
    head += hashlib.sha256(head).digest()
    return head + b"".join(sections.values())


def write_file(path: str | os.PathLike, sections: dict[bytes, bytes]) -> None:
    """Write atomically: a temporary file in the same directory, renamed over `path`."""
    path = os.fspath(path)
    data = pack(sections)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_file(path: str | os.PathLike) -> dict[bytes, bytes]:
    """The sections of the `.kiln` file at `path`; ExportFormatError for anything malformed."""
    return read_versioned(path)[1]


def read_versioned(path: str | os.PathLike) -> tuple[int, dict[bytes, bytes]]:
    """(format version, sections) of the `.kiln` file at `path`; ExportFormatError for anything malformed."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ExportFormatError(path, "no such file") from None
    except IsADirectoryError:
        raise ExportFormatError(path, "is a directory, not a .kiln file") from None
    except OSError as e:
        raise ExportFormatError(path, f"cannot be read ({e.strerror or e})") from None
    return _FIXED.unpack_from(data)[1] if len(data) >= _FIXED.size else 0, read_sections(data, path)


def read_sections(data: bytes, path: str = "<bytes>") -> dict[bytes, bytes]:
    """Check the container (magic, version, lengths, checksums) and split it into sections."""
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise ExportFormatError(path, "not a .kiln file (bad magic)")
    if len(data) < _FIXED.size:
        raise ExportFormatError(path, f"truncated: {len(data)} bytes, shorter than the header")
    _, version, count = _FIXED.unpack_from(data)
    if version > FORMAT_VERSION:
        raise ExportFormatError(path, f"written in .kiln format version {version}, newer than this kiln reads "
                                      f"(up to {FORMAT_VERSION}); upgrade kiln to load it")
    if version < OLDEST_READABLE:
        raise ExportFormatError(path, f".kiln format version {version} is older than any this kiln reads "
                                      f"({OLDEST_READABLE}..{FORMAT_VERSION}); re-export the program")
    if count > _MAX_SECTIONS:
        raise ExportFormatError(path, f"corrupt header: {count} sections")
    head_len = _FIXED.size + count * _ENTRY.size + 32
    if len(data) < head_len:
        raise ExportFormatError(path, f"truncated: {len(data)} bytes, shorter than its {head_len}-byte header")
    if hashlib.sha256(data[:head_len - 32]).digest() != data[head_len - 32:head_len]:
        raise ExportFormatError(path, "corrupt header (checksum mismatch)")
    entries = [_ENTRY.unpack_from(data, _FIXED.size + k * _ENTRY.size) for k in range(count)]
    tags = [tag for tag, _, _ in entries]
    if tags != list(SECTION_TAGS):
        shown = ", ".join(t.decode("ascii", "replace") for t in tags)
        raise ExportFormatError(path, f"unexpected sections [{shown}]; format version {version} has "
                                      f"[{', '.join(t.decode() for t in SECTION_TAGS)}]")
    total = head_len + sum(length for _, length, _ in entries)
    if len(data) < total:
        raise ExportFormatError(path, f"truncated: {len(data)} bytes, the header says {total}")
    if len(data) > total:
        raise ExportFormatError(path, f"{len(data) - total} unexpected bytes after the last section")
    out, pos = {}, head_len
    for tag, length, digest in entries:
        body = data[pos:pos + length]
        if hashlib.sha256(body).digest() != digest:
            raise ExportFormatError(path, f"section {tag.decode()} is corrupt (checksum mismatch)")
        out[tag] = body
        pos += length
    return out
