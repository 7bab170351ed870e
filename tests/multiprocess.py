"""Start N local CPU processes that form one JAX runtime (``causaljax.distributed``), bounded in
time and always cleaned up: the harness of the multi-process tests."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Finished:
    """How one process ended: exit code (negative: the signal that ended it) and its output."""
    returncode: int
    stdout: str
    stderr: str


def run_processes(script: str, n: int, out: Path, *, devices_per_process: int = 1,
                  timeout_s: float = 240, args: tuple = (), check: bool = True
                  ) -> list[Finished]:
    """Run ``script`` (Python source) in n processes; process i gets argv
    ``[coordinator, n, i, out, *args]``. Waits until all end, one fails or ``timeout_s``
    passes; then kills every process still running (SIGKILL to its group), whatever happens.
    With ``check``, raises AssertionError with the stderr of the first process that failed by
    itself (not killed by us) unless all exited with 0."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=f"{TESTS}{os.pathsep}{ROOT}",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
               PYTHONWARNINGS="ignore", CAUSALJAX_COMPILE_CACHE="none")
    coordinator = f"127.0.0.1:{free_port()}"
    out.mkdir(parents=True, exist_ok=True)
    logs = [(open(out / f"stdout.{i}", "w+"), open(out / f"stderr.{i}", "w+")) for i in range(n)]
    procs = [subprocess.Popen([sys.executable, "-c", script, coordinator, str(n), str(i),
                               str(out), *map(str, args)], env=env, stdout=so, stderr=se,
                              start_new_session=True) for i, (so, se) in enumerate(logs)]
    deadline = time.monotonic() + timeout_s
    try:
        while any(p.poll() is None for p in procs):
            failed = [i for i, p in enumerate(procs) if p.returncode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    finished = []
    for p, (so, se) in zip(procs, logs):
        so.seek(0), se.seek(0)
        finished.append(Finished(p.returncode, so.read(), se.read()))
        so.close(), se.close()
    if check and any(f.returncode != 0 for f in finished):
        by_itself = [i for i, f in enumerate(finished) if f.returncode not in (0, -9)]
        i = (by_itself or [i for i, f in enumerate(finished) if f.returncode != 0])[0]
        raise AssertionError(f"process {i} of {n} ended with {finished[i].returncode} "
                             f"(timeout {timeout_s} s):\n{finished[i].stderr[-3000:]}")
    return finished
