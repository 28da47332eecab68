"""Export a trained sparse network to one compact file, and load it back (:func:`load`).

The exporter traces the network into a chain of ops (linear, conv, relu, max-pool, flatten),
takes the test-time weights (theta, zeroed where log alpha >= threshold), drops every input, unit
and channel that no longer carries a weight, folds the input preprocessing into the first layer,
and writes what is left in the format that :mod:`sparsevd.compress.reader` reads: positions as a bitmap
or delta-coded varints, values fp32 (lossless), fp16 or a per-layer k-means codebook of ``bits``
bits, and the whole payload LZMA-coded where that pays. ``format="onnx"`` writes the same network,
with the same values, as an ONNX graph instead (:mod:`sparsevd.compress.onnx`).
"""
from __future__ import annotations

import json
import lzma
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .reader import LZMA_FILTERS, MAGIC, VERSION, ExportFormatError, load
from .shrink import fold_input, run_chain, shrink

__all__ = ["ExportOptions", "ExportError", "export", "export_bytes", "load", "ExportFormatError", "trace"]
VALUES = ("f4", "f2", "codebook")
INDEX = ("raw", "auto")
CODECS = ("none", "lzma", "auto")
FORMATS = ("svd", "onnx")  # the compact file, or its network as an ONNX graph


class ExportError(ValueError):
    """The model cannot be exported as asked; the message names the layer or option and the fix."""


@dataclass(frozen=True)
class ExportOptions:
    """``values``: f4 (lossless), f2, or codebook (``bits`` per weight, k-means per layer);
    ``index``: raw (fixed-width positions) or auto (the smaller of a bitmap and delta varints);
    ``codec``: none, lzma, or auto (LZMA where it makes the file smaller)."""

    values: str = "codebook"
    bits: int = 5
    index: str = "auto"
    codec: str = "auto"

    def __post_init__(self):
        if self.values not in VALUES:
            raise ExportError(f"values={self.values!r}; use one of {', '.join(VALUES)}")
        if self.values == "codebook" and not (isinstance(self.bits, int) and 1 <= self.bits <= 8):
            raise ExportError(f"bits={self.bits!r}; a codebook takes 1 to 8 bits per weight")
        if self.index not in INDEX:
            raise ExportError(f"index={self.index!r}; use one of {', '.join(INDEX)}")
        if self.codec not in CODECS:
            raise ExportError(f"codec={self.codec!r}; use one of {', '.join(CODECS)}")


LOSSLESS = ExportOptions(values="f4")
STAGES = {  # the byte table's rows, each adding one step to the one before
    "pruning only": ExportOptions(values="f4", index="raw", codec="none"),
    "+ index coding": LOSSLESS,
}


# ---- tracing ------------------------------------------------------------------------------
class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m, name):
        return isinstance(m, (nn.Linear, nn.Conv2d)) or super().is_leaf_module(m, name)


IDENTITY_METHODS = {"contiguous"}


def trace(model: nn.Module) -> list[dict]:
    """The model's forward as a chain of ops; ExportError names the first one the format lacks."""
    try:
        graph = _Tracer().trace(model.eval())
    except Exception as exc:  # fx raises many kinds; all mean "not a static chain"
        raise ExportError(f"cannot trace {type(model).__name__} with torch.fx ({str(exc)[:120]}); "
                          f"the exporter handles chains of Linear/Conv2d/ReLU/MaxPool2d/Flatten") from None
    modules = dict(model.named_modules())
    ops, last = [], None
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            last = node if node.op == "placeholder" else last
            continue
        if node.args[:1] != (last,) or len(node.users) > 1:
            raise ExportError(f"{node.name}: the exporter handles a plain chain of ops; this model branches")
        op = _op_of(node, modules)
        if op is not None:
            ops.append(op)
        last = node
    return ops


