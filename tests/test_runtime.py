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


def test_keeps_a_setting_the_user_made():
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.arena_max=2")
    assert run(env) == ["glibc.malloc.arena_max=2", "a", "--b"]
