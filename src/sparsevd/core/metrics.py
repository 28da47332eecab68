"""Test error, per-layer sparsity and compression of the deterministic (eval-mode) network."""
from __future__ import annotations

import torch
from torch import nn

from .models import weighted_layers
from .layers import SVDOLayer


@torch.no_grad()
def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight the test-time network uses: theta, with log alpha >= threshold zeroed."""
    if isinstance(layer, SVDOLayer):
        return layer.weight * layer.mask()
    return layer.weight


@torch.no_grad()
def stats(model: nn.Module) -> dict:
    """Per weighted layer its weights, nonzero weights and sparsity (% pruned) at test time, and the
    model's totals with ``compression`` = weights / nonzero weights, biases excluded (Table 1)."""
    layers = {}
    for name, layer in weighted_layers(model).items():
        w = effective_weight(layer)
        n, nnz = w.numel(), int(torch.count_nonzero(w))
        layers[name] = {"weights": n, "nonzero": nnz, "sparsity": 100.0 * (1.0 - nnz / n)}
    total = sum(v["weights"] for v in layers.values())
    nonzero = sum(v["nonzero"] for v in layers.values())
    return {"layers": layers, "weights": total, "nonzero": nonzero, "compression": total / max(nonzero, 1)}


@torch.no_grad()
def compression_with_biases(model: nn.Module) -> float:
    """Like ``stats(model)["compression"]`` but counting every bias as a weight too (never pruned)."""
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
    """The trainer's per-epoch metrics: test error and :func:`stats` in the record's layout."""
    st = stats(model)
    return {
        "test_error": test_error(model, x_test, y_test),
        "sparsity": {k: v["sparsity"] for k, v in st["layers"].items()},
        "compression": st["compression"],
        "compression_with_biases": compression_with_biases(model),
        "weights": {k: v["weights"] for k, v in st["layers"].items()},
        "nonzero": {k: v["nonzero"] for k, v in st["layers"].items()},
    }
