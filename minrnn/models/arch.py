"""The architecture fields, declared once.

`BlockConfig` holds the fields of the paper's minRNN block (`models/block.py`); `ModelConfig` (the library's
model config) and `ArchConfig` (what `make_model` builds and every task config inherits, so every field is a
`minrnn train` flag) both extend it. So the paper's ablations (`candidate`, `normalize`, the norm, the conv,
the MLP, the scan) are flags of every task, with one help line and one default each.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..gates import CANDIDATES
from ..scan import IMPLS
from ..validate import check_choice as _choice, check_float as _float, check_int as _int

ARCHS = ("mingru", "minlstm", "transformer", "gru", "lstm", "mamba")
NORMS = ("rmsnorm", "layernorm")
MAMBA_SCANS = ("auto", "pscan", "sequential", "mamba-ssm")  # models/mamba.py


@dataclass
class BlockConfig:
    """Fields of the minRNN block: pre-norm residual [conv] -> minGRU/minLSTM -> [MLP]."""
    d_model: int = 64              # residual/embedding width
    n_layers: int = 2              # number of blocks/layers
    expansion: float = 2.0         # minRNN hidden = expansion * d_model
    conv_kernel: int = 4           # minRNN blocks: causal depthwise conv kernel before the RNN (0: off)
    mlp_ratio: float = 4.0         # MLP hidden = mlp_ratio * d_model (minRNN and Transformer blocks; 0: off)
    dropout: float = 0.0           # dropout on residual branches / between layers
    norm: str = "rmsnorm"          # minRNN blocks' norm: rmsnorm | layernorm
    candidate: str = "g"           # minRNN candidate c(x): g (the paper's positive one) | identity
    normalize: bool = True         # minLSTM gate normalisation f/(f+i), i/(f+i) (the paper's equations: on)
    scan_impl: str = "auto"        # minRNN scan: auto | reference | logspace | chunked | native | triton

    def __post_init__(self):
        _int("d_model", self.d_model, 1)
        _int("n_layers", self.n_layers, 1)
        _float("expansion", self.expansion, 0.0, lo_open=True)
        _int("conv_kernel", self.conv_kernel, 0)
        if self.conv_kernel == 1:
            raise ValueError("conv_kernel: expected 0 (off) or >= 2, got 1")
        _float("mlp_ratio", self.mlp_ratio, 0.0)
        _float("dropout", self.dropout, 0.0, 1.0)
        _choice("norm", self.norm, NORMS)
        _choice("candidate", self.candidate, CANDIDATES)
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize: expected True or False, got {self.normalize!r}")
        _choice("scan_impl", self.scan_impl, ("auto",) + IMPLS)


@dataclass
class ArchConfig(BlockConfig):
    """Any sequence model of `models.baselines.make_model`: the block fields plus the baselines' own. A task
    whose models differ (e.g. forecasting) redeclares `model` and `MODELS`, the choices `model` is checked
    against."""
    MODELS: ClassVar[tuple] = ARCHS
    model: str = "mingru"          # architecture: mingru | minlstm | transformer | gru | lstm | mamba
    n_heads: int = 4               # Transformer attention heads
    rnn_hidden: int = 0            # nn.GRU/nn.LSTM hidden size (0: d_model)
    d_state: int = 16              # Mamba: SSM state size N per channel (its d_conv is conv_kernel, 0 -> 1)
    mamba_scan: str = "auto"       # Mamba scan: auto (mamba-ssm's kernel on CUDA if installed, else pscan) | pscan | sequential | mamba-ssm

    def __post_init__(self):
        super().__post_init__()
        _choice("model", self.model, self.MODELS)
        _int("n_heads", self.n_heads, 1)
        _int("rnn_hidden", self.rnn_hidden, 0)
        _int("d_state", self.d_state, 1)
        _choice("mamba_scan", self.mamba_scan, MAMBA_SCANS)
        if self.model == "mamba":  # say so now, not when the model is built
            from ..extras import require
            require("mambapy.mamba", "mamba", "the Mamba model (--model mamba)")
