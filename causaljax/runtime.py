"""Process setup for CPU runs: glibc's transparent-huge-page malloc.

XLA:CPU allocates every output and temporary buffer with ``malloc``. Above glibc's mmap
threshold (at most 32 MiB) each allocation gets fresh pages from the kernel and pays one page
fault per 4 KiB, every call. With ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (glibc >= 2.35,
transparent huge pages in ``madvise`` or ``always`` mode) those allocations are backed by
2 MiB pages. Measured on our 2-core test machine (one pinned core, same results):

- an 80 MB sampler output (1e6 rows x 20): 40 -> 13 ms; one linear SCM, 1e6 rows: 102 -> 72 ms;
- a TFM pretraining step: median 0.65 -> 0.47 s;
- fine-tuning runs per hour (``bench_finetune_step.py``): 1,941 -> 2,390.

The variable is read when a process starts, so the entry points (experiments, benchmarks)
call ``reexec_with_hugepages()`` first: the script starts again with it set. Set
``GLIBC_TUNABLES`` yourself (e.g. to an empty value) to keep your own setting.
"""

from __future__ import annotations

import os
import sys

TUNABLE = "glibc.malloc.hugetlb=1"


def thp_mode() -> str | None:
    """The kernel's transparent-huge-page mode ('always', 'madvise', 'never'); None if unknown."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.find("[") + 1:text.find("]")] if "[" in text else None


def reexec_with_hugepages() -> None:
    """Restart this Python process (same interpreter, options and arguments) with
    ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` where that can take effect: Linux, transparent
    huge pages not 'never', and ``GLIBC_TUNABLES`` not set already (so it restarts at most
    once). Elsewhere it returns at once. Call it first thing under ``__main__``."""
    if sys.platform != "linux" or "GLIBC_TUNABLES" in os.environ or thp_mode() in (None, "never"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), dict(os.environ, GLIBC_TUNABLES=TUNABLE))


def malloc_note() -> str:
    """The malloc setting this process runs under, for a benchmark's header and JSON."""
    return (f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)') or '(empty)'}, "
            f"transparent huge pages {thp_mode()}")
