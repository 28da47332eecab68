"""Test error, per-layer sparsity and compression of the deterministic (eval-mode) network."""
from __future__ import annotations

import torch
from torch import nn

from .models import weighted_layers
from .nn import SVDOLayer


@torch.no_grad()
def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight the test-time network uses: theta, with log alpha >= threshold zeroed."""
    if isinstance(layer, SVDOLayer):
        return layer.weight * layer.mask()
    return layer.weight


@torch.no_grad()
def layer_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(number of weights, number of nonzero weights) per weighted layer; biases excluded."""
    counts = {}
    for name, layer in weighted_layers(model).items():
        w = effective_weight(layer)
        counts[name] = (w.numel(), int(torch.count_nonzero(w)))
    return counts


def sparsity(counts: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Percentage of each layer's weights that are pruned (Table 1's 'sparsity per layer')."""
    return {name: 100.0 * (1.0 - nnz / n) for name, (n, nnz) in counts.items()}


def compression(counts: dict[str, tuple[int, int]]) -> float:
    """|W| / |W != 0| over all layers, biases excluded, as in Table 1."""
    total = sum(n for n, _ in counts.values())
    nonzero = sum(nnz for _, nnz in counts.values())
    return total / max(nonzero, 1)


@torch.no_grad()
def compression_with_biases(model: nn.Module) -> float:
    """Like :func:`compression` but counting every bias as a weight too (never pruned)."""
    total = nonzero = 0
    for layer in weighted_layers(model).values():
        w = effective_weight(layer)
        total += w.numel()
        nonzero += int(torch.count_nonzero(w))
        if layer.bias is not None:
            total += layer.bias.numel()
            nonzero += int(torch.count_nonzero(layer.bias))
    return total / max(nonzero, 1)


@torch.no_grad()
def test_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 5000) -> float:
    """Top-1 error in percent of the eval-mode (deterministic, pruned) network."""
    was_training = model.training
    model.eval()
    wrong = torch.zeros((), dtype=torch.long, device=y.device)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        wrong += (model(xb).argmax(1) != yb).sum()
    model.train(was_training)
    return 100.0 * wrong.item() / len(y)


def evaluate(model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor) -> dict:
    counts = layer_counts(model)
    return {
        "test_error": test_error(model, x_test, y_test),
        "sparsity": sparsity(counts),
        "compression": compression(counts),
        "compression_with_biases": compression_with_biases(model),
        "weights": {name: n for name, (n, _) in counts.items()},
        "nonzero": {name: nnz for name, (_, nnz) in counts.items()},
    }
