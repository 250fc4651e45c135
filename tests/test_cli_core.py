"""The README's commands as a user runs them (subprocess): `minrnn info`, `minrnn demo` on a tiny budget, and
clear errors with exit status 2 on bad arguments."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from minrnn.paths import find_data


def run(*args, timeout=300):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "minrnn", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_info():
    r = run("info")
    assert r.returncode == 0, r.stderr
    assert "scan backends available: reference, logspace, chunked" in r.stdout
    assert "active (auto) on cpu, float32: cpu" in r.stdout or "active (auto) on cpu, float32: chunked" in r.stdout
    from minrnn.scan import cpu as native
    if native.available():  # the layer route that runs by default is named
        assert "cpu backend: one custom op per layer direction (minrnn::cpu_linear_cell" in r.stdout
        assert "layer matmuls inside the kernels (csrc/gemm.h) for: " in r.stdout


def test_demo_trains_and_samples():
    try:
        find_data("tinyshakespeare/input.txt")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    r = run("demo", "--seconds", "4")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    before = float(next(l for l in lines if l.startswith("val loss before")).split(":")[1].split()[0])
    after = float(next(l for l in lines if l.startswith("val loss after")).split(":")[1].split()[0])
    assert after < before - 0.5, r.stdout  # even a few seconds of training beats the untrained model clearly
    assert "sample:" in r.stdout


@pytest.mark.parametrize("args,msg", [
    (["demo", "--seconds", "0"], "--seconds: expected > 0, got 0.0"),
    (["demo", "--data", "/nonexistent/input.txt"], "expected an existing file, got /nonexistent/input.txt"),
])
def test_bad_arguments_exit_2_with_message(args, msg):
    r = run(*args)
    assert r.returncode == 2
    assert msg in r.stderr


def test_unknown_command():
    r = run("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr
