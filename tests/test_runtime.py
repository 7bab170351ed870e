"""causaljax.runtime: the huge-page malloc restart of the entry points."""

import os
import subprocess
import sys

from causaljax import runtime

SCRIPT = ("import os, sys; from causaljax.runtime import reexec_with_hugepages; "
          "reexec_with_hugepages(); print(os.environ.get('GLIBC_TUNABLES', '(unset)'), *sys.argv[1:])")


def run(env):
    out = subprocess.run([sys.executable, "-c", SCRIPT, "a", "--b"], env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout.split()


def test_restarts_once_with_the_tunable_and_the_same_arguments():
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    can = sys.platform == "linux" and runtime.thp_mode() not in (None, "never")
    assert run(env) == [runtime.TUNABLE if can else "(unset)", "a", "--b"]


def test_no_restart_where_jax_takes_an_accelerator():
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    assert run(dict(env, JAX_PLATFORMS="cuda,cpu")) == ["(unset)", "a", "--b"]


def test_cpu_backend_expected(monkeypatch):
    for platforms, expected in (("cpu", True), ("cuda", False), ("tpu,cpu", False),
                                ("cpu,cuda", True)):
        monkeypatch.setenv("JAX_PLATFORMS", platforms)
        assert runtime.cpu_backend_expected() is expected, platforms
    monkeypatch.delenv("JAX_PLATFORMS")
    monkeypatch.setattr(runtime.importlib.util, "find_spec", lambda name: name == "libtpu")
    monkeypatch.setattr(runtime.glob, "glob", lambda pattern: [])
    assert runtime.cpu_backend_expected()  # a plugin without its devices: still the CPU
    monkeypatch.setattr(runtime.glob, "glob", lambda pattern: [pattern])
    assert not runtime.cpu_backend_expected()


def test_default_rng_follows_the_backend(monkeypatch):
    import jax

    from causaljax import sampler
    from causaljax.prior import PriorConfig

    assert jax.default_backend() == "cpu" and sampler.default_rng() == "hash"
    assert PriorConfig().rng == "hash"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert sampler.default_rng() == "key" and PriorConfig().rng == "key"
    assert PriorConfig(rng="hash").rng == "hash"  # a stored run's setting wins


def test_keeps_a_setting_the_user_made():
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.arena_max=2")
    assert run(env) == ["glibc.malloc.arena_max=2", "a", "--b"]


def test_compilation_cache_directory(tmp_path, monkeypatch):
    import jax

    from causaljax.runtime import use_compilation_cache

    before = jax.config.jax_compilation_cache_dir
    try:
        monkeypatch.setenv("CAUSALJAX_COMPILE_CACHE", str(tmp_path / "env"))
        assert use_compilation_cache() == str(tmp_path / "env")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "env")
        assert use_compilation_cache(str(tmp_path / "arg")) == str(tmp_path / "arg")
        assert (tmp_path / "arg").is_dir()
        assert use_compilation_cache("none") is None
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "arg")  # left as it was
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_row_blocks_only_where_the_cpu_caches_want_them(monkeypatch):
    import jax.numpy as jnp

    from causaljax import sampler

    calls = []

    def block(start, size):
        calls.append(size)
        return jnp.ones((2, size, 4), jnp.float32)

    chunk = max(sampler.SOLVE_BLOCK_CELLS // (2 * 4), sampler.SOLVE_MIN_BLOCK_ROWS)
    n = 3 * chunk + 5
    assert runtime.cache_blocking()  # this suite runs on the CPU
    assert sampler._row_blocks(block, 2, 4, n).shape == (2, n, 4)
    assert calls == [chunk, 5]  # the loop's block (traced once), the rest
    calls.clear()
    monkeypatch.setattr(runtime, "cache_blocking", lambda: False)  # an accelerator
    assert sampler._row_blocks(block, 2, 4, n).shape == (2, n, 4)
    assert calls == [n]
