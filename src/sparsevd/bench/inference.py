"""Inference benchmark: the masked dense network against its exported file, and that file's network as
ONNX in onnxruntime, on CPU.

The baseline is the plain dense net (``bench.training.REF_NETS``) holding the record's test-time weights
(pruned ones zeroed), on preprocessed images; the exported network takes raw images and does its
own preprocessing. Both run under ``torch.inference_mode``; the ONNX file (made from the same compact
file) runs in onnxruntime on numpy arrays, with as many intra-op threads as torch has. The three are
interleaved block by block. Without the onnx extra the onnxruntime case is named and skipped.
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
from ..compress.export import ExportError, export, test_time_weight
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


def _onnxruntime(svd: Path, warn):
    """(the ONNX file's bytes, a call on numpy images) for the network in ``svd``, or None without the extra."""
    from ..compress.onnx import INPUT, OnnxNet, onnx_bytes
    try:
        data = onnx_bytes(svd.read_bytes())
        (svd.parent / "net.onnx").write_bytes(data)
        runtime = OnnxNet(svd.parent / "net.onnx", threads=torch.get_num_threads()).runtime
    except ExportError as exc:
        warn(f"inference bench: skipping onnxruntime ({exc})")
        return None
    return len(data), lambda x: runtime.run(None, {INPUT: x})


def bench_record(folder: Path, net: str, repeats: int = 7, warn=print) -> list[dict]:
    """Median seconds per batch of the masked dense net, the exported one and (with the onnx extra) its
    ONNX file in onnxruntime, at batch 1 and 1000."""
    model, cfg = load_record(folder)
    scale, mean, u, _ = raw_input(cfg["data"])
    ref = masked_reference(model, net)
    with tempfile.TemporaryDirectory() as tmp:
        size = export(model, Path(tmp) / "net.svd", scale=scale, mean=mean, options=DEFAULT)
        fast = load(Path(tmp) / "net.svd")
        ort = _onnxruntime(Path(tmp) / "net.svd", warn)
    threads = torch.get_num_threads()
    rows = []
    with torch.inference_mode():
        for batch, calls in CALLS.items():
            raw = u[:batch].contiguous()
            pre = (scale * raw - mean).contiguous()
            cases = [("masked_dense", ref, pre), ("exported", fast, raw)]
            cases += [("onnxruntime", ort[1], raw.numpy())] if ort else []
            times = {name: [] for name, _, _ in cases}
            for rnd in range(repeats + 1):
                for name, fn, x in cases:
                    t = _block(fn, x, calls)
                    if rnd:
                        times[name].append(t)
            med = {k: statistics.median(v) for k, v in times.items()}
            row = {"net": net, "record": str(folder), "weights_sha256": weights_sha256(folder),
                   "batch": batch, "file_bytes": size, "threads": threads,
                   "masked_dense_ms": 1e3 * med["masked_dense"], "exported_ms": 1e3 * med["exported"],
                   "speedup": med["masked_dense"] / med["exported"]}
            if ort:
                row |= {"onnx_bytes": ort[0], "onnxruntime_threads": threads, "onnxruntime_ms": 1e3 * med["onnxruntime"],
                        "onnxruntime_speedup": med["masked_dense"] / med["onnxruntime"]}
            rows.append(row)
    return rows


def bench_inference(runs_dir: Path, nets=("lenet300", "lenet5"), repeats: int = 7, warn=print) -> list[dict]:
    """Every net whose ``<net>_sparsevd`` seed-0 record holds weights; the others are named and skipped."""
    rows = []
    for net in nets:
        folder = Path(runs_dir) / f"{net}_sparsevd" / "seed0"
        if not (folder / WEIGHTS).exists():
            warn(f"inference bench: {folder} has no {WEIGHTS}; skipping {net} (re-run the row to get one)")
            continue
        rows += bench_record(folder, net, repeats, warn)
    return rows


# ---- the tables: docs/performance.md's inference part and the README's block beside the export ----
INFERENCE_START, INFERENCE_END = "<!-- inference:start -->", "<!-- inference:end -->"


def inference_table(rows: list[dict]) -> list[str]:
    """Markdown lines: per net and batch, milliseconds of each case and the speed-up over the masked dense net."""
    if not rows:
        return []
    lines = ["| net | batch | masked dense net, torch (ms) | .svd file, torch (ms) | .onnx file, onnxruntime (ms) "
             "| .svd bytes | .onnx bytes |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ort, onnx_bytes = "not run", "—"
        if "onnxruntime_ms" in r:
            ort, onnx_bytes = f"{r['onnxruntime_ms']:.3f} ({r['onnxruntime_speedup']:.1f}×)", f"{r['onnx_bytes']:,}"
        lines.append(f"| {r['net']} | {r['batch']} | {r['masked_dense_ms']:.3f} | {r['exported_ms']:.3f} "
                     f"({r['speedup']:.1f}×) | {ort} | {r['file_bytes']:,} | {onnx_bytes} |")
    return lines + [""]


def inference_block(report: dict) -> str:
    """The README's block: the inference table of a ``make bench`` report, with its machine and threads."""
    rows = list(report.get("inference", {}).values())
    if not rows:
        return "The last `make bench` timed no inference (it does so on the CPU only).\n"
    m, blocks = report["machine"], report["settings"].get("inference_repeats")
    ort = rows[0].get("onnxruntime_threads")
    head = (f"`{report['command']}` on {m['device_name']} at commit {(m['git']['sha'] or '?')[:7]}: torch "
            f"{m['torch']} with {rows[0].get('threads', m['threads'])} threads; "
            + (f"onnxruntime {m.get('onnxruntime')} with {ort} intra-op threads. " if ort else "onnxruntime not run. ")
            + f"Milliseconds per batch of raw test images, median of {f'{blocks} ' if blocks else ''}interleaved "
            f"blocks, speed-up over the masked dense net in brackets; each net's `<net>_sparsevd` seed 0 record, "
            f"default export:")
    return "\n".join([head, "", *inference_table(rows)])
