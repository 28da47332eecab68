"""sparsevd: Sparse Variational Dropout (Molchanov, Ashukha & Vetrov, ICML 2017), reproduced."""
from .models import build_model, register_model
from .nn import Conv2dSVDO, LinearSVDO, kl_ard, kl_log_uniform

__all__ = ["LinearSVDO", "Conv2dSVDO", "kl_log_uniform", "kl_ard", "build_model", "register_model"]
__version__ = "0.1.0"
