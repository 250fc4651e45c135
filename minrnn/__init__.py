"""minrnn: minGRU and minLSTM ("Were RNNs All We Needed?", Feng et al. 2024) for PyTorch.

The public names are imported on first use (PEP 562 module `__getattr__`), so that `import minrnn` and the
`minrnn` command's parser (`minrnn --help`) do not import torch; `from minrnn import MinGRU` works as usual.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {"MinGRU": ".layers", "MinLSTM": ".layers", "ModelConfig": ".models", "SequenceModel": ".models",
         "available_impls": ".scan", "linear_scan": ".scan"}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'minrnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
