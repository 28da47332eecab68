"""The exported network as an ONNX graph, for onnxruntime and the other runtimes that read ONNX.

The graph is built from the compact file, not beside it: the compact file's bytes are read back by
:mod:`.reader` (dense mode), its modules are put in a plain ``nn.Sequential`` (subtract the mean image
where it did not fold into a bias, a gather of the kept inputs, the shrunk linear and conv layers,
ReLU, max pooling) and torch's own exporter (``torch.onnx.export``) writes that with a dynamic batch
axis. It uses the TorchScript-based exporter (``dynamo=False``): for these small plain graphs it writes the
same operators and the same values as the torch.export-based one, many times faster, and torch 2.14.1
(pinned) still ships it; its deprecation warning is silenced here. The ONNX weights are therefore the compact file's values (its codebook
values by default, fp32 under ``values="f4"``), stored dense within the shrunk shapes.

Needs the ``onnx`` extra (onnx, onnxscript, onnxruntime): ``pip install 'sparsevd[onnx]'``.
"""
from __future__ import annotations

import importlib
import io
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .export import ExportError
from .reader import load

INPUT, OUTPUT = "images", "logits"  # the graph's input (N, C, H, W) raw images in [0, 1] and its output
EXTRA = "pip install 'sparsevd[onnx]' (make install does)"
WRITER = ("onnx", "onnxscript")  # what torch.onnx.export needs; onnxruntime runs the file


def require(*modules: str):
    """Import packages of the onnx extra and return the last; ExportError (one line, naming the install)
    if one is missing."""
    for module in modules:
        try:
            found = importlib.import_module(module)
        except ImportError:
            raise ExportError(f"ONNX needs the package {module!r} of the onnx extra, which is not installed; "
                              f"{EXTRA}") from None
    return found


def plain_net(svd_path: str | Path) -> nn.Sequential:
    """The compact file's network as a plain ``nn.Sequential`` of its modules: one dense matmul per
    linear layer (no CSR), no conv chunking, nothing but standard torch ops in each forward."""
    return nn.Sequential(*load(svd_path, mode="dense")).eval()


def onnx_bytes(svd: bytes, input_shape=(1, 28, 28)) -> bytes:
    """The ONNX model (serialized) of the network in the compact file ``svd`` (its bytes), for raw
    images of ``input_shape`` (C, H, W) and any batch size."""
    require(*WRITER)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.svd"
        path.write_bytes(svd)
        net = plain_net(path)
    example = torch.rand(2, *input_shape, generator=torch.Generator().manual_seed(0))  # 2: batch 1 is special-cased
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(net, (example,), buffer, dynamo=False, input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
    except Exception as exc:  # the exporter raises many kinds; the message keeps its first line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ExportError(f"torch.onnx.export failed on the compact network ({first})") from None
    return buffer.getvalue()


class OnnxNet:
    """An ONNX file in onnxruntime on the CPU, called like the torch module: raw images (N, C, H, W)
    in [0, 1] -> logits (N, classes). ``threads``: onnxruntime's intra-op threads (default: torch's
    thread count); ``runtime`` is onnxruntime's loaded model, for calls with numpy arrays."""

    def __init__(self, path: str | Path, threads: int | None = None):
        ort = require("onnxruntime")
        self.threads = threads or torch.get_num_threads()
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = self.threads, 1
        self.runtime = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        (logits,) = self.runtime.run([OUTPUT], {INPUT: u.detach().float().cpu().contiguous().numpy()})
        return torch.from_numpy(logits)


def version() -> str | None:
    """onnxruntime's version, or None without the extra."""
    try:
        return importlib.import_module("onnxruntime").__version__
    except ImportError:
        return None
