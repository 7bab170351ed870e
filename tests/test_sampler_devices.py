"""Sharded draws on 8 fake CPU devices equal the single-device draw (run in a subprocess so
the XLA flag takes effect before JAX starts)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    assert jax.local_device_count() == 8, jax.devices()
    from causaljax import sampler
    from scm_factory import make_scm
    cases = ((8, 40, 4, "key"), (3, 64, 4, "key"), (8, 16, 0, "key"), (3, 24, 0, "key"),
             (8, 16, 0, "hash"), (3, 24, 4, "hash"),  # SCMs split, then rows split
             (1, 64, 0, "hash"), (1, 160_000, 4, "hash"))  # one SCM's walk, rows split (each
    # device draws its own rows, over several row blocks in the last case)
    for k, n, hidden, rng in cases:
        scm = make_scm(seed=k, k=k, hidden=hidden, n_levels=(0, 2, 0, 0))
        key = jax.random.key(7)
        sharded = sampler.sample(scm, key, n, rng=rng)  # several devices -> sharded
        assert len(sharded.sharding.device_set) == 8, sharded.sharding
        strategy, levels = sampler._plan(scm, "auto")
        if strategy == "grouped":
            scm = sampler.as_compact(scm)
        single = sampler._sample(scm, key, np.zeros(4, bool), np.zeros(4, np.float32),
                                 n=n, strategy=strategy, levels=levels, rng=rng)
        np.testing.assert_allclose(np.asarray(sharded), np.asarray(single), rtol=1e-6, atol=1e-6)
    print("OK")
""")


def test_sharded_equals_unsharded_on_8_fake_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout
