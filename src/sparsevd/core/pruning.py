"""Magnitude pruning of a plain network: each weighted layer's mask is a torch parametrization
(``weight = original * mask``), and a number of weights to keep is split over the layers by one of
five allocations.

- ``uniform``: every layer keeps the same share of its weights (Zhu & Gupta 2017).
- ``erk``: Erdős–Rényi-Kernel (Evci et al. 2020, Sec. 3, "Sparsity distribution"): a layer of shape
  (n_out, n_in[, kh, kw]) keeps the share eps * (n_out + n_in [+ kh + kw]) / (n_out n_in [kh kw]), eps
  set so that the kept weights add up; a layer whose share would pass 1 stays dense and eps is set again.
- ``global``: one magnitude threshold over all layers: the largest |w| of the whole net.
- ``std``: Han et al. (2015, Sec. 4): a layer's threshold is a quality parameter times the standard
  deviation of its weights, one quality for all layers: the largest |w| / std(layer).
- ``layers``: each layer ends with the share of its weights given to it (``densities`` by layer, e.g. the shares
  Han et al. 2015 report in their Tables 2 and 3); an event that keeps the share f of the net, on the way to
  F = the densities' total share, keeps d ** (log f / log F) of a layer whose final share is d, so every
  layer moves on the same log scale and all reach their shares at the last event.

Within a layer the largest |w| are kept; a pruned weight is never chosen again.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from .models import weighted_layers

SCHEDULES = ("han", "gradual")
ALLOCATIONS = ("uniform", "erk", "global", "std", "layers")


class WeightMask(nn.Module):
    """The parametrization ``weight = original * mask``; ``mask`` is a buffer, so it travels in the
    state dict (checkpoints) and on ``.to(device)``."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", torch.ones_like(weight))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original * self.mask


def attach_masks(model: nn.Module) -> dict[str, nn.Module]:
    """Give every weighted layer an all-ones mask (once) and return the layers by name."""
    layers = weighted_layers(model)
    for layer in layers.values():
        if not parametrize.is_parametrized(layer, "weight"):
            parametrize.register_parametrization(layer, "weight", WeightMask(layer.weight))
    return layers


def mask_of(layer: nn.Module) -> torch.Tensor:
    return layer.parametrizations.weight[0].mask


def original_of(layer: nn.Module) -> nn.Parameter:
    """The parameter the optimizer updates; the layer's ``weight`` is it times the mask."""
    return layer.parametrizations.weight.original


@torch.no_grad()
def set_masks(layers: dict[str, nn.Module], masks: dict[str, torch.Tensor]) -> None:
    """Install ``masks`` and zero the pruned entries of the parameters themselves too."""
    for name, keep in masks.items():
        mask = mask_of(layers[name])
        mask.copy_(keep.to(mask.dtype))
        original_of(layers[name]).mul_(mask)


def kept_fraction(schedule: str, k: int, n: int, target: float) -> float:
    """The share of all weights kept after pruning event ``k`` of ``n`` (1..n), 1/target at k = n.

    gradual (Zhu & Gupta 2017, Eq. 1): s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n Δt))^3 with s_i = 0
    (the trained dense net) and s_f = 1 - 1/target; event k is t = t0 + k Δt.
    han: each prune-retrain round removes the same share of the weights still kept: (1/target)^(k/n).
    """
    if schedule == "gradual":
        final = 1.0 - 1.0 / target
        return 1.0 - final * (1.0 - (1.0 - k / n) ** 3)
    if schedule == "han":
        return target ** (-k / n)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def erk_densities(shapes: dict[str, tuple], keep: int) -> dict[str, float]:
    """Per-layer shares of weights kept under ERK, ``keep`` weights in all (see the module's docstring)."""
    sizes = {k: math.prod(s) for k, s in shapes.items()}
    raw = {k: sum(s) / sizes[k] for k, s in shapes.items()}
    dense: set[str] = set()
    while True:
        rest = [k for k in shapes if k not in dense]
        budget = keep - sum(sizes[k] for k in dense)
        eps = budget / sum(raw[k] * sizes[k] for k in rest) if rest else 0.0
        over = {k for k in rest if eps * raw[k] > 1.0}
        if not over:
            return {k: 1.0 if k in dense else eps * raw[k] for k in shapes}
        dense |= over


def _counts(densities: dict[str, float], sizes: dict[str, int], keep: int) -> dict[str, int]:
    """Whole numbers of weights per layer that add up to ``keep`` (largest remainders round up)."""
    exact = {k: min(densities[k], 1.0) * sizes[k] for k in sizes}
    counts = {k: min(sizes[k], math.floor(v)) for k, v in exact.items()}
    short = keep - sum(counts.values())
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True):
        if short <= 0:
            break
        if counts[k] < sizes[k]:
            counts[k] += 1
            short -= 1
    return counts


def _largest(score: torch.Tensor, live: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` live entries of largest score (fewer if fewer are live), as a bool mask."""
    flat = torch.where(live, score, torch.full_like(score, -math.inf)).flatten()
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.topk(flat, min(k, flat.numel())).indices] = True
    return keep.view(score.shape) & live


def _live_std(w: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    kept = w[live]
    return kept.std() if kept.numel() > 1 else w.new_ones(())


def final_share(densities: dict[str, float], sizes: dict[str, int]) -> float:
    """The share of the net's weights that per-layer ``densities`` keep."""
    return sum(densities[k] * sizes[k] for k in sizes) / sum(sizes.values())


def layer_counts(densities: dict[str, float], sizes: dict[str, int], share: float) -> dict[str, int]:
    """Weights each layer keeps when the net keeps ``share`` on its way to the ``densities`` (see ``layers``)."""
    final = final_share(densities, sizes)
    power = math.log(share) / math.log(final) if final < 1.0 else 1.0
    return {k: max(1, min(sizes[k], round(sizes[k] * densities[k] ** power))) for k in sizes}


@torch.no_grad()
def allocate(weights: dict[str, torch.Tensor], live: dict[str, torch.Tensor], keep: int,
             allocation: str, densities: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """Masks keeping ``keep`` weights of the net, split by ``allocation``; ``live``: the current masks;
    ``densities``: the final per-layer shares of ``allocation="layers"``."""
    if allocation == "layers":
        sizes = {k: w.numel() for k, w in weights.items()}
        counts = layer_counts(densities, sizes, keep / sum(sizes.values()))
        return {k: _largest(w.abs(), live[k], counts[k]) for k, w in weights.items()}
    if allocation in ("uniform", "erk"):
        sizes = {k: w.numel() for k, w in weights.items()}
        densities = ({k: keep / sum(sizes.values()) for k in sizes} if allocation == "uniform"
                     else erk_densities({k: tuple(w.shape) for k, w in weights.items()}, keep))
        counts = _counts(densities, sizes, keep)
        return {k: _largest(w.abs(), live[k], counts[k]) for k, w in weights.items()}
    if allocation not in ("global", "std"):
        raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
    scores = {k: w.abs() / (_live_std(w, live[k]) if allocation == "std" else 1.0) for k, w in weights.items()}
    chosen = _largest(torch.cat([s.flatten() for s in scores.values()]),
                      torch.cat([live[k].flatten() for k in scores]), keep)
    parts = chosen.split([w.numel() for w in weights.values()])
    return {k: part.view(w.shape) for (k, w), part in zip(weights.items(), parts)}


@torch.no_grad()
def quality_masks(weights: dict[str, torch.Tensor], live: dict[str, torch.Tensor],
                  quality: float) -> dict[str, torch.Tensor]:
    """Han et al. (2015, Sec. 4): keep |w| >= quality * std of the layer's (still kept) weights."""
    return {k: (w.abs() >= quality * _live_std(w, live[k])) & live[k] for k, w in weights.items()}
