"""The process's memory pages: a pass over a memory-mapped Arrow cache does not count the whole file in the RSS,
and large tensors allocated again and again do not fault their pages in every time.

`datasets` memory-maps its Arrow caches. Every page a `.map` reads stays mapped in the reading process, so its
resident set (what `ru_maxrss`, `top` and schedulers watching memory see) grows with the corpus, although those
pages are only the kernel's page cache. After a batch is processed, `drop_read_pages(table)` tells the kernel
(`madvise(MADV_DONTNEED)`) that the process no longer needs the pages under the batch's buffers: they leave the
process's RSS but stay in the page cache, and a later read faults them back in with the same bytes.

Only read-only mappings of a `.arrow` file are touched; heap memory (an in-memory table) is never passed to
madvise, where DONTNEED would zero it. Off Linux (no /proc/self/maps) this does nothing.
"""

import bisect
import ctypes
import os
import sys

_MADV_DONTNEED = 4
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_maps = None  # sorted [(start, end)] of read-only .arrow file mappings, re-read when an address is not found
_libc = None


def _arrow_mappings():
    out = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[1].startswith("r") and "w" not in fields[1] \
                        and fields[5].rstrip("\n").endswith(".arrow"):
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    out.append((start, end))
    except OSError:
        return None
    return sorted(out)


def _mapping_of(address, size):
    """The (start, end) of the .arrow mapping holding [address, address + size), or None."""
    global _maps
    for attempt in range(2):
        if _maps is None or attempt:
            _maps = _arrow_mappings()
            if _maps is None:
                return None
        i = bisect.bisect_right(_maps, (address, float("inf"))) - 1
        if i >= 0 and _maps[i][0] <= address and address + size <= _maps[i][1]:
            return _maps[i]
    return None


def drop_read_pages(table):
    """Releases from this process's RSS the mapped pages under every buffer of `table` (a pyarrow Table or
    ChunkedArray); buffers that are not in a read-only .arrow mapping are left alone."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)  # not find_library: it forks a process
            _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return
    columns = table.columns if hasattr(table, "columns") else [table]
    for column in columns:
        for chunk in column.chunks:
            for buf in chunk.buffers():  # the children's buffers included
                if buf is None or buf.size < _PAGE:
                    continue
                mapping = _mapping_of(buf.address, buf.size)
                if mapping is None:
                    continue
                start = max(buf.address - buf.address % _PAGE, mapping[0])
                end = min(buf.address + buf.size, mapping[1])
                _libc.madvise(start, end - start, _MADV_DONTNEED)


def reuse_freed_memory():
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the OS; True if it took.

    A training step or a scoring batch allocates the same large tensors every time (logits, their gradients, the
    parameters' gradients). Above 32 MiB glibc maps each one fresh from the OS and unmaps it when freed, so every
    step pays a page fault per 4 KiB it writes: ~0.3 ms per MB, half the default run's training time. With mmap and
    trimming off, freed blocks are reused as by a caching allocator (the process holds on to its peak memory, as
    CUDA's allocator does)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
