"""sparsevd: Sparse Variational Dropout (Molchanov, Ashukha & Vetrov, ICML 2017), reproduced.

Use it on your own network::

    model = sparsevd.sparsify(model)                      # nn.Linear / nn.Conv2d -> sparse VD layers
    loss = sparsevd.elbo_loss(model(x), y, model, n_train, kl_weight=schedule(epoch))
    sparsevd.stats(model)["compression"]                  # weights / nonzero weights at test time
    sparsevd.export(model, "net.svd")                     # one compact file; sparsevd.export.load reads it
"""
from .export import export
from .metrics import stats
from .models import build_model, register_model
from .nn import Conv2dSVDO, LinearSVDO, kl_ard, kl_log_uniform
from .objective import KLSchedule, elbo_loss, kl
from .sparsify import sparsify

__all__ = ["sparsify", "kl", "elbo_loss", "KLSchedule", "stats", "export", "LinearSVDO", "Conv2dSVDO",
           "kl_log_uniform", "kl_ard", "build_model", "register_model"]
__version__ = "0.1.0"
