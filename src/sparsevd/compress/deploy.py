"""What a user gets out of a trained record: its exported file in bytes, stage by stage, and the
threshold trade-off, both measured on the test set without retraining."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import torch

from .reader import load
from ..data import data_root, load_dataset, raw_input
from .export import LOSSLESS, STAGES, ExportOptions, export
from ..core.metrics import evaluate, test_error
from ..core.models import svdo_layers, weighted_layers
from .weights import load_record

DEFAULT = ExportOptions()
QUANTIZED = "+ value quantization"


def dense_bytes(model: torch.nn.Module) -> int:
    """fp32 bytes of the dense net's parameters: 4 x (weights + biases)."""
    return 4 * sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
                   for m in weighted_layers(model).values())


@torch.no_grad()
def file_error(path: Path, u: torch.Tensor, y: torch.Tensor, batch: int = 5000, format: str = "svd") -> float:
    """Top-1 test error in percent of an exported file on raw images ``u`` in [0, 1]; an ONNX file
    (``format="onnx"``) runs in onnxruntime."""
    if format == "onnx":
        from .onnx import OnnxNet
        net = OnnxNet(path)
    else:
        net = load(path)
    wrong = sum(int((net(ub).argmax(1) != yb).sum()) for ub, yb in zip(u.split(batch), y.split(batch)))
    return 100.0 * wrong / len(y)


def _data_key(d: dict) -> tuple:
    return (d["name"], str(data_root(d["root"])), d["preprocess"], d.get("train_size"), d.get("val_size", 0),
            d.get("labels", "original"))


@functools.lru_cache(maxsize=2)
def _raw_input(key: tuple):
    name, root, preprocess, train_size, val_size, _ = key
    return raw_input({"name": name, "root": root, "preprocess": preprocess, "train_size": train_size,
                      "val_size": val_size})


@functools.lru_cache(maxsize=2)
def _dataset(key: tuple):
    name, root, preprocess, train_size, val_size, labels = key
    return load_dataset(name, root, preprocess, train_size, "cpu", val_size, labels)


def export_record(folder: Path, out: Path, options: ExportOptions = DEFAULT, format: str = "svd") -> dict:
    """Export a record or finished run to ``out`` (a compact file, or with ``format="onnx"`` an ONNX
    graph with the same values); returns its size, the dense bytes and the written file's test error
    (measured on the record's own test set). The seeds of a row share their data, so the last two data
    configurations read stay loaded (read-only) for the next record."""
    model, cfg = load_record(folder)
    scale, mean, u, y = _raw_input(_data_key(cfg["data"]))
    size = export(model, out, format=format, scale=scale, mean=mean, options=options)
    dense = dense_bytes(model)
    return {"bytes": size, "dense_bytes": dense, "ratio": dense / size,
            "test_error": file_error(out, u, y, format=format)}


def stage_table(folder: Path, options: ExportOptions = DEFAULT) -> list[dict]:
    """One row per export stage (pruning only, + index coding, + value quantization), each with the
    ONNX file that holds its values (``onnx_bytes``, ``onnx_test_error``); index coding and LZMA do
    not touch an ONNX file, so stages with the same values share one."""
    stages = {**STAGES, QUANTIZED: options}
    rows, graphs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage, opts in stages.items():
            row = export_record(folder, Path(tmp) / "net.svd", opts)
            values = (opts.values, opts.bits if opts.values == "codebook" else None)
            if values not in graphs:
                graph = export_record(folder, Path(tmp) / "net.onnx", opts, format="onnx")
                graphs[values] = {"onnx_bytes": graph["bytes"], "onnx_test_error": graph["test_error"]}
            rows.append({"stage": stage, **row, **graphs[values]})
    return rows


def thresholds(clip: float, start: float = -1.0, step: float = 0.5) -> list[float]:
    return [float(t) for t in np.arange(start, clip + step / 2, step)]


@torch.no_grad()
def threshold_sweep(folder: Path, at: list[float] | None = None) -> tuple[list[dict], dict]:
    """Test error, compression and sparsity at thresholds from -1 up to the clip, in steps of 0.5
    (or at the thresholds ``at``), from one trained record; returns the rows and the record's config.
    A record trained with a validation split (``data.val_size``) gets its ``val_error`` too.

    A magnitude-pruned record (method=pruning) has no log alpha: its sweep is the one point it was
    trained to, with an empty threshold. Its curve on the Pareto figures joins the records of one
    schedule at several target compressions, each retrained to its masks, rather than pruning one
    record further without retraining."""
    model, cfg = load_record(folder)
    layers = svdo_layers(model)
    pruned = cfg["method"]["name"] == "pruning"
    if not layers and not pruned:
        raise ValueError(f"{folder}: a dense record has no log alpha to threshold")
    data = _dataset(_data_key(cfg["data"]))
    if pruned or at is None:
        at = [None] if pruned else thresholds(layers[0].log_alpha_clip)
    rows = []
    for t in at:
        for layer in layers:
            layer.threshold = t
        m = evaluate(model, data.x_test, data.y_test)
        val = {} if data.x_val is None else {"val_error": test_error(model, data.x_val, data.y_val)}
        rows.append({"threshold": t, "test_error": m["test_error"], **val, "compression": m["compression"],
                     **{f"sparsity_{k}": v for k, v in m["sparsity"].items()}})
    return rows, cfg


