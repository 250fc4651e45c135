"""`BenchConfig`: every setting of `minrnn bench` (the command's flags are derived from its fields), and the
`--quick` preset. Imports nothing heavy, so building the CLI parser stays fast.
"""
from __future__ import annotations

from dataclasses import dataclass, field

FULL_LENGTHS = (64, 128, 256, 512, 1024, 2048, 4096)


@dataclass
class BenchConfig:
    lengths: tuple = field(default=FULL_LENGTHS, metadata={"help": "sequence lengths (train and scan rows)"})
    batch: int = field(default=64, metadata={"help": "batch size B"})
    width: int = field(default=128, metadata={"help": "input size = hidden size D"})
    dtype: str = field(default="float32", metadata={"help": "float32 | float64 | bfloat16 | float16"})
    device: str = field(default="cpu", metadata={"help": "cpu | cuda"})
    threads: int = field(default=1, metadata={"help": "torch.set_num_threads (CPU)"})
    thread_sweep: tuple = field(default=(), metadata={
        "help": "time every row at each of these thread counts, side by side (overrides threads; rows are "
                "named 'ROW @Nt', and 'ROW' is its fastest count, so speed-ups compare each side at its best)"})
    rounds: int = field(default=1, metadata={
        "help": "run the whole sequence of cases this many times, each time timing every case, and report the "
                "median over all rounds' calls: a shared machine's load, which comes and goes over seconds to "
                "minutes, then reaches every row alike"})
    warmup: int = field(default=1, metadata={"help": "untimed calls before timing"})
    repeats: int = field(default=5, metadata={"help": "timed calls (median reported)"})
    min_repeats: int = field(default=3, metadata={"help": "timed calls even past the time budget"})
    max_seconds: float = field(default=20.0, metadata={"help": "time budget per (row, size) for repeats"})
    groups: tuple = field(default=("train", "scan", "infer"), metadata={"help": "train | scan | infer"})
    rows: tuple = field(default=(), metadata={"help": "only rows matching these glob patterns (default all)"})
    memory: bool = field(default=True, metadata={"help": "probe peak training memory of train rows"})
    infer_batches: tuple = field(default=(1, 64), metadata={"help": "batch sizes of the step() rows"})
    loop_max_len: int = field(default=4096, metadata={"help": "skip the Python-loop rows above this length"})
    out: str = field(default="bench/out", metadata={"help": "output folder for the JSON and the PNG"})
    tag: str = field(default="cpu", metadata={"help": "file name stem: <out>/bench_<tag>.json/.png"})

    def __post_init__(self):
        for name in ("batch", "width", "threads", "repeats", "min_repeats", "rounds"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.max_seconds <= 0:
            raise ValueError(f"warmup >= 0 and max_seconds > 0 expected, got {self.warmup}, {self.max_seconds}")
        if any(int(t) < 1 for t in self.thread_sweep):
            raise ValueError(f"thread_sweep: expected thread counts >= 1, got {self.thread_sweep}")
        if not self.lengths or any(int(t) < 1 for t in self.lengths):
            raise ValueError(f"lengths: expected positive ints, got {self.lengths}")
        if self.dtype not in ("float32", "float64", "bfloat16", "float16"):
            raise ValueError(f"dtype: expected float32|float64|bfloat16|float16, got {self.dtype!r}")
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"device: expected cpu or cuda, got {self.device!r}")
        if self.device.startswith("cuda") and not __import__("torch").cuda.is_available():
            raise RuntimeError("device cuda: torch.cuda.is_available() is False on this machine")
        bad = [g for g in self.groups if g not in ("train", "scan", "infer")]
        if bad:
            raise ValueError(f"groups: expected train, scan or infer, got {bad}")


def quick_config(**over) -> BenchConfig:
    """A smoke-sized run (seconds): small shapes, few repeats; used by CI and `minrnn bench --quick`."""
    kw = dict(lengths=(16, 64), batch=4, width=16, warmup=1, repeats=2, min_repeats=1, max_seconds=1.0,
              infer_batches=(1, 4), tag="quick")
    kw.update(over)
    return BenchConfig(**kw)
