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
``GLIBC_TUNABLES`` yourself (e.g. to an empty value) to keep your own setting. It applies to
CPU runs only: where JAX will take an accelerator (``cpu_backend_expected``) the buffers live
in device memory and the process starts once, as it is.
"""

from __future__ import annotations

import glob
import importlib.util
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


ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm7_plugin",
                       "jax_rocm60_plugin", "libtpu")
ACCELERATOR_DEVICES = ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/accel[0-9]*", "/dev/vfio/[0-9]*")


def cpu_backend_expected() -> bool:
    """Whether JAX's default backend will be the CPU, decided without starting JAX (so before
    the re-exec): the first of ``JAX_PLATFORMS`` when it is set; otherwise True unless an
    accelerator plugin is installed and its device nodes exist."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip()
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    plugin = any(importlib.util.find_spec(name) for name in ACCELERATOR_PLUGINS)
    device = any(glob.glob(pattern) for pattern in ACCELERATOR_DEVICES)
    return not (plugin and device)


def cache_blocking() -> bool:
    """Whether the compiled hot paths cut their rows into cache-sized blocks
    (``sampler.SOLVE_BLOCK_CELLS``, ``scm.mechanisms.TABLE_BLOCK``): on the CPU backend only,
    where a block that stays in L2 is faster; on an accelerator a loop over blocks would only
    serialize work that the device runs in parallel."""
    import jax

    return jax.default_backend() == "cpu"


def reexec_with_hugepages() -> None:
    """Restart this Python process (same interpreter, options and arguments) with
    ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` where that can take effect: Linux, transparent
    huge pages not 'never', ``GLIBC_TUNABLES`` not set already (so it restarts at most once)
    and a CPU backend (``cpu_backend_expected``). Elsewhere it returns at once. Call it first
    thing under ``__main__``."""
    if (sys.platform != "linux" or "GLIBC_TUNABLES" in os.environ
            or thp_mode() in (None, "never") or not cpu_backend_expected()):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), dict(os.environ, GLIBC_TUNABLES=TUNABLE))


def malloc_note() -> str:
    """The malloc setting this process runs under, for a benchmark's header and JSON."""
    return (f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)') or '(empty)'}, "
            f"transparent huge pages {thp_mode()}")


DEFAULT_COMPILE_CACHE = os.path.join("~", ".cache", "causaljax", "xla")


def use_compilation_cache(path: str | None = None) -> str | None:
    """Keep compiled XLA programs on disk (JAX's persistent compilation cache) at ``path``
    (default: ``$CAUSALJAX_COMPILE_CACHE`` or ``~/.cache/causaljax/xla``; 'none' turns it
    off) -> the directory used, or None. A study compiles the same fine-tuning step for every
    dataset (it clears JAX's in-memory caches between datasets to bound memory) and again in
    every session or shard: with the cache a recompile is a load from disk. Programs that
    compile in under 0.5 s are not stored."""
    path = path or os.environ.get("CAUSALJAX_COMPILE_CACHE") or DEFAULT_COMPILE_CACHE
    if path.lower() == "none":
        return None
    import jax

    path = os.path.abspath(os.path.expanduser(path))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path