__all__ = ["dense_bytes", "file_error", "export_record", "stage_table", "threshold_sweep", "LOSSLESS", "DEFAULT"]


# ---- the compression report: bytes table and threshold sweep of every record with weights ----
BYTES_START, BYTES_END = "<!-- bytes:start -->", "<!-- bytes:end -->"
ROWS = ("lenet300_sparsevd", "lenet300_ard", "lenet300_pruning", "lenet300_gmp",
        "lenet5_sparsevd", "lenet5_ard", "lenet5_pruning", "lenet5_gmp",
        "fashion_lenet300_sparsevd", "fashion_lenet300_ard", "fashion_lenet5_sparsevd", "fashion_lenet5_ard")


def records_with_weights(runs_dir: Path, rows=ROWS, first_seed_only: bool = False) -> list[Path]:
    """Record folders (results/runs/<row>/seed<k>) of the sparse Table 1 rows that hold weights,
    by row and seed; ``first_seed_only``: each row's lowest such seed."""
    from .weights import WEIGHTS
    found = [p.parent for row in rows for p in Path(runs_dir).glob(f"{row}/seed*/{WEIGHTS}")]
    found = sorted(found, key=lambda p: (rows.index(p.parent.name), int(p.name[4:])))
    return [p for i, p in enumerate(found) if i == 0 or p.parent != found[i - 1].parent] if first_seed_only else found


def sparse_records_with_weights(runs_dir: Path) -> list[Path]:
    """Every record folder under ``runs_dir`` (rows and variants) of a sparse method that holds weights."""
    import yaml

    from .weights import WEIGHTS
    found = sorted(p.parent for p in Path(runs_dir).glob(f"*/seed*/{WEIGHTS}"))
    sparse = [p for p in found if yaml.safe_load((p / "config.yaml").read_text())["method"]["name"] != "dense"]
    return sorted(sparse, key=lambda p: (p.parent.name, int(p.name[4:])))


def readme_rows(rows: list[dict]) -> list[dict]:
    """The rows of the README's block: each MNIST row's first seed, and of the bytes table only the default
    export (results/compression.md keeps every record and stage)."""
    first: dict[str, int] = {}
    for r in rows:
        first[r["row"]] = min(first.get(r["row"], r["seed"]), r["seed"])
    return [r for r in rows if r["seed"] == first[r["row"]] and not r["row"].startswith("fashion_")
            and r.get("stage", QUANTIZED) == QUANTIZED]


def render_bytes(table: list[dict]) -> str:
    """Markdown of the stage-by-stage bytes table, each stage beside the ONNX file with its values."""
    lines = ["| Row | Seed | Stage | File bytes | Dense fp32 bytes | Ratio | Test error of the file | ONNX bytes | "
             "Test error of the ONNX file |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        lines.append(f"| {r['row']} | {r['seed']} | {r['stage']} | {r['bytes']:,} | {r['dense_bytes']:,} | "
                     f"{r['ratio']:.0f}× | {r['test_error']:.2f} % | {r['onnx_bytes']:,} | "
                     f"{r['onnx_test_error']:.2f} % |")
    return "\n".join(lines) + "\n"


# The file-size targets: the default export of the row's seed 0, (at least this ratio, at most this error %).
BYTES_TARGETS = {"lenet300_sparsevd": (200, 1.92), "lenet5_sparsevd": (400, 0.80)}


def bytes_verdicts(table: list[dict]) -> str:
    """One generated line: each file-size target, met or not, with its measured numbers."""
    out = []
    for row, (ratio, error) in BYTES_TARGETS.items():
        got = [r for r in table if r["row"] == row and r["seed"] == 0 and r["stage"] == QUANTIZED]
        head = f"{row} seed 0 ≥ {ratio}× at ≤ {error:.2f} %"
        if not got:
            out.append(f"{head}: not measured (no record with weights)")
            continue
        r = got[0]
        met = r["ratio"] >= ratio and r["test_error"] <= error
        out.append(f"{head}: {'met' if met else 'not met'} ({r['ratio']:.0f}× at {r['test_error']:.2f} %)")
    return "Targets for the default export: " + "; ".join(out) + "."


def threshold_note(sweep: list[dict]) -> str:
    """One generated line per record: where threshold 3 sits on its swept curve."""
    lines = []
    for key in dict.fromkeys((r["row"], r["seed"]) for r in sweep):
        rows = [r for r in sweep if (r["row"], r["seed"]) == key]
        at3 = next((r for r in rows if r["threshold"] == 3.0), None)
        best = min(rows, key=lambda r: (r["test_error"], -r["compression"]))
        if at3 is None:
            continue
        lines.append(f"{key[0]} seed {key[1]}: threshold 3 gives {at3['test_error']:.2f} % at {at3['compression']:.0f}×; "
                     f"the sweep's lowest error is {best['test_error']:.2f} % at threshold {best['threshold']:g} "
                     f"({best['compression']:.0f}×), and threshold {rows[0]['threshold']:g} gives "
                     f"{rows[0]['test_error']:.2f} % at {rows[0]['compression']:.0f}×.")
    return "\n".join(f"- {line}" for line in lines)


def render_csv(rows: list[dict]) -> str:
    """CSV of the sweep; nets with different layers share one header, a layer a net lacks stays empty."""
    import csv
    import io
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(buf, fieldnames=fields, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows)
    return buf.getvalue()
