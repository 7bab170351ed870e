"""Run a benchmark with glibc's transparent-huge-page malloc.

XLA:CPU allocates every output buffer with ``malloc``; above glibc's mmap threshold (at most
32 MiB) each call gets fresh pages from the kernel and pays one page fault per 4 KiB: 40 ms
of an 80 MB draw (1e6 rows x 20 columns) on our 2-core test machine. With
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (glibc >= 2.35, transparent huge pages in
``madvise`` or ``always`` mode) those allocations are backed by 2 MiB pages: 13 ms. The
setting is read when a process starts, so the benchmark re-executes itself with it; it applies
to the whole process, i.e. to DoWhy / NumPy as much as to causaljax, and every ratio is
measured under it. Users get the same effect by exporting the variable themselves.
"""

from __future__ import annotations

import os
import sys

TUNABLE = "glibc.malloc.hugetlb=1"


def thp_mode() -> str | None:
    """The kernel's transparent-huge-page mode ('always', 'madvise', 'never'), None if unknown."""
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return None
    return text[text.find("[") + 1:text.find("]")] if "[" in text else None


def reexec_with_hugepages() -> None:
    """Re-execute this Python script with ``GLIBC_TUNABLES`` set, where it can take effect
    (Linux, glibc, THP not 'never') and the variable is not set already; else return."""
    if sys.platform != "linux" or "GLIBC_TUNABLES" in os.environ or thp_mode() in (None, "never"):
        return
    env = dict(os.environ, GLIBC_TUNABLES=TUNABLE)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def malloc_note() -> str:
    """One line for a benchmark's header: the malloc setting it runs under."""
    return (f"malloc: GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}, "
            f"transparent huge pages {thp_mode()}")
