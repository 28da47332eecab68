"""The training objective: the summed KL, the negative ELBO in the authors' scale, the KL-weight schedule."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import SVDOLayer


def kl(model: nn.Module) -> torch.Tensor:
    """Sum over every sparse layer of its per-weight KL (Eq. 14 or ARD); differentiable, 0 if none."""
    layers = [m for m in model.modules() if isinstance(m, SVDOLayer)]
    if not layers:
        return torch.zeros((), device=next(model.parameters()).device)
    return sum(layer.kl() for layer in layers)


def elbo_loss(logits: torch.Tensor, target: torch.Tensor, model: nn.Module, n_train: int,
              kl_weight: float = 1.0, *, terms: bool = False):
    """The negative ELBO estimate (SGVLB, Eq. 3 and Sec. 4 of the paper) as the authors' code scales it:

        N * mean cross-entropy + kl_weight * sum KL

    ``n_train`` is N, the training-set size; ``kl_weight`` is beta (see :class:`KLSchedule`). With
    ``terms=True`` returns ``(loss, ce, kl)``, the last two detached, for logging.
    """
    ce = F.cross_entropy(logits, target)
    kl_sum = kl(model)
    loss = n_train * ce + kl_weight * kl_sum
    return (loss, ce.detach(), kl_sum.detach()) if terms else loss


@dataclass(frozen=True)
class KLSchedule:
    """beta at a 0-based epoch: 0 until ``start``, then linear, reaching ``maximum`` at ``start + warmup``.

    ``KLSchedule(5, 15)`` is the authors' ``rw_linear``: 0 for epochs 0-5, 1 from epoch 20.
    """

    start: int = 0
    warmup: int = 0
    maximum: float = 1.0

    def __call__(self, epoch: int) -> float:
        if epoch < self.start:
            return 0.0
        if self.warmup <= 0:
            return float(self.maximum)
        return float(self.maximum) * min(1.0, (epoch - self.start) / self.warmup)
