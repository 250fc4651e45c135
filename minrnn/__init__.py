"""minrnn: minGRU and minLSTM ("Were RNNs All We Needed?", Feng et al. 2024) for PyTorch."""
from .layers import MinGRU, MinLSTM
from .models import ModelConfig, SequenceModel
from .scan import available_impls, linear_scan

__version__ = "0.1.0"
__all__ = ["MinGRU", "MinLSTM", "ModelConfig", "SequenceModel", "available_impls", "linear_scan", "__version__"]
