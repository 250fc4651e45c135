"""What `minrnn bench` prints besides its tables: the OMP_WAIT_POLICY note, and the profiler's own log lines
kept off the console.

`omp_note` says when the note applies: OpenMP's default wait policy lets idle threads spin, which can stall
small parallel regions, so it matters only with more than one thread, and only when the user has not chosen
a policy (libgomp reads the variable once, at load, so the note can only advise, not fix).

`quiet_profiler` is for the CPU memory probe (`timing.peak_memory`): every `torch.profiler` start and stop
makes kineto, its C++ backend, write a `USDT:... profiler_start` / `profiler_stop` line to the process's
stderr (file descriptor 2, so `contextlib.redirect_stderr` cannot catch it), two lines per probed case.
kineto's only switch, KINETO_LOG_LEVEL, is read once per process, so it cannot be set from here reliably,
and the level that hides these lines hides kineto's errors too. So the context manager points fd 2 at a
temporary file for the duration and afterwards writes back every line that is not kineto's start/stop or
stage chatter: warnings, errors and anything the profiled call itself prints still reach the console.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# kineto's log prefix: LEVEL:DATE TIME PID:TID FILE.cpp:LINE] message
_CHATTER = re.compile(r"^(USDT|STAGE|INFO|VERBOSE):\S+ \S+ \d+:\d+ \S+:\d+\] ")


def omp_note(device: str, threads: list[int], env: dict | None = None) -> str | None:
    """The OMP_WAIT_POLICY note for a run on `device` at these thread counts, or None where it does not apply
    (one thread, a GPU run, or a policy the user has set)."""
    env = os.environ if env is None else env
    if not device.startswith("cpu") or max(threads, default=1) <= 1 or env.get("OMP_WAIT_POLICY", ""):
        return None
    return ("note: OMP_WAIT_POLICY is unset; with more than 1 thread, small parallel regions may stall "
            "(run with OMP_WAIT_POLICY=PASSIVE)")


def is_chatter(line: str) -> bool:
    """Whether a stderr line is kineto's start/stop/stage log (dropped), not a warning or error (kept)."""
    return bool(_CHATTER.match(line))


@contextlib.contextmanager
def quiet_profiler():
    """Drop kineto's start/stop lines written to fd 2 inside the block; pass every other line through."""
    fd = 2  # kineto writes to descriptor 2 whatever sys.stderr is (pytest, a notebook, a redirect)
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().decode(errors="replace").splitlines(keepends=True)
                    if not is_chatter(ln)]
            if kept:
                os.write(fd, "".join(kept).encode())
