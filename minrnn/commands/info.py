"""`minrnn info`: versions, available scan implementations, the active one, devices."""
from __future__ import annotations


def run(args) -> int:
    import platform

    import torch

    import minrnn
    from minrnn import settings
    from minrnn.scan import available_impls, cpu, select_backend
    print(f"minrnn {minrnn.__version__}  torch {torch.__version__}  python {platform.python_version()}")
    cuda = f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cuda: not available"
    print(f"device: cpu ({torch.get_num_threads()} threads), {cuda}")
    print(f"scan backends available: {', '.join(available_impls())}")
    if not cpu.available():
        print(f"  cpu backend unavailable: {cpu.unavailable_reason()}")
    print(f"active (auto) on cpu, float32: {select_backend('auto', 'cpu', torch.float32)}; "
          f"bfloat16: {select_backend('auto', 'cpu', torch.bfloat16)}")
    if cpu.available():
        print("  cpu backend: one custom op per layer direction (minrnn::cpu_linear_cell: gate matmul, fused gate "
              f"math and scan; scan/cpu.py), OpenMP: {'yes' if cpu.openmp() else 'no (one thread)'}")
        inside = [str(dt).replace("torch.", "") for dt in (torch.float32, torch.float64)
                  if cpu.matmul_in_kernel(settings.default_cpu_matmul(), dt)]
        print(f"  layer matmuls inside the kernels (csrc/gemm.h) for: {', '.join(inside) or 'none'}; torch.mm for the "
              f"rest (a layer's cpu_matmul; default {settings.default_cpu_matmul()!r}; 'off' = always torch.mm)")
    from minrnn.models import fast_step
    step = ("native C kernel (models/fast_step.py; MINRNN_DISABLE_FAST_STEP=1 or generate(fast=False) turn it off)"
            if fast_step.available() else f"PyTorch step (kernel unavailable: {fast_step.unavailable_reason()})")
    print(f"generation step of minGRU/minLSTM LMs on cpu (fp32): {step}")
    if fast_step.available():
        print(f"  for up to {fast_step.FAST_MAX_BATCH} sequences per batch, in generation and in carried RL acting "
              "(SequenceModel.step_route decides)")
    from minrnn.scan import triton_unavailable_reason
    why = triton_unavailable_reason("cuda")
    if why is None:
        import triton
        print(f"active (auto) on cuda tensors: triton (fused kernels; triton {triton.__version__})")
    else:
        print(f"active (auto) on cuda tensors: chunked  ({why})")
    print("environment (minrnn/settings.py):")
    for line in settings.describe():
        print(f"  {line}")
    return 0


def register(sub) -> None:
    s = sub.add_parser("info", help="versions, scan implementations, device")
    s.set_defaults(func=run)
