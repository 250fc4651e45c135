"""`minrnn bench`: the --quick run as a user runs it (subprocess: JSON + PNG + tables), the timer and the
memory probe on known workloads, the report's arithmetic, config errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from minrnn.bench import report
from minrnn.bench.config import BenchConfig, quick_config
from minrnn.bench.timing import peak_memory, time_call


def test_quick_run_writes_valid_json_png_and_tables(tmp_path):
    pytest.importorskip("matplotlib")
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    cmd = [sys.executable, "-m", "minrnn", "bench", "--quick", "--no-progress", "--out", str(tmp_path),
           "--tag", "ci"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "bench_ci.json").read_text())
    png = (tmp_path / "bench_ci.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp") or f.startswith("tmp")]
    assert res["config"]["lengths"] == [16, 64] and res["machine"]["threads"] == 1
    got = {(e["row"], e["size"]) for e in res["results"]}
    for row in ("minGRU fused", "minLSTM fused", "nn.GRU", "nn.LSTM", "GRU loop", "matmul floor 2H",
                "matmul floor 3H"):
        assert {(row, 16), (row, 64)} <= got, row
    assert ("add floor", 64) in got and ("cpu kernel fwd+bwd", 64) in got
    assert {("minGRU LM step", 1), ("nn.GRU LM step", 4)} <= got
    for e in res["results"]:
        assert e["median_ms"] > 0 and e["min_ms"] <= e["median_ms"] and e["n"] >= 1
        if e["group"] == "train" and not e["row"].startswith("matmul floor"):  # floors: preallocated outputs
            assert e["peak_mib"] > 0
    # the printed speed-up is the ratio of the two medians in the JSON
    med = {(e["row"], e["size"]): e["median_ms"] for e in res["results"]}
    ratio = med[("nn.GRU", 64)] / med[("minGRU fused", 64)]
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("nn.GRU / minGRU fused"))
    assert line.split()[-1] == f"{ratio:.2f}"
    ceiling = med[("nn.LSTM", 64)] / med[("matmul floor 3H", 64)]  # the best minLSTM could do
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("nn.LSTM / matmul floor 3H"))
    assert line.split()[-1] == f"{ceiling:.2f}"
    assert "peak train memory (MiB)" in p.stdout and "step()" in p.stdout


def test_time_call_counts_and_budget():
    calls = []
    t = time_call(lambda: calls.append(1), warmup=2, repeats=4)
    assert len(calls) == 6 and t["n"] == 4 and 0 <= t["min_ms"] <= t["median_ms"]
    calls.clear()
    # the budget stops repeats after min_repeats once max_seconds are spent
    t = time_call(lambda: (calls.append(1), torch.ones(1).add_(1)), warmup=0, repeats=50, min_repeats=2,
                  max_seconds=1e-9)
    assert t["n"] == 2 and len(calls) == 2
    with pytest.raises(ValueError, match="repeats"):
        time_call(lambda: None, repeats=0)


def test_peak_memory_on_known_allocations():
    n = 1 << 20  # 4 MiB of float32

    def two_live():
        a = torch.empty(n)
        b = torch.empty(n)
        del a, b

    def one_at_a_time():
        for _ in range(3):
            a = torch.empty(n)
            del a

    def nothing():
        pass

    assert peak_memory(two_live) == 2 * 4 * n
    assert peak_memory(one_at_a_time) == 4 * n
    assert peak_memory(nothing) == 0


def test_speedups_and_memory_ratio_from_a_result():
    res = {"config": {"device": "cpu", "dtype": "float32", "batch": 2, "width": 3, "repeats": 1, "warmup": 0},
           "machine": {"date": "d", "cpu": "c", "cores": 1, "torch": "t", "commit": "x", "threads": 1,
                       "OMP_WAIT_POLICY": "PASSIVE", "allocator": "a"},
           "skipped": [{"row": "peer minGRU", "reason": "not installed"}],
           "results": [{"row": "nn.GRU", "group": "train", "size": 8, "ref": None, "median_ms": 30.0,
                        "peak_mib": 12.0},
                       {"row": "minGRU fused", "group": "train", "size": 8, "ref": "nn.GRU", "median_ms": 6.0,
                        "peak_mib": 6.0}]}
    assert report.speedups(res) == [("nn.GRU / minGRU fused", {8: 5.0})]
    text = report.format_report(res)
    lines = {ln.rsplit(None, 1)[0].strip(): ln.split()[-1] for ln in text.splitlines() if " / " in ln}
    assert lines["nn.GRU / minGRU fused"] == "5.00"  # time ratio
    assert lines["minGRU fused / nn.GRU"] == "0.50"  # memory ratio
    assert "skipped: peer minGRU: not installed" in text


def test_config_errors():
    with pytest.raises(ValueError, match="batch: expected >= 1"):
        BenchConfig(batch=0)
    with pytest.raises(ValueError, match="groups"):
        BenchConfig(groups=("train", "gpu"))
    with pytest.raises(ValueError, match="dtype"):
        BenchConfig(dtype="int8")
    assert quick_config(batch=2).batch == 2 and quick_config().tag == "quick"
    from minrnn.cli import main
    assert main(["bench", "--quick", "--rows", "no-such-row", "--no-progress", "--out", "/nonexistent"]) == 2


def test_list_flags_parse_and_bad_lists_are_rejected(capsys):
    from minrnn.cli import build_parser
    args = build_parser().parse_args(["bench", "--lengths", "64,512", "--rows", "nn.*,min*", "--no-memory"])
    assert args.lengths == (64, 512) and args.rows == ("nn.*", "min*") and args.memory is False
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--lengths", "1,x"])
    assert "--lengths: expected a comma-separated list of int, got '1,x'" in capsys.readouterr().err


def test_thread_sweep_times_each_count_and_compares_each_side_at_its_fastest(tmp_path):
    """--thread-sweep 1,2: every row at both counts, back to back; the bare row is its fastest count (so
    'best t' speed-ups compare each side at its best); per-count speed-ups pair equal counts."""
    from minrnn.bench.run import run_bench
    cfg = quick_config(rows=("minGRU fused", "nn.GRU", "GRU loop"), groups=("train",), lengths=(16, 64),
                       thread_sweep=(1, 2), loop_max_len=16, out=str(tmp_path))
    res = run_bench(cfg, progress=False)
    idx = {(e["row"], e["size"]): e for e in res["results"]}
    for row in ("minGRU fused", "nn.GRU"):
        for n in (16, 64):
            one, two, best = idx[(f"{row} @1t", n)], idx[(f"{row} @2t", n)], idx[(row, n)]
            assert (one["threads"], two["threads"]) == (1, 2)
            assert best["median_ms"] == min(one["median_ms"], two["median_ms"])
            assert best["threads"] == (1 if one["median_ms"] <= two["median_ms"] else 2)
            assert best["by_threads"] == {"1": one["median_ms"], "2": two["median_ms"]}
    assert ("GRU loop", 64) not in idx and ("GRU loop @2t", 64) not in idx
    assert [s for s in res["skipped"] if s["row"] == "GRU loop"] == [
        {"row": "GRU loop", "size": 64, "reason": "length > loop_max_len=16"}]  # recorded once, not per count
    sp = dict(report.speedups(res))
    assert sp["nn.GRU / minGRU fused (best t)"][64] == (idx[("nn.GRU", 64)]["median_ms"]
                                                        / idx[("minGRU fused", 64)]["median_ms"])
    assert sp["nn.GRU / minGRU fused @2t"][16] == (idx[("nn.GRU @2t", 16)]["median_ms"]
                                                  / idx[("minGRU fused @2t", 16)]["median_ms"])
    text = report.format_report(res)
    assert "threads 1,2 (each row at each count" in text and "nn.GRU / minGRU fused @1t" in text
    assert torch.get_num_threads() == 1  # restored to the first count
    with pytest.raises(ValueError, match="thread_sweep: expected thread counts >= 1"):
        BenchConfig(thread_sweep=(0, 2))


def test_rounds_pool_every_rounds_calls(tmp_path):
    """rounds=2: the whole sequence of cases runs twice; each case reports the median and minimum of both rounds'
    calls together (kept in times_ms), the memory probe runs once, and the header says so."""
    import statistics

    from minrnn.bench.run import run_bench
    cfg = quick_config(rows=("minGRU fused", "nn.GRU"), groups=("train",), lengths=(16,), repeats=2,
                       min_repeats=2, rounds=2, out=str(tmp_path))
    res = run_bench(cfg, progress=False)
    assert [e["row"] for e in res["results"]] == ["minGRU fused", "nn.GRU"]
    for e in res["results"]:
        assert e["n"] == 4 and len(e["times_ms"]) == 4
        assert e["median_ms"] == statistics.median(e["times_ms"]) and e["min_ms"] == min(e["times_ms"])
        assert e["peak_mib"] > 0
    assert "in each of 2 rounds of every case (calls pooled)" in report.format_report(res)
    with pytest.raises(ValueError, match="rounds: expected >= 1, got 0"):
        BenchConfig(rounds=0)
