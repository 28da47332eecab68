"""A run's trained parameters as ``weights.safetensors``: small, pickle-free, enough to re-threshold.

Sparse (SVDO) layers keep only the weights that some threshold up to the log-alpha clip could
keep, i.e. those with log alpha < clip, as flat int32 indices with theta and log sigma^2 at those
places; every other weight sits at the clip and is pruned at any threshold. A plain layer that is at
least half zeros (a magnitude-pruned one) keeps only its nonzero weights, the same way, without log
sigma^2 (``pruned`` in the layout); other plain layers and all biases are stored whole. Loading
rebuilds the exact test-time network (and its log alpha) of the run.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..core.models import build_from_config, weighted_layers
from ..core.layers import SVDOLayer

WEIGHTS = "weights.safetensors"
FORMAT = "sparsevd-weights"
VERSION = "1"
# log sigma^2 for weights not stored: with theta = 0 their log alpha is far above any clip.
ABSENT_LOG_SIGMA2 = 40.0


class WeightsError(RuntimeError):
    """A weights file that is missing, corrupt or for another network; the message names it."""


@torch.no_grad()
def weight_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the layout metadata that :func:`save_weights` writes."""
    tensors, layers = {}, {}
    for name, layer in weighted_layers(model).items():
        theta = layer.weight.detach().float().cpu()
        sparse = isinstance(layer, SVDOLayer)
        pruned = not sparse and 2 * int(torch.count_nonzero(theta)) <= theta.numel()
        if sparse:
            raw = (layer.log_sigma2 - torch.log(layer.weight * layer.weight + 1e-8)).detach().cpu()
            index = torch.nonzero(raw.flatten() < layer.log_alpha_clip).flatten()
            tensors[f"{name}.log_sigma2"] = layer.log_sigma2.detach().float().cpu().flatten()[index].contiguous()
        elif pruned:
            index = torch.nonzero(theta.flatten()).flatten()
        if sparse or pruned:
            tensors[f"{name}.index"] = index.to(torch.int32)
            tensors[f"{name}.weight"] = theta.flatten()[index].contiguous()
        else:
            tensors[f"{name}.weight"] = theta.contiguous()
        if layer.bias is not None:
            tensors[f"{name}.bias"] = layer.bias.detach().float().cpu().contiguous()
        layers[name] = {"shape": list(layer.weight.shape), "sparse": sparse, **({"pruned": True} if pruned else {})}
    return tensors, {"format": FORMAT, "version": VERSION, "layers": json.dumps(layers)}


def save_weights(model: nn.Module, path: Path) -> None:
    """Write ``path`` atomically (temp file + rename)."""
    from safetensors.torch import save

    from ..io import atomic_write_bytes
    tensors, meta = weight_tensors(model)
    atomic_write_bytes(Path(path), save(tensors, metadata=meta))


def weights_sha256(folder: Path) -> str:
    """What identifies a record's trained net: the SHA-256 of its weights file (a re-run record changes it)."""
    import hashlib
    return hashlib.sha256((Path(folder) / WEIGHTS).read_bytes()).hexdigest()


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The stored tensors and layer layout; WeightsError names the file if it is not one of ours."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file; records made before weights were saved have "
                           f"none, so re-run the row to get one")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != FORMAT:
            raise ValueError("not a sparsevd weights file")
        if meta.get("version") != VERSION:
            raise ValueError(f"format version {meta.get('version')}, this sparsevd reads {VERSION}")
        return tensors, json.loads(meta["layers"])
    except Exception as exc:  # safetensors raises its own error types; all mean "not readable as ours"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise WeightsError(f"{path}: cannot read weights ({first})") from None


@torch.no_grad()
def load_weights(model: nn.Module, path: Path) -> nn.Module:
    """Fill ``model`` (built with the run's own config) from ``path``; returns the model."""
    tensors, layout = read_weights(path)
    layers = weighted_layers(model)
    if set(layout) != set(layers):
        raise WeightsError(f"{path}: holds layers {sorted(layout)}, the model has {sorted(layers)}; "
                           f"build the model from the record's own config")
    for name, layer in layers.items():
        spec = layout[name]
        if list(layer.weight.shape) != spec["shape"] or spec["sparse"] != isinstance(layer, SVDOLayer):
            raise WeightsError(f"{path}: layer {name} is {spec}, the model's is {list(layer.weight.shape)} "
                               f"({'sparse' if isinstance(layer, SVDOLayer) else 'dense'})")
        try:
            _fill(layer, name, tensors, spec.get("pruned", False))
        except (KeyError, RuntimeError, IndexError) as exc:
            raise WeightsError(f"{path}: layer {name} is incomplete or corrupt ({type(exc).__name__})") from None
    return model


def _fill(layer: nn.Module, name: str, tensors: dict[str, torch.Tensor], pruned: bool) -> None:
    if isinstance(layer, SVDOLayer) or pruned:
        index = tensors[f"{name}.index"].long()  # flat, in the logical (NCHW) order of the weight
        theta = torch.zeros(layer.weight.numel())
        theta[index] = tensors[f"{name}.weight"]
        layer.weight.copy_(theta.view(layer.weight.shape))  # copy_ keeps the layer's memory format
    if isinstance(layer, SVDOLayer):
        log_sigma2 = torch.full((layer.weight.numel(),), ABSENT_LOG_SIGMA2)
        log_sigma2[index] = tensors[f"{name}.log_sigma2"]
        layer.log_sigma2.copy_(log_sigma2.view(layer.weight.shape))
    elif not pruned:
        layer.weight.copy_(tensors[f"{name}.weight"].view_as(layer.weight))
    if layer.bias is not None:
        layer.bias.copy_(tensors[f"{name}.bias"].view_as(layer.bias))



def load_record(folder: Path) -> tuple[nn.Module, dict]:
    """The trained eval-mode network of a record or finished run folder, and its config."""
    import yaml

    from ..config import upgrade_config, validate
    folder = Path(folder)
    if not (folder / "config.yaml").is_file():
        raise WeightsError(f"{folder}: no config.yaml; pass a record folder (results/runs/<row>/seed<k>) or a run folder")
    cfg = upgrade_config(yaml.safe_load((folder / "config.yaml").read_text()))
    model = load_weights(build_from_config(validate(cfg)), folder / WEIGHTS)
    return model.eval(), cfg
