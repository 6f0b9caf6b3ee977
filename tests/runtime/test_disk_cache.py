"""The on-disk compile cache: round trips, other processes, damaged entries, concurrent
writers, LRU eviction and unusable directories."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

import kiln
from kiln.runtime.disk_cache import (FORMAT_VERSION, MAGIC, DiskCache, KilnCacheWarning, encode_entry,
                                     entry_name)

ROOT = Path(kiln.__file__).resolve().parent.parent
KEY = "plan: graph f(%x: f32[8]) {...}\ncpu: skylake-avx512 +avx2,+fma\nllvm 14.0.6\nkiln 0.1.0"


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def _no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.startswith(".tmp-")]


def test_round_trip(tmp_path):
    cache = DiskCache(tmp_path / "cache")
    assert cache.get(KEY) is None
    cache.put(KEY, b"\x7fELF object code")
    assert cache.get(KEY) == b"\x7fELF object code"
    assert cache.path(KEY).name == hashlib.sha256(KEY.encode()).hexdigest() + ".kobj"
    cache.put(KEY, bytearray(b"rebuilt"))  # a new put replaces the entry
    assert cache.get(KEY) == b"rebuilt"
    cache.put("other key", b"")
    assert cache.get("other key") == b""
    st = cache.stats()
    assert st.entries == 2
    assert st.bytes == len(encode_entry(KEY, b"rebuilt")) + len(encode_entry("other key", b""))
    assert _no_temp_files(tmp_path / "cache")


def test_clear_removes_entries_and_stale_temp_files(tmp_path):
    cache = DiskCache(tmp_path)
    cache.put("a", b"1")
    cache.put("b", b"2")
    young, stale = tmp_path / ".tmp-young.part", tmp_path / ".tmp-stale.part"
    young.write_bytes(b"being written")
    stale.write_bytes(b"left by a dead writer")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    cache.clear()
    assert cache.stats().entries == 0 and cache.get("a") is None
    assert young.exists() and not stale.exists()


def test_a_second_process_reads_what_the_first_wrote(tmp_path):
    r = _python("""
        import sys
        from kiln.runtime.disk_cache import DiskCache
        DiskCache(sys.argv[1]).put(sys.argv[2], bytes(range(256)) * 4)
    """, str(tmp_path), KEY)
    assert r.returncode == 0, r.stderr
    assert DiskCache(tmp_path).get(KEY) == bytes(range(256)) * 4
    DiskCache(tmp_path).put("from the parent", b"parent payload")
    r = _python("""
        import sys
        from kiln.runtime.disk_cache import DiskCache
        sys.stdout.write(DiskCache(sys.argv[1]).get("from the parent").decode())
    """, str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "parent payload"


def _flip_payload_byte(p: Path):
    b = bytearray(p.read_bytes())
    b[-3] ^= 0x01
    p.write_bytes(bytes(b))


def _flip_magic_byte(p: Path):
    b = bytearray(p.read_bytes())
    b[0] ^= 0xFF
    p.write_bytes(bytes(b))


def _truncate(p: Path):
    p.write_bytes(p.read_bytes()[:-5])


def _truncate_into_header(p: Path):
    p.write_bytes(p.read_bytes()[:20])


def _pad(p: Path):
    p.write_bytes(p.read_bytes() + b"\0")


def _garbage(p: Path):
    p.write_bytes(b"this is not a cache entry at all, but it has the right name" * 3)


def _empty(p: Path):
    p.write_bytes(b"")


def _other_key(p: Path):
    p.write_bytes(encode_entry("a different program", b"payload that belongs to another key"))


def _other_version(p: Path):
    blob = bytearray(p.read_bytes())
    blob[len(MAGIC):len(MAGIC) + 4] = (FORMAT_VERSION + 1).to_bytes(4, "little")
    p.write_bytes(bytes(blob))


@pytest.mark.parametrize("damage, reason", [
    (_flip_payload_byte, "checksum"), (_flip_magic_byte, "not a kiln cache entry"), (_truncate, "truncated"),
    (_truncate_into_header, "truncated"), (_pad, "padded"), (_garbage, "not a kiln cache entry"),
    (_empty, "truncated"), (_other_key, "different key"), (_other_version, "format version"),
])
def test_damaged_entry_warns_is_deleted_and_rebuilt(tmp_path, damage, reason):
    cache = DiskCache(tmp_path)
    cache.put(KEY, b"object code " * 10)
    path = cache.path(KEY)
    damage(path)
    with pytest.warns(KilnCacheWarning, match=rf"{path.name}.*{reason}"):
        assert cache.get(KEY) is None
    assert not path.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get(KEY) is None  # now a plain miss
        cache.put(KEY, b"rebuilt")
        assert cache.get(KEY) == b"rebuilt"


def test_concurrent_writers_of_one_key_leave_a_valid_entry(tmp_path):
    writer = """
        import sys, warnings
        warnings.simplefilter("error")
        from kiln.runtime.disk_cache import DiskCache
        directory, tag, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        cache = DiskCache(directory, max_bytes=64 * 1024)
        allowed = {bytes([t]) * 3000 for t in (1, 2)}
        for i in range(300):
            cache.put(key, bytes([tag]) * 3000)
            got = cache.get(key)
            assert got is None or got in allowed, got[:10]
            cache.put(f"own {tag} {i}", bytes([tag]) * (i % 50))  # churn: evictions race with the other writer
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(writer), str(tmp_path), str(t), KEY], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for t in (1, 2)]
    cache = DiskCache(tmp_path, max_bytes=64 * 1024)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a reader never sees a partial entry
            while any(p.poll() is None for p in procs):
                got = cache.get(KEY)
                assert got is None or got in (b"\x01" * 3000, b"\x02" * 3000)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        errors = [p.communicate()[1] for p in procs]
    for p, err in zip(procs, errors):
        assert p.returncode == 0, err
    assert cache.get(KEY) in (b"\x01" * 3000, b"\x02" * 3000)
    assert _no_temp_files(tmp_path)
    assert cache.stats().bytes <= 64 * 1024


