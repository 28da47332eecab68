"""Turn an ordinary model's ``nn.Linear`` and ``nn.Conv2d`` layers into sparse variational dropout layers."""
from __future__ import annotations

import torch
from torch import nn

from .layers import PRIORS, Conv2dSVDO, LinearSVDO, SVDOLayer

# Layers whose ``weight`` is a per-feature scale, not a matrix to sparsify: left as they are.
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _convert(layer: nn.Module, name: str, options: dict) -> nn.Module:
    if type(layer) is nn.Linear:
        new = LinearSVDO(layer.in_features, layer.out_features, bias=layer.bias is not None, **options)
    elif type(layer) is nn.Conv2d:
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ValueError(f"sparsify: {name} (Conv2d) uses padding={layer.padding!r}, "
                             f"padding_mode={layer.padding_mode!r}; only numeric zero padding converts; "
                             f"pass skip=({name!r},) to leave it dense")
        new = Conv2dSVDO(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                         padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                         bias=layer.bias is not None, **options)
    else:
        raise ValueError(f"sparsify: cannot convert {name} ({type(layer).__name__}); only nn.Linear and "
                         f"nn.Conv2d become sparse layers; pass skip=({name!r},) to leave it dense")
    new = new.to(device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(layer.weight)  # theta starts at the trained weight: a warm start
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
        new.log_sigma2.fill_(options["log_sigma2_init"])
    return new


def _skipped(name: str, skip) -> bool:
    return any(name == s or name.startswith(f"{s}.") for s in skip)


def sparsify(model: nn.Module, *, threshold: float = 3.0, log_sigma2_init: float = -10.0,
             prior: str = "log_uniform", train_clip: bool = False, skip=()) -> nn.Module:
    """Replace every ``nn.Linear`` and ``nn.Conv2d`` in ``model`` (nested ones too) by a sparse VD layer
    with the same theta and bias, in place, and return the model.

    ``prior``: ``log_uniform`` (SparseVD, Eq. 14), ``log_uniform_march2017`` (the authors' first fit,
    :func:`sparsevd.kl_march2017`) or ``ard``; ``threshold``: log alpha at or above which
    a weight is pruned at test time; ``log_sigma2_init``: low (the authors use -10) so a trained model
    starts out almost deterministic (at -10 only weights with |theta| <= exp(-6.5) ~ 0.0015 are pruned at
    once, which moves a typical network's outputs by well under 1 %); ``skip``: names (as in ``named_modules``) of modules to leave alone.
    Any other module with a weight matrix (Conv1d, Embedding, ...) raises ValueError naming it.
    """
    if prior not in PRIORS:
        raise ValueError(f"sparsify: prior={prior!r}; use one of {', '.join(PRIORS)}")
    unknown = [s for s in skip if s not in dict(model.named_modules())]
    if unknown:
        raise ValueError(f"sparsify: skip names {unknown} that are not modules of the model; "
                         f"see [name for name, _ in model.named_modules()]")
    options = dict(threshold=threshold, log_sigma2_init=log_sigma2_init, train_clip=train_clip, prior=prior)
    pending = []
    for name, module in model.named_modules():
        if not name or _skipped(name, skip) or isinstance(module, (SVDOLayer, *NORM_LAYERS)):
            continue
        if isinstance(getattr(module, "weight", None), nn.Parameter) or isinstance(module, (nn.Linear, nn.Conv2d)):
            pending.append(name)
    for name in pending:
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, attr, _convert(getattr(owner, attr), name, options))
    return model
