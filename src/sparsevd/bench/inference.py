"""Inference benchmark: the masked dense network against its exported file, on CPU.

The baseline is the plain dense net (``bench.training.REF_NETS``) holding the record's test-time weights
(pruned ones zeroed), on preprocessed images; the exported network takes raw images and does its
own preprocessing. Both run under ``torch.inference_mode``, interleaved block by block.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from .training import REF_NETS
from ..compress.reader import load
from ..data import raw_input
from ..compress.deploy import DEFAULT
from ..compress.export import export, test_time_weight
from ..core.models import weighted_layers
from ..compress.weights import WEIGHTS, load_record, weights_sha256

CALLS = {1: 400, 1000: 8}  # calls per timed block, by batch size


@torch.no_grad()
def masked_reference(model: torch.nn.Module, net: str) -> torch.nn.Module:
    ref = REF_NETS[net]().eval()
    ours = weighted_layers(model)
    for name, layer in weighted_layers(ref).items():
        layer.weight.copy_(test_time_weight(ours[name]))
        layer.bias.copy_(ours[name].bias)
    return ref


def _block(fn, x, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - t0) / calls


def bench_record(folder: Path, net: str, repeats: int = 7) -> list[dict]:
    """Median seconds per batch of the masked dense net and the exported one, at batch 1 and 1000."""
    model, cfg = load_record(folder)
    scale, mean, u, _ = raw_input(cfg["data"])
    ref = masked_reference(model, net)
    with tempfile.TemporaryDirectory() as tmp:
        size = export(model, Path(tmp) / "net.svd", scale=scale, mean=mean, options=DEFAULT)
        fast = load(Path(tmp) / "net.svd")
    rows = []
    with torch.inference_mode():
        for batch, calls in CALLS.items():
            raw = u[:batch].contiguous()
            pre = (scale * raw - mean).contiguous()
            times = {"masked_dense": [], "exported": []}
            for rnd in range(repeats + 1):
                for name, fn, x in (("masked_dense", ref, pre), ("exported", fast, raw)):
                    t = _block(fn, x, calls)
                    if rnd:
                        times[name].append(t)
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append({"net": net, "record": str(folder), "weights_sha256": weights_sha256(folder),
                         "batch": batch, "file_bytes": size,
                         "masked_dense_ms": 1e3 * med["masked_dense"], "exported_ms": 1e3 * med["exported"],
                         "speedup": med["masked_dense"] / med["exported"]})
    return rows


def bench_inference(runs_dir: Path, nets=("lenet300", "lenet5"), repeats: int = 7, warn=print) -> list[dict]:
    """Every net whose ``<net>_sparsevd`` seed-0 record holds weights; the others are named and skipped."""
    rows = []
    for net in nets:
        folder = Path(runs_dir) / f"{net}_sparsevd" / "seed0"
        if not (folder / WEIGHTS).exists():
            warn(f"inference bench: {folder} has no {WEIGHTS}; skipping {net} (re-run the row to get one)")
            continue
        rows += bench_record(folder, net, repeats)
    return rows