def test_lru_eviction_deletes_least_recently_used_first(tmp_path):
    size = len(encode_entry("a", b"x" * 100))
    cache = DiskCache(tmp_path, max_bytes=3 * size)
    for k in "abc":
        cache.put(k, k.encode() * 100)
    t0 = time.time() - 100
    for age, k in enumerate("abc"):  # a oldest, c newest, independent of the clock's resolution
        os.utime(cache.path(k), (t0 + age, t0 + age))
    assert cache.get("a") == b"a" * 100  # a hit makes a the most recently used
    cache.put("d", b"d" * 100)
    assert [k for k in "abcd" if cache.path(k).exists()] == ["a", "c", "d"]
    cache.put("e", b"e" * 100)
    assert [k for k in "abcde" if cache.path(k).exists()] == ["a", "d", "e"]
    assert cache.stats().entries == 3 and cache.stats().bytes == 3 * size


def test_entry_larger_than_the_limit_is_not_stored_and_evicts_nothing(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=1000)
    cache.put("small", b"s" * 10)
    cache.put("huge", b"h" * 2000)
    assert cache.get("huge") is None and cache.get("small") == b"s" * 10


def test_directory_that_cannot_be_created_warns_once_and_is_a_no_op(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a directory")
    with pytest.warns(KilnCacheWarning, match="cannot create the cache directory"):
        cache = DiskCache(blocker / "cache")
    assert not cache.enabled and "disabled" in repr(cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.put(KEY, b"data")
        assert cache.get(KEY) is None
        assert cache.stats().entries == 0
        cache.clear()


def test_directory_that_stops_being_writable_warns_once_and_is_a_no_op(tmp_path):
    directory = tmp_path / "cache"
    cache = DiskCache(directory)
    cache.put("a", b"1")
    for p in directory.iterdir():
        p.unlink()
    directory.rmdir()
    directory.write_text("a file where the cache directory was")  # root ignores permissions; this it cannot write
    with pytest.warns(KilnCacheWarning, match="cannot write an entry"):
        cache.put(KEY, b"data")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.put(KEY, b"data")  # warned once already
        assert cache.get(KEY) is None
    assert directory.read_text() == "a file where the cache directory was"


def test_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="max_bytes"):
        DiskCache(tmp_path, max_bytes=0)
    with pytest.raises(ValueError, match="max_bytes"):
        DiskCache(tmp_path, max_bytes=1.5)
    cache = DiskCache(tmp_path)
    with pytest.raises(TypeError, match="key must be a str"):
        cache.get(b"bytes key")
    with pytest.raises(TypeError, match="data must be bytes"):
        cache.put(KEY, "text")
    assert entry_name(KEY) == cache.path(KEY).name
