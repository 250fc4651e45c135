"""`minrnn info`: versions, available scan implementations, the active one, devices."""
from __future__ import annotations


def run(args) -> int:
    import platform

    import torch

    import minrnn
    from minrnn.scan import available_impls, native, resolve_impl
    print(f"minrnn {minrnn.__version__}  torch {torch.__version__}  python {platform.python_version()}")
    cuda = f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cuda: not available"
    print(f"device: cpu ({torch.get_num_threads()} threads), {cuda}")
    print(f"scan implementations available: {', '.join(available_impls())}")
    if not native.available():
        print(f"  native unavailable: {native.unavailable_reason()}")
    print(f"active (auto) on cpu: {resolve_impl('auto', torch.device('cpu'))}")
    if native.available():
        print("  layers on cpu (fp32/fp64, masks and resets included): gate matmul + fused gate math + scan kernel "
              "in one autograd node (scan/fused_linear.py, scan/fused.py)")
        from minrnn.scan import fused_linear
        where = {dt: fused_linear.kernel_matmul_active(dt) for dt in (torch.float32, torch.float64)}
        inside = [str(dt).replace("torch.", "") for dt, v in where.items() if v]
        print(f"  layer matmuls inside the kernels (csrc/gemm.h) for: {', '.join(inside) or 'none'}; torch.mm for the "
              f"rest (MINRNN_KERNEL_MATMUL={fused_linear._MATMUL}; 'off' = always torch.mm)")
    from minrnn.models import fast_step
    step = ("native C kernel (models/fast_step.py; MINRNN_DISABLE_FAST_STEP=1 or generate(fast=False) turn it off)"
            if fast_step.available() else f"PyTorch step (kernel unavailable: {fast_step.unavailable_reason()})")
    print(f"generation step of minGRU/minLSTM LMs on cpu (fp32): {step}")
    if fast_step.available():
        from minrnn.tasks.rl.models import FAST_MAX_BATCH
        print(f"  also carried acting of Decision-minGRU/minLSTM (rl), up to {FAST_MAX_BATCH} environments per batch")
    from minrnn.scan import triton_unavailable_reason
    why = triton_unavailable_reason("cuda")
    if why is None:
        import triton
        print(f"active (auto) on cuda tensors: triton (fused kernels; triton {triton.__version__})")
    else:
        print(f"active (auto) on cuda tensors: chunked  ({why})")
    return 0


def register(sub) -> None:
    s = sub.add_parser("info", help="versions, scan implementations, device")
    s.set_defaults(func=run)
