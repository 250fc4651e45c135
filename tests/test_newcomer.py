"""What a new user meets first: `minrnn --help` without importing torch, `import minrnn` that stays lazy, a quiet
`minrnn bench` (the OMP note only where it applies, no profiler log lines), a readable plot (a log speed-up axis,
no two lines of a panel in one colour) and `--from-json` redrawing a saved run without measuring anything."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from minrnn.bench.console import is_chatter, omp_note, quiet_profiler


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          timeout=120).stdout.strip()


def test_parser_and_import_do_not_import_torch():
    code = ("import sys, minrnn, minrnn.cli; minrnn.cli.build_parser(); "
            "print('torch' in sys.modules, minrnn.__version__)")
    assert _python(code) == "False 0.1.0"


def test_lazy_public_names():
    import minrnn
    from minrnn import MinGRU, MinLSTM, ModelConfig, SequenceModel, available_impls, linear_scan
    from minrnn.layers import MinGRU as layers_mingru
    assert minrnn.MinGRU is MinGRU is layers_mingru
    assert callable(linear_scan) and "reference" in available_impls()
    assert all(name in dir(minrnn) for name in ("MinGRU", "MinLSTM", "ModelConfig", "SequenceModel"))
    assert MinLSTM.__name__ == "MinLSTM"
    assert isinstance(SequenceModel(ModelConfig(vocab_size=5, d_model=8, n_layers=1)), SequenceModel)
    with pytest.raises(AttributeError, match="no attribute 'MinGRUU'"):
        minrnn.MinGRUU  # noqa: B018


@pytest.mark.parametrize("device, threads, env, shown", [
    ("cpu", [1], {}, False),                              # one thread: no spinning threads to stall
    ("cpu", [2], {}, True),
    ("cpu", [1, 2], {}, True),                            # a thread sweep that reaches 2
    ("cpu", [2], {"OMP_WAIT_POLICY": "PASSIVE"}, False),  # the user chose a policy
    ("cpu", [2], {"OMP_WAIT_POLICY": "ACTIVE"}, False),
    ("cuda", [2], {}, False),
])
def test_omp_note_only_where_it_applies(device, threads, env, shown):
    note = omp_note(device, threads, env)
    assert (note is not None) == shown
    if shown:
        assert "OMP_WAIT_POLICY" in note and "PASSIVE" in note


def test_profiler_lines_are_dropped_and_the_rest_kept(capfd):
    torch = pytest.importorskip("torch")
    from minrnn.bench.timing import peak_memory
    assert is_chatter("USDT:2026-12-02 02:54:30 3490:3490 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
    assert not is_chatter("WARNING:2026-12-02 02:54:30 3490:3490 Foo.cpp:1] kept\n")
    with quiet_profiler():
        os.write(2, b"USDT:2026-12-02 02:54:30 1:1 X.cpp:2] profiler_stop\nreal error\n")
    n = 1024
    assert peak_memory(lambda: torch.empty(n, dtype=torch.float32).fill_(1.0)) == 4 * n
    err = capfd.readouterr().err
    assert "real error" in err and "USDT" not in err and "profiler_st" not in err


def _result() -> dict:
    """A small saved run in the JSON layout `run_bench` writes: every row that a headline speed-up names, at three
    lengths, one sequential loop ~700x slower than ours (the line that used to flatten the speed-up panel)."""
    from minrnn.bench.rows import SPEEDUPS
    names = list(dict.fromkeys(n for pair in SPEEDUPS for n in pair))
    base = {"nn.GRU": 30.0, "nn.LSTM": 40.0, "GRU loop": 700.0, "LSTM loop": 900.0}
    results = [{"row": r, "group": "train", "size": t, "ref": None, "threads": 1, "n": 1,
                "median_ms": base.get(r, 1.0 + i / 10) * t / 64, "min_ms": 1.0, "times_ms": [1.0]}
               for t in (64, 256, 1024) for i, r in enumerate(names)]
    return {"config": {"device": "cpu", "dtype": "float32", "batch": 2, "width": 3, "repeats": 1, "warmup": 0,
                       "rounds": 1, "thread_sweep": []},
            "machine": {"date": "d", "cpu": "c", "cores": 2, "torch": "t", "commit": "x", "threads": 1,
                        "OMP_WAIT_POLICY": "PASSIVE", "allocator": "a"},
            "results": results, "skipped": []}


def test_plot_lines_have_unique_colours_and_a_log_speedup_axis():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    from minrnn.bench import report
    res = _result()
    fig = report.figure(res)
    try:
        time_ax, speed_ax = fig.axes
        for ax, expected in ((time_ax, len({e["row"] for e in res["results"]})),
                             (speed_ax, len(report.speedups(res, per_thread=False)))):
            lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]  # not the y = 1 line
            assert len(lines) == expected > 10
            colours = [to_rgba(ln.get_color()) for ln in lines]
            assert len(set(colours)) == len(colours)
            assert len({(c, ln.get_linestyle()) for c, ln in zip(colours, lines)}) == len(lines)
        assert speed_ax.get_yscale() == "log" and time_ax.get_yscale() == "log"
        fmt = speed_ax.yaxis.get_major_formatter()
        assert [fmt(v, 0) for v in (0.5, 1.0, 2.0, 700.0)] == ["0.5x", "1x", "2x", "700x"]
    finally:
        plt.close(fig)
    assert len(set(map(tuple, report.colors(40)))) == 40  # past the palette, still distinct


def test_from_json_redraws_without_running(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from minrnn.bench import run as run_mod
    from minrnn.cli import main

    def no_run(*a, **k):
        raise AssertionError("--from-json must not run the benchmark")
    monkeypatch.setattr(run_mod, "run_bench", no_run)
    src = tmp_path / "data" / "bench_tiny.json"
    src.parent.mkdir()
    src.write_text(json.dumps(_result()))
    png = tmp_path / "img" / "bench_tiny.png"
    assert main(["bench", "--from-json", str(src), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "GRU loop / minGRU fused" in out and f"wrote {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["bench", "--from-json", str(src)]) == 0 and src.with_suffix(".png").is_file()  # beside it
    assert main(["bench", "--from-json", str(tmp_path / "missing.json")]) == 2
    assert "expected an existing `minrnn bench` JSON file" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"results": []}')
    assert main(["bench", "--from-json", str(tmp_path / "other.json")]) == 2
    assert "none for config, machine, skipped" in capsys.readouterr().err


def test_bench_writes_its_json_where_asked(tmp_path, capsys):
    from minrnn.cli import main
    j = tmp_path / "docs" / "data" / "bench_scan.json"
    argv = ["bench", "--quick", "--groups", "scan", "--rows", "add floor", "--lengths", "16", "--repeats", "1",
            "--json", str(j), "--no-plot", "--no-progress", "--out", str(tmp_path / "unused")]
    assert main(argv) == 0
    res = json.loads(j.read_text())
    assert [e["row"] for e in res["results"]] == ["add floor"]
    assert not (tmp_path / "unused").exists() and list(j.parent.iterdir()) == [j]  # no partial file left
    assert "note: OMP_WAIT_POLICY" not in capsys.readouterr().out  # 1 thread: no note
