"""The engine keeps its promise when things go wrong: a kill at any point leaves a run that resumes (best and
last consistent, torn logs and temp files repaired, a run killed before its first checkpoint restarts), two
processes never share a run directory, changed data or damaged checkpoints are errors, a NaN loss stops
before it reaches the weights, and every bad input is `minrnn CMD: error: ...` with exit status 2."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from minrnn import checkpoint as ck
from minrnn import cli
from minrnn import train as tr
from minrnn.rundir import RunLock
from minrnn.tasks.shakespeare import ShakespeareTask

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"
pytestmark = pytest.mark.skipif(not DATA.is_file(), reason=f"tiny-shakespeare not at {DATA}")
TINY = dict(model="mingru", d_model=16, n_layers=1, expansion=2.0, mlp_ratio=1.0, seq_len=16, eval_windows=8,
            eval_batch_size=8, batch_size=4, steps=8, eval_every=4, warmup_steps=2, lr=3e-3, min_lr=3e-4,
            threads=1, progress=False, log_every=1, data=str(DATA))
FLAGS = ["--model", "mingru", "--d-model", "16", "--n-layers", "1", "--mlp-ratio", "1", "--seq-len", "16",
         "--eval-windows", "8", "--eval-batch-size", "8", "--batch-size", "4", "--steps", "4", "--eval-every", "2",
         "--warmup-steps", "1", "--threads", "1", "--no-progress", "--data", str(DATA)]


def _cli(capsys, *argv):
    """Run `minrnn ARGV` in this process: (exit status, stderr)."""
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def _error(capsys, *argv) -> str:
    code, err = _cli(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "error: " in lines[0], err  # one line, never a traceback
    return lines[0]


def _step(path) -> int:
    return ck.load_checkpoint(path)["state"]["step"]


class _Killed(BaseException):
    """What a kill -9 looks like to the code after it: nothing more runs."""


def test_kill_between_last_and_best_is_repaired(tmp_path, monkeypatch):
    save = ck.save_checkpoint

    def killing_save(path, ckpt):
        if Path(path).name == "ckpt_best.pt" and ckpt["state"]["step"] == 8:
            raise _Killed
        save(path, ckpt)
    monkeypatch.setattr(ck, "save_checkpoint", killing_save)
    with pytest.raises(_Killed):
        tr.train("shakespeare", None, dict(TINY, out_dir=str(tmp_path), run_name="r"))
    monkeypatch.setattr(ck, "save_checkpoint", save)
    run = tmp_path / "r"
    last = ck.load_checkpoint(run / "ckpt_last.pt")
    assert last["state"]["best_step"] == 8, "precondition: the evaluation at step 8 improved"
    assert _step(run / "ckpt_best.pt") == 4  # the kill left best behind last
    _, model, saved = tr.load_run(run, "best")  # eval reads the true best, without writing
    assert saved["step"] == 8
    assert all(torch.equal(model.state_dict()[k], last["model"][k]) for k in last["model"])
    assert _step(run / "ckpt_best.pt") == 4
    tr.train(resume=run)  # the resume repairs the file
    best = ck.load_checkpoint(run / "ckpt_best.pt")
    assert best["state"]["step"] == 8
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])


def test_resume_repairs_torn_log_and_temp_files(tmp_path, capsys):
    full = tr.train("shakespeare", None, dict(TINY, out_dir=str(tmp_path), run_name="full"))
    tr.train("shakespeare", None, dict(TINY, out_dir=str(tmp_path), run_name="part", ckpt_every=5), stop_at=5)
    run = tmp_path / "part"
    with open(run / "metrics.jsonl", "a") as f:  # a kill (or a full disk) in the middle of a line
        f.write('{"kind": "train", "step": 6, "lo')
    (run / ".ckpt_last.pt.x1y2.tmp").write_bytes(b"\0" * 1000)  # a kill during an atomic write
    with pytest.raises(ValueError, match="not a JSON object"):  # a torn line that is not the last: an error
        with open(run / "metrics.jsonl") as f:
            lines = f.read().splitlines()
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "metrics.jsonl").write_text("\n".join([lines[0], "{torn", *lines[1:]]) + "\n")
        ck.read_metrics(tmp_path / "bad")
    assert len(ck.read_metrics(run)) >= 5  # the torn last line is skipped, with a note
    assert "skipped its torn last line" in capsys.readouterr().err
    resumed = tr.train(resume=run)
    assert "dropped 1 torn line" in capsys.readouterr().err
    assert not list(run.glob(".*.tmp"))
    assert resumed["best_val_loss"] == full["best_val_loss"]
    a, b = ck.read_metrics(tmp_path / "full"), ck.read_metrics(run)
    assert [(r["step"], r.get("loss")) for r in a] == [(r["step"], r.get("loss")) for r in b]


def test_run_killed_before_first_checkpoint_restarts(tmp_path, capsys):
    full = tr.train("shakespeare", None, dict(TINY, out_dir=str(tmp_path), run_name="full"))
    tr.train("shakespeare", None, dict(TINY, out_dir=str(tmp_path), run_name="early"))
    run = tmp_path / "early"
    for name in ("ckpt_last.pt", "ckpt_best.pt", "summary.json"):  # as if killed before step 4
        (run / name).unlink()
    msg = _error(capsys, "train", "shakespeare", *FLAGS, "--out-dir", str(tmp_path), "--run-name", "early")
    assert "exists" in msg and f"--resume {run}" in msg
    tr.train(resume=run)
    assert "no checkpoint yet" in capsys.readouterr().err
    a, b = ck.load_checkpoint(tmp_path / "full" / "ckpt_last.pt"), ck.load_checkpoint(run / "ckpt_last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert len(ck.read_metrics(run)) == len(ck.read_metrics(tmp_path / "full"))  # the killed run's lines dropped


def test_locked_run_directory(tmp_path, capsys):
    tr.train("shakespeare", None, dict(TINY, steps=4, out_dir=str(tmp_path), run_name="r"))
    lock = RunLock(tmp_path / "r")  # another process training in it (flock conflicts across descriptors)
    try:
        msg = _error(capsys, "train", "--resume", str(tmp_path / "r"), "--steps", "8")
        assert "in use by another process" in msg and str(os.getpid()) in msg
    finally:
        lock.release()
    assert _cli(capsys, "train", "--resume", str(tmp_path / "r"), "--steps", "8")[0] == 0


def test_changed_data_and_damaged_checkpoints(tmp_path, capsys):
    data = tmp_path / "input.txt"
    shutil.copy(DATA, data)
    tr.train("shakespeare", None, dict(TINY, steps=4, out_dir=str(tmp_path), run_name="r", data=str(data)))
    run = tmp_path / "r"
    assert len(json.loads((run / "config.json").read_text())["data"]["sha256"]) == 64
    good = (run / "ckpt_last.pt").read_bytes()
    ckpt = ck.load_checkpoint(run / "ckpt_last.pt")
    with open(data, "a") as f:
        f.write("x")
    assert "the data changed since" in _error(capsys, "train", "--resume", str(run), "--steps", "8")
    shutil.copy(DATA, data)

    (run / "ckpt_last.pt").write_bytes(b"")
    assert "is empty (0 bytes)" in _error(capsys, "train", "--resume", str(run), "--steps", "8")

    w = ckpt["model"]["head.weight"]
    raw = bytearray(good)
    at = raw.find(w.numpy().tobytes())
    assert at > 0
    raw[at + 5] ^= 0x10  # one flipped bit inside a weight
    (run / "ckpt_last.pt").write_bytes(bytes(raw))
    assert "does not match the checksum" in _error(capsys, "train", "--resume", str(run), "--steps", "8")

    ckpt["model"]["head.weight"] = torch.full_like(w, float("nan"))
    ck.save_checkpoint(run / "ckpt_last.pt", ckpt)  # a consistent checksum, but NaN weights
    assert "expected finite model weights" in _error(capsys, "train", "--resume", str(run), "--steps", "8")


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    loss = ShakespeareTask.loss

    def poisoned(self, model, batch):
        calls["n"] += 1
        value, mets = loss(self, model, batch)
        return (value * float("nan") if calls["n"] == 4 else value), mets
    monkeypatch.setattr(ShakespeareTask, "loss", poisoned)
    with pytest.raises(tr.NonFiniteLoss, match=r"step 4: the training loss is nan.*step 2\) is kept"):
        tr.train("shakespeare", None, dict(TINY, ckpt_every=2, out_dir=str(tmp_path), run_name="r"))
    run = tmp_path / "r"
    last = ck.load_checkpoint(run / "ckpt_last.pt")  # finite, or load_checkpoint would raise
    assert last["state"]["step"] == 2 and not (run / "summary.json").exists()


@pytest.mark.parametrize("flags,msg", [
    (["--lr", "inf"], "lr: expected a finite number"),
    (["--grad-clip", "nan"], "grad_clip: expected a finite number"),
    (["--time-budget", "nan"], "time_budget: expected a finite number"),
    (["--mlp-ratio", "-1"], "mlp_ratio: expected a finite number in [0.0, inf)"),
    (["--dropout", "1.5"], "dropout: expected a finite number in [0.0, 1.0)"),
    (["--run-name", "../escaped"], "run_name: expected a plain folder name"),
    (["--run-name", "/tmp/abs"], "run_name: expected a plain folder name"),
    (["--candidate", "relu"], "candidate: expected one of"),
    (["--preset", "cpu", "--model", "foo"], "model: expected one of"),
    (["--data", str(DATA.parent)], "data path: expected a file, got a folder"),
])
def test_bad_config_exits_2_and_writes_nothing(tmp_path, capsys, flags, msg):
    out = tmp_path / "runs"
    line = _error(capsys, "train", "shakespeare", *FLAGS, "--out-dir", str(out), *flags)
    assert line.startswith("minrnn train: error: ") and msg in line
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "escaped").exists()


def test_out_dir_errors(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    assert "out_dir: expected a folder, got a file" in _error(
        capsys, "train", "shakespeare", *FLAGS, "--out-dir", str(tmp_path / "file"))

    def denied(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))
    monkeypatch.setattr(Path, "mkdir", denied)  # an unwritable --out-dir (tests run as root here)
    line = _error(capsys, "train", "shakespeare", *FLAGS, "--out-dir", str(tmp_path / "ro"))
    assert "out_dir: cannot create the folder (Permission denied)" in line


def test_full_disk_mid_run_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    write = ck.atomic_write_bytes

    def full_disk(path, data):
        if Path(path).name == "ckpt_last.pt" and (Path(path).parent / "ckpt_last.pt").exists():
            raise OSError(28, "No space left on device", str(path))
        write(path, data)
    monkeypatch.setattr(ck, "atomic_write_bytes", full_disk)
    line = _error(capsys, "train", "shakespeare", *FLAGS, "--out-dir", str(tmp_path), "--run-name", "r")
    assert "No space left on device" in line
    assert _step(tmp_path / "r" / "ckpt_last.pt") == 2


def test_missing_tensorboard_leaves_no_run_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` of it now fails
    line = _error(capsys, "train", "shakespeare", *FLAGS, "--out-dir", str(tmp_path / "runs"), "--tensorboard")
    assert "pip install 'minrnn[tb]'" in line
    assert not (tmp_path / "runs").exists()


def test_minrnn_data_must_be_a_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINRNN_DATA", str(tmp_path / "nowhere"))
    flags = [f for f in FLAGS if f != str(DATA)]
    flags.remove("--data")
    assert "MINRNN_DATA: expected a folder" in _error(
        capsys, "train", "shakespeare", *flags, "--out-dir", str(tmp_path))


def test_architecture_flags_reach_the_model(tmp_path, capsys):
    """The paper's ablation fields are flags of every task (one config: models/arch.py)."""
    import contextlib
    import io
    from minrnn.commands.train import build_parser
    text = io.StringIO()
    with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
        build_parser("shakespeare").parse_args(["--help"])
    for flag in ("--candidate", "--normalize", "--no-normalize", "--norm", "--scan-impl", "--conv-kernel"):
        assert flag in text.getvalue()
    assert "rmsnorm | layernorm (default: rmsnorm)" in " ".join(text.getvalue().split())
    task_cls, kc, _ = tr.resolve_config("shakespeare", None, dict(
        TINY, model="minlstm", candidate="identity", normalize=False, norm="layernorm", scan_impl="reference"))
    rnn_block = task_cls(kc).build_model().blocks[0]
    assert (rnn_block.rnn.candidate, rnn_block.rnn.normalize, rnn_block.rnn.scan_impl) == ("identity", False,
                                                                                           "reference")
    assert isinstance(rnn_block.norm1, torch.nn.LayerNorm)
