"""On-disk cache of compiled object code, keyed by a long text key.

The caller builds the key (the plan's text, the target CPU name and features, the LLVM
and kiln versions) and passes the directory and size limit in; this module reads no
settings. An entry is one file named by the sha256 of its key:

    header  magic b"KILNOBJ\\0" | format version (u32) | payload length (u64)
            | sha256 of the payload (32 bytes) | key length (u32)      little-endian
    key     the full key, UTF-8 (so a hash collision or a foreign file is detected)
    payload the object code

Writes go to a temporary file in the same directory, are fsynced and renamed over the
entry with `os.replace`, so a reader sees either no entry or a complete one, also when
several processes compile the same program at once. A corrupt, truncated or foreign
entry is reported with a `KilnCacheWarning` naming the file, deleted, and read as a
miss, so the caller rebuilds it. A directory that cannot be created or written warns
once and the cache becomes a no-op: caching never makes compilation fail.

The directory is bounded by `max_bytes` (file sizes, headers included): after a `put`
the least recently used entries are deleted first, using each file's mtime as the LRU
clock (a `get` hit touches it).
"""
from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"KILNOBJ\0"
FORMAT_VERSION = 1
ENTRY_SUFFIX = ".kobj"
TEMP_PREFIX = ".tmp-"
_HEADER = struct.Struct("<8sIQ32sI")  # magic, version, payload length, payload sha256, key length
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
STALE_TEMP_SECONDS = 3600  # a temporary file this old was left by a writer that died


class KilnCacheWarning(RuntimeWarning):
    """The compile cache found a damaged entry or cannot use its directory."""


@dataclass(frozen=True)
class CacheStats:
    """What the cache directory holds now: `entries` files totalling `bytes` bytes."""

    entries: int
    bytes: int


def entry_name(key: str) -> str:
    """The file name of the entry for `key`: the sha256 of the key, hex, plus `.kobj`."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest() + ENTRY_SUFFIX


def encode_entry(key: str, data: bytes) -> bytes:
    """The bytes of the entry file for `key` holding payload `data`."""
    k = key.encode("utf-8")
    return _HEADER.pack(MAGIC, FORMAT_VERSION, len(data), hashlib.sha256(data).digest(), len(k)) + k + data


def decode_entry(blob: bytes, key: str) -> bytes:
    """The payload of entry file contents `blob` written for `key`; ValueError says what is wrong."""
    if len(blob) < _HEADER.size:
        raise ValueError(f"truncated: {len(blob)} bytes, shorter than the {_HEADER.size}-byte header")
    magic, version, length, digest, key_len = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise ValueError(f"not a kiln cache entry (magic {magic!r}, expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise ValueError(f"entry format version {version}, expected {FORMAT_VERSION}")
    expected = _HEADER.size + key_len + length
    if len(blob) != expected:
        raise ValueError(f"truncated or padded: {len(blob)} bytes, the header says {expected}")
    stored_key = blob[_HEADER.size:_HEADER.size + key_len]
    if stored_key != key.encode("utf-8"):
        raise ValueError("entry was written for a different key (hash collision or foreign file)")
    data = blob[_HEADER.size + key_len:]
    if hashlib.sha256(data).digest() != digest:
        raise ValueError("payload checksum mismatch")
    return data


class DiskCache:
    """Compiled object code in `directory`, at most `max_bytes` on disk (LRU eviction).

    `get(key)` returns the payload stored for `key` or None; `put(key, data)` stores it.
    Damaged entries warn (`KilnCacheWarning`), are deleted and read as misses; an unusable
    directory warns once and turns the cache into a no-op.
    """

    def __init__(self, directory: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"DiskCache: max_bytes must be a positive int, got {max_bytes!r}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.enabled = True
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self._disable(f"cannot create the cache directory: {e}")

    def __repr__(self) -> str:
        state = "" if self.enabled else ", disabled"
        return f"DiskCache({str(self.directory)!r}, max_bytes={self.max_bytes}{state})"

    def _disable(self, why: str) -> None:
        if self.enabled:
            self.enabled = False
            warnings.warn(f"kiln compile cache {self.directory} disabled, compiling without it: {why}",
                          KilnCacheWarning, stacklevel=3)

    def path(self, key: str) -> Path:
        """The file that holds (or would hold) the entry for `key`."""
        if not isinstance(key, str):
            raise TypeError(f"DiskCache: key must be a str, got {type(key).__name__}")
        return self.directory / entry_name(key)

    def get(self, key: str) -> bytes | None:
        """The payload stored for `key`, or None (a miss, or a damaged entry, which is deleted)."""
        path = self.path(key)
        if not self.enabled:
            return None
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            warnings.warn(f"kiln compile cache: cannot read {path}: {e}", KilnCacheWarning, stacklevel=2)
            return None
        try:
            data = decode_entry(blob, key)
        except ValueError as e:
            warnings.warn(f"kiln compile cache: damaged entry {path} deleted, it will be rebuilt: {e}",
                          KilnCacheWarning, stacklevel=2)
            _unlink(path)
            return None
        try:
            os.utime(path)  # LRU clock
        except OSError:
            pass
        return data

    def put(self, key: str, data: bytes) -> None:
        """Store `data` for `key` atomically, then evict LRU entries beyond `max_bytes`.

        An entry larger than `max_bytes` on its own is not stored."""
        path = self.path(key)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"DiskCache.put: data must be bytes, got {type(data).__name__}")
        if not self.enabled:
            return
        blob = encode_entry(key, bytes(data))
        if len(blob) > self.max_bytes:
            return
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=TEMP_PREFIX, suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
        except OSError as e:
            self._disable(f"cannot write an entry: {e}")
            return
        finally:
            if tmp is not None:
                _unlink(Path(tmp))
        _fsync_dir(self.directory)
        self._evict(keep=path)

    def _entries(self) -> list[tuple[int, int, Path]]:
        """(mtime ns, size, path) of every entry file; files deleted meanwhile are skipped."""
        out = []
        try:
            names = os.listdir(self.directory)
        except OSError:
            return out
        for name in names:
            if not name.endswith(ENTRY_SUFFIX) or name.startswith(TEMP_PREFIX):
                continue
            p = self.directory / name
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((st.st_mtime_ns, st.st_size, p))
        return out

    def _evict(self, keep: Path) -> None:
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries, key=lambda e: (e[0], e[2].name)):
            if total <= self.max_bytes:
                break
            if p == keep:
                continue
            _unlink(p)
            total -= size

    def stats(self) -> CacheStats:
        """How many entries the directory holds and their total size in bytes."""
        if not self.enabled:
            return CacheStats(0, 0)
        entries = self._entries()
        return CacheStats(len(entries), sum(size for _, size, _ in entries))

    def clear(self) -> None:
        """Delete every entry, and temporary files left by writers that died (older than an hour).

        Younger temporary files may belong to a `put` in progress in another process."""
        if not self.enabled:
            return
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        now = time.time()
        for name in names:
            p = self.directory / name
            if name.startswith(TEMP_PREFIX) and name.endswith(".part"):
                try:
                    if now - p.stat().st_mtime > STALE_TEMP_SECONDS:
                        _unlink(p)
                except OSError:
                    pass
            elif name.endswith(ENTRY_SUFFIX):
                _unlink(p)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:  # already gone (another process), or not ours to delete
        pass


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable where the platform allows fsync on a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