def _op_of(node, modules) -> dict | None:
    target, args, kwargs = node.target, node.args, node.kwargs
    if node.op == "call_module":
        m = modules[target]
        if isinstance(m, nn.Conv2d):
            if m.groups != 1 or m.dilation != (1, 1) or m.stride[0] != m.stride[1] or m.padding[0] != m.padding[1]:
                raise ExportError(f"{target}: only square stride/padding, no groups or dilation, can be exported")
            return {"op": "conv", "name": target, "module": m, "stride": m.stride[0], "padding": m.padding[0]}
        if isinstance(m, nn.Linear):
            return {"op": "linear", "name": target, "module": m}
        if isinstance(m, nn.ReLU):
            return {"op": "relu"}
        if isinstance(m, nn.MaxPool2d) and m.padding == 0 and m.dilation == 1:
            return {"op": "maxpool", "kernel": m.kernel_size, "stride": m.stride or m.kernel_size}
        if isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
            return {"op": "flatten"}
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return None
        raise ExportError(f"{target}: {type(m).__name__} is not supported by the exporter "
                          f"(Linear, Conv2d, ReLU, MaxPool2d, Flatten, Dropout are)")
    if target in (F.relu, torch.relu) or (node.op == "call_method" and target == "relu"):
        return {"op": "relu"}
    if target is F.max_pool2d or target is torch.max_pool2d:
        kernel = args[1] if len(args) > 1 else kwargs["kernel_size"]
        stride = (args[2] if len(args) > 2 else kwargs.get("stride")) or kernel
        return {"op": "maxpool", "kernel": kernel, "stride": stride}
    flat_args = tuple(args[1:]) + tuple(kwargs.values())
    if (target is torch.flatten or (node.op == "call_method" and target == "flatten")) and flat_args in ((1,), (1, -1)):
        return {"op": "flatten"}
    if node.op == "call_method" and target in IDENTITY_METHODS:
        return None
    raise ExportError(f"{node.name}: {getattr(target, '__name__', target)} is not supported by the exporter")


@torch.no_grad()
def test_time_weight(layer: nn.Module) -> torch.Tensor:
    """theta with pruned weights zeroed for a sparse layer (anything with ``mask()``), else the weight."""
    w = layer.weight.detach()
    if hasattr(layer, "mask"):
        w = w * layer.mask()
    return w.float().cpu().contiguous()


# ---- encoding -----------------------------------------------------------------------------
def _narrow(limit: int) -> str:
    return "u1" if limit < 1 << 8 else "u2" if limit < 1 << 16 else "u4"


def pack_bits(ints: torch.Tensor, bits: int = 1) -> bytes:
    """Unsigned ``bits``-bit integers, least significant bit first, padded to whole bytes."""
    flat = ((ints.long().unsqueeze(1) >> torch.arange(bits)) & 1).flatten()
    flat = torch.cat([flat, flat.new_zeros(-flat.numel() % 8)]).view(-1, 8)
    return (flat << torch.arange(8)).sum(1).to(torch.uint8).numpy().tobytes()


