"""sparsevd: Sparse Variational Dropout (Molchanov, Ashukha & Vetrov, ICML 2017), reproduced.

Use it on your own network::

    model = sparsevd.sparsify(model)                      # nn.Linear / nn.Conv2d -> sparse VD layers
    loss = sparsevd.elbo_loss(model(x), y, model, n_train, kl_weight=schedule(epoch))
    sparsevd.stats(model)["compression"]                  # weights / nonzero weights at test time
    sparsevd.export(model, "net.svd")                     # one compact file
    net = sparsevd.load("net.svd")                        # read it back with torch alone

The package by job: ``core`` (the method: layers, KL, objective, sparsify, stats, the LeNets),
``data`` and ``config`` (the edge), ``train`` (loop, checkpoints, runs), ``records`` and ``io``,
``compress`` (weights file, exporter, reader), ``report`` (tables, figures) and ``bench``.
See docs/architecture.md.
"""
from . import export
from .compress.reader import load
from .core.layers import Conv2dSVDO, LinearSVDO, kl_ard, kl_log_uniform, kl_march2017
from .core.metrics import stats
from .core.models import build_model, register_model
from .core.objective import KLSchedule, elbo_loss, kl
from .core.sparsify import sparsify

__all__ = ["sparsify", "kl", "elbo_loss", "KLSchedule", "stats", "export", "load", "LinearSVDO", "Conv2dSVDO",
           "kl_log_uniform", "kl_march2017", "kl_ard", "build_model", "register_model"]
__version__ = "0.1.0"
