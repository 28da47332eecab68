"""arrays.npz: the compact per-layer summaries the figures draw (log-alpha histograms, inputs kept)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.metrics import effective_weight
from ..core.models import svdo_layers, weighted_layers
from ..core.layers import LOG_ALPHA_CLIP


def save_arrays(model, path: Path) -> None:
    """Compact per-layer log-alpha histograms and per-input surviving-weight counts, for the figures.

    The bins span the layers' own log-alpha clip, so the clipped mass sits in the two end bins.
    """
    clip = max((layer.log_alpha_clip for layer in svdo_layers(model)), default=LOG_ALPHA_CLIP)
    bins = np.linspace(-clip, clip, max(round(10 * clip), 1) + 1)
    arrays = {"bin_edges": bins}
    for name, layer in weighted_layers(model).items():
        w = effective_weight(layer)
        arrays[f"inputs_kept/{name}"] = (w != 0).flatten(1).sum(0).cpu().numpy().astype(np.int32) \
            if w.dim() == 2 else (w != 0).sum((0, 2, 3)).cpu().numpy().astype(np.int32)
    for layer in svdo_layers(model):
        name = next(n for n, m in model.named_modules() if m is layer)
        la = layer.log_alpha.detach().cpu().numpy().ravel()
        arrays[f"log_alpha_hist/{name}"] = np.histogram(la, bins)[0].astype(np.int64)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