def encode_varints(ints: torch.Tensor) -> bytes:
    out = bytearray()
    for v in ints.tolist():
        while v >= 0x80:
            out.append(v & 0x7F | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


def kmeans_codebook(v: torch.Tensor, size: int, iters: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    """1-d k-means (Lloyd, quantile start): a sorted codebook and each value's code."""
    v = v.double()
    distinct = torch.unique(v)
    book = distinct if distinct.numel() <= size else torch.quantile(v, (torch.arange(size, dtype=v.dtype) + 0.5) / size)
    for _ in range(iters):
        codes = torch.bucketize(v, (book[1:] + book[:-1]) / 2)
        sums = torch.zeros_like(book).index_add_(0, codes, v)
        counts = torch.zeros_like(book).index_add_(0, codes, torch.ones_like(v))
        book = torch.where(counts > 0, sums / counts.clamp(min=1), book)
    return book.float(), torch.bucketize(v, (book[1:] + book[:-1]) / 2)


def _positions(op: dict, w: torch.Tensor, opts: ExportOptions) -> tuple[list[bytes], torch.Tensor]:
    flat = w.flatten()
    pos = torch.nonzero(flat).flatten()
    if opts.index == "raw":
        kind = _narrow(flat.numel())
        data = pos.numpy().astype({"u1": "u1", "u2": "<u2", "u4": "<u4"}[kind]).tobytes()
    else:
        gaps = torch.diff(pos, prepend=pos.new_full((1,), -1)) - 1
        bitmap, delta = pack_bits(flat.ne(0).long()), encode_varints(gaps)
        kind, data = ("bitmap", bitmap) if len(bitmap) <= len(delta) else ("delta", delta)
    op["index"], op["nnz"] = kind, pos.numel()
    return [data], flat[pos]


def _values(op: dict, v: torch.Tensor, opts: ExportOptions) -> list[bytes]:
    op["values"] = opts.values
    if opts.values == "codebook":
        book, codes = kmeans_codebook(v, 1 << opts.bits)
        op["bits"] = opts.bits
        return [book.numpy().astype("<f4").tobytes(), pack_bits(codes, opts.bits)]
    return [v.numpy().astype("<f4" if opts.values == "f4" else "<f2").tobytes()]


def encode(ops: list[dict], opts: ExportOptions) -> tuple[list[dict], list[bytes]]:
    """Header ops and byte streams for a shrunk chain, in the order compressed.build reads them."""
    lossless = opts.values == "f4"
    header, streams = [], []
    for op in ops:
        kind = op["op"]
        if kind == "input":
            h, mean = {"op": "input"}, op["mean"]
            if mean is not None:
                h["shape"] = list(mean.shape)
                if lossless or mean.min() < 0:
                    h["mean"] = "f4" if lossless else "f2"
                    streams.append(mean.numpy().astype("<f4" if lossless else "<f2").tobytes())
                else:  # 8-bit levels of the mean image: at most half a level, ~1e-3, off
                    h["mean"], h["mean_scale"] = "u1", float(mean.max()) / 255 or 1.0
                    streams.append((mean / h["mean_scale"]).round().to(torch.uint8).numpy().tobytes())
        elif kind in ("linear", "conv"):
            h = {"op": kind, "shape": list(op["weight"].shape)}
            if kind == "conv":
                h["stride"], h["padding"] = op["stride"], op["padding"]
            data, v = _positions(h, op["weight"], opts)
            streams += data + _values(h, v, opts)
            if op["bias"] is not None:
                h["bias"] = "f4" if lossless else "f2"
                streams.append(op["bias"].numpy().astype("<" + h["bias"]).tobytes())
            if op["gather"] is not None:
                h["gather"] = op["gather"].numel()
                streams.append(pack_bits(op["gather"].long()))
        else:
            h = {k: v for k, v in op.items() if k in ("op", "kernel", "stride")}
        header.append(h)
    return header, streams


def plain_chain(model: nn.Module, input_shape) -> list[dict]:
    """The traced chain with test-time weights, checked against the model on random inputs."""
    ops = []
    for op in trace(model):
        if op["op"] in ("linear", "conv"):
            m = op.pop("module")
            bias = None if m.bias is None else m.bias.detach().float().cpu().clone()
            op = {**op, "weight": test_time_weight(m).clone(), "bias": bias}
        ops.append(op)
    if not any(op["op"] in ("linear", "conv") for op in ops):
        raise ExportError(f"{type(model).__name__} has no Linear or Conv2d layer to export")
    x = torch.rand(4, *input_shape, generator=torch.Generator().manual_seed(0))
    device = next(model.parameters()).device
    with torch.no_grad():
        want = model.eval()(x.to(device)).float().cpu()
    got = run_chain(ops, x)
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-4):
        raise ExportError(f"{type(model).__name__}: the traced chain does not reproduce the model's output; "
                          f"its forward does something the exporter does not see")
    return ops


def export_bytes(model: nn.Module, *, input_shape=(1, 28, 28), scale: float = 1.0,
                 mean: torch.Tensor | None = None, options: ExportOptions = ExportOptions()) -> bytes:
    """The exported file's bytes. The model sees x = scale * u - mean for raw images u in [0, 1];
    the file's network takes u itself."""
    ops = shrink(fold_input(plain_chain(model, input_shape), scale, mean, input_shape), input_shape)
    header_ops, streams = encode(ops, options)
    header = json.dumps({"ops": header_ops, "streams": [len(s) for s in streams]}, separators=(",", ":")).encode()
    payload = struct.pack("<I", len(header)) + header + b"".join(streams)
    packed = lzma.compress(payload, lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    use_lzma = options.codec == "lzma" or (options.codec == "auto" and len(packed) < len(payload))
    return MAGIC + bytes([VERSION, 1 if use_lzma else 0]) + (packed if use_lzma else payload)


def export(model: nn.Module, path: str | Path, format: str = "svd", **kwargs) -> int:
    """Write :func:`export_bytes` to ``path`` (atomically); returns the file's size in bytes.
    ``format="onnx"``: the compact file's network as an ONNX graph (:func:`sparsevd.compress.onnx.onnx_bytes`),
    the same values within the same shrunk shapes, stored dense; needs the onnx extra."""
    from ..io import atomic_write_bytes
    if format not in FORMATS:
        raise ExportError(f"format={format!r}; use one of {', '.join(FORMATS)}")
    if format == "onnx":
        from .onnx import WRITER, onnx_bytes, require
        require(*WRITER)  # before any work
    data = export_bytes(model, **kwargs)
    if format == "onnx":
        data = onnx_bytes(data, kwargs.get("input_shape", (1, 28, 28)))
    atomic_write_bytes(Path(path), data)
    return len(data)


export.load = load  # sparsevd.export is this function; sparsevd.export.load(path) still reads a file
