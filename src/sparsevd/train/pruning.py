"""When a method=pruning run prunes, and how far: ``method.rounds`` events at the start of epochs
``prune_start``, ``prune_start + prune_every``, ...; training after the last one fine-tunes the final masks.

- ``han`` (Han et al. 2015): prune, retrain ``prune_every`` epochs, repeat. With ``target_compression``
  each round keeps the same share of the weights still kept, (1/target)^(1/rounds), so the last reaches
  the target; with ``quality`` (``allocation=std``) each round prunes |w| < quality x the layer's std.
  With ``allocation=layers`` the target is the one the per-layer ``densities`` make.
- ``gradual`` (Zhu & Gupta 2017, Eq. 1): sparsity follows their cubic from the dense net to
  1 - 1/target, one step per event (:func:`sparsevd.core.pruning.kept_fraction`). Their first step,
  at t0, prunes s_i = 0 of the weights, i.e. nothing; ours at ``prune_start`` is their t0 + Δt.

Pruned weights stay exactly zero: the mask zeroes them in the forward pass, so their gradient is zero,
and when a mask changes the pruned entries of the parameter and of Adam's moments are zeroed as well,
so no later step moves them (Adam's update is the ratio of its moments).
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.pruning import (allocate, attach_masks, final_share, kept_fraction, mask_of, original_of, quality_masks,
                            set_masks)


class Pruner:
    """The masks of one run's model and its pruning schedule (``cfg.method`` of a method=pruning config)."""

    def __init__(self, method, model: nn.Module):
        self.method = method
        self.layers = attach_masks(model)
        sizes = {name: layer.weight.numel() for name, layer in self.layers.items()}
        self.total = sum(sizes.values())
        self.densities = dict(zip(sizes, method.densities)) if method.densities is not None else None
        self.target = 1.0 / final_share(self.densities, sizes) if self.densities else method.target_compression

    def event(self, epoch: int) -> int | None:
        """1-based number of the pruning event at the start of 0-based ``epoch``, or None."""
        m = self.method
        k, rest = divmod(epoch - m.prune_start, m.prune_every)
        return k + 1 if epoch >= m.prune_start and rest == 0 and k < m.rounds else None

    def keep(self, k: int) -> int:
        """How many weights event ``k`` keeps in all (a target compression's schedule)."""
        m = self.method
        return round(self.total * kept_fraction(m.schedule, k, m.rounds, self.target))

    @torch.no_grad()
    def before_epoch(self, epoch: int, optimizer: torch.optim.Optimizer) -> int | None:
        """Prune if an event falls at ``epoch``; returns the weights kept then, or None."""
        k = self.event(epoch)
        if k is None:
            return None
        weights = {name: layer.weight for name, layer in self.layers.items()}
        live = {name: mask_of(layer).bool() for name, layer in self.layers.items()}
        if self.method.quality is not None:
            masks = quality_masks(weights, live, self.method.quality)
        else:
            masks = allocate(weights, live, self.keep(k), self.method.allocation, self.densities)
        set_masks(self.layers, masks)
        zero_pruned_moments(optimizer, self.layers)
        return sum(int(m.sum()) for m in masks.values())


@torch.no_grad()
def zero_pruned_moments(optimizer: torch.optim.Optimizer, layers: dict[str, nn.Module]) -> None:
    """Zero the pruned entries of every weight-shaped optimizer state (Adam's exp_avg, exp_avg_sq)."""
    for layer in layers.values():
        param, mask = original_of(layer), mask_of(layer)
        for value in optimizer.state.get(param, {}).values():
            if torch.is_tensor(value) and value.shape == param.shape:
                value.mul_(mask)
