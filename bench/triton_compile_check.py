"""Compile the Triton kernels ahead of time for a GPU architecture, on a machine without a GPU.

Triton ships its own ptxas, so `triton.compile` can lower the kernels to machine code (cubin) for, e.g.,
sm_90 (H100/H200) without a driver. This catches lowering errors that the CPU interpreter cannot, and
cuobjdump reports each variant's registers and spill stack (register pressure limits the programs per SM,
and so the memory parallelism, of a bandwidth-bound kernel). Run with TRITON_INTERPRET unset:

    python bench/triton_compile_check.py [--arch 90] [--quick] [--configs 16x64x4,32x64x8]

Prints one line per variant; exits non-zero if any variant fails to compile.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    raise SystemExit("unset TRITON_INTERPRET: the interpreter replaces the kernels this script compiles")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from minrnn.scan import triton_kernels as K  # noqa: E402
from minrnn.scan.triton_scan import BWD_STAGES, FWD_STAGES  # noqa: E402

KERNELS = {"fwd": K.scan_fwd_kernel, "bwd": K.scan_bwd_kernel}
CELLS = {"mingru": (0, False), "minlstm": (1, True), "minlstm-unnorm": (1, False), "linear": (2, False)}
FLAGS = ("HAS_H0", "HAS_HR", "HAS_MASK", "HAS_RESET")


def signature(kernel, dtype: str) -> dict:
    """Argument types from the kernel's parameter names (see `triton_kernels.py`)."""
    sig = {}
    for p in kernel.params:
        n = p.name
        if p.is_constexpr:
            sig[n] = "constexpr"
        elif n in ("mask_ptr", "reset_ptr"):
            sig[n] = "*u8"
        elif n in ("agg_ptr", "dhr_ptr"):
            sig[n] = "*fp32"
        elif n.endswith("_ptr"):
            sig[n] = f"*{dtype}"
        elif n.startswith("s_"):
            sig[n] = "i64"
        else:
            sig[n] = "i32"
    return sig


def compile_one(kind, cell, phase, dtype, flags, bt, bh, nw, arch) -> str:
    kernel = KERNELS[kind]
    cell_id, norm = CELLS[cell]
    stages = FWD_STAGES if kind == "fwd" else BWD_STAGES  # as `triton_scan` launches them
    consts = dict(CELL=cell_id, NORM=norm, CAND_G=True, ACC=tl.float32, PHASE=phase, BLOCK_T=bt, BLOCK_H=bh,
                  STAGES=stages, **{f: flags for f in FLAGS})
    sig = signature(kernel, dtype)
    names = list(sig)
    src = ASTSource(kernel, sig, constexprs={(names.index(k),): v for k, v in consts.items()})
    ck = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=dict(num_warps=nw))
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(ck.asm["cubin"])
        out = subprocess.run([tool, "-res-usage", path], capture_output=True, text=True).stdout
    usage = next((ln.split() for ln in out.splitlines() if "REG:" in ln), ["REG:?", "STACK:?"])
    return f"{usage[0]} {usage[1]} smem={ck.metadata.shared}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="compile the Triton kernels for a GPU arch without a GPU")
    p.add_argument("--arch", type=int, default=90, help="compute capability as an int (90 = H100/H200)")
    p.add_argument("--quick", action="store_true", help="a few variants only (the test suite's subset)")
    p.add_argument("--configs", default="16x64x4", help="BLOCK_TxBLOCK_Hxnum_warps list, comma-separated")
    a = p.parse_args(argv)
    configs = [tuple(int(v) for v in c.split("x")) for c in a.configs.split(",") if c]
    if a.quick:
        variants = [("fwd", "mingru", 0, "fp32", False), ("bwd", "minlstm", 2, "bf16", True)]
    else:
        variants = [(kind, cell, phase, dt, phase == 2)
                    for kind in KERNELS for cell in CELLS for phase in (0, 1, 2) for dt in ("fp32", "bf16")]
    bad = 0
    for bt, bh, nw in configs:
        for kind, cell, phase, dt, flags in variants:
            t = time.time()
            what = f"{kind} {cell} phase={phase} {dt} masks={flags} BLOCK_T={bt} BLOCK_H={bh} warps={nw}"
            try:
                print(f"{what}: ok {compile_one(kind, cell, phase, dt, flags, bt, bh, nw, a.arch)} "
                      f"({time.time() - t:.1f}s)", flush=True)
            except Exception as e:  # report every failing variant, then fail
                bad += 1
                print(f"{what}: FAILED {type(e).__name__}: {e}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
