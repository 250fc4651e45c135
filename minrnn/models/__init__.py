"""Sequence models built from minRNN layers (and, in later modules, the baselines)."""
from .block import Block, CausalConv1d, ModelConfig, RMSNorm, SequenceModel

__all__ = ["Block", "CausalConv1d", "ModelConfig", "RMSNorm", "SequenceModel"]
