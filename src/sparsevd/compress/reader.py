"""Read a compressed SparseVD file (``*.svd``) into a plain, fast ``torch.nn.Module``.

(Over 300 lines on purpose: it is one file so it can be copied out alone, next to a model file.)

This module is self-contained: it imports only the standard library and torch, runs no pickle,
and can be copied out of the package to load an exported network anywhere.

File layout: ``SVDX`` | format version (1 byte) | codec (1 byte: 0 none, 1 LZMA) | payload.
The payload is a 4-byte little-endian header length, a JSON header, then the byte streams the header
lists, in order. The header describes the network as a chain of ops on a raw image in [0, 1]:
``input`` (scale and optional mean image), ``linear`` / ``conv`` (shrunk weights), ``relu``,
``maxpool``, ``flatten``. A weighted op keeps only the inputs, units and channels that still carry
weights; its nonzero positions are a bitmap or delta-coded LEB128 varints, its values fp32, fp16
or codes into a per-layer codebook.
"""
from __future__ import annotations

import json
import lzma
import struct
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MAGIC, VERSION = b"SVDX", 1
CODECS = {0: "none", 1: "lzma"}
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 0, "lp": 0, "pb": 0}]
DTYPES = {"u1": torch.uint8, "u2": torch.int16, "u4": torch.int32, "f2": torch.float16, "f4": torch.float32}
UNSIGNED = {"u1": 0xFF, "u2": 0xFFFF, "u4": 0xFFFFFFFF}  # the unsigned reading of each index type
# A shrunk linear layer at or below this density runs as a CSR matmul on batches of CSR_MIN_BATCH or
# more; denser layers and smaller batches take a dense matmul on the shrunk weight.
CSR_DENSITY, CSR_MIN_BATCH = 0.05, 64
# The convolutions run on chunks of this many images: their activations then stay in cache, and
# reuse memory instead of asking the OS for fresh pages on every call.
CONV_CHUNK = 200


class ExportFormatError(ValueError):
    """The file is not a readable sparsevd export; the message names the file and what is wrong."""


# ---- byte streams -------------------------------------------------------------------------
def unpack_bits(data: bytes, count: int, bits: int = 1) -> torch.Tensor:
    """``count`` unsigned ``bits``-bit integers, least significant bit first, from ``data``."""
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)
    flat = ((raw.long().unsqueeze(1) >> torch.arange(8)) & 1).flatten()
    if flat.numel() < count * bits:
        raise ValueError(f"bit stream holds {flat.numel()} bits, need {count * bits}")
    chunks = flat[: count * bits].view(count, bits)
    return (chunks << torch.arange(bits)).sum(1)


def decode_varints(data: bytes, count: int) -> torch.Tensor:
    out, value, shift = [], 0, 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            out.append(value)
            value, shift = 0, 0
    if len(out) != count:
        raise ValueError(f"varint stream holds {len(out)} numbers, need {count}")
    return torch.tensor(out, dtype=torch.long)


def positions(spec: dict, stream) -> torch.Tensor:
    """Flat positions of the nonzero weights in the shrunk weight, ascending."""
    size = 1
    for s in spec["shape"]:
        size *= s
    kind, data = spec["index"], stream()
    if kind == "bitmap":
        return torch.nonzero(unpack_bits(data, size)).flatten()
    if kind == "delta":
        pos = torch.cumsum(decode_varints(data, spec["nnz"]) + 1, 0) - 1
    elif kind in DTYPES:
        pos = torch.frombuffer(bytearray(data), dtype=DTYPES[kind]).long() & UNSIGNED[kind]
    else:
        raise ValueError(f"unknown index coding {kind!r}")
    if pos.numel() != spec["nnz"] or (pos.numel() and (pos.min() < 0 or pos.max() >= size)):
        raise ValueError("weight positions out of range")
    return pos


def values(spec: dict, stream) -> torch.Tensor:
    kind, n = spec["values"], spec["nnz"]
    if kind in ("f4", "f2"):
        return torch.frombuffer(bytearray(stream()), dtype=DTYPES[kind]).float()[:n].clone()
    if kind == "codebook":
        book = torch.frombuffer(bytearray(stream()), dtype=torch.float32).clone()
        codes = unpack_bits(stream(), n, spec["bits"])
        if codes.numel() and codes.max() >= book.numel():
            raise ValueError("codebook index out of range")
        return book[codes]
    raise ValueError(f"unknown value coding {kind!r}")


# ---- the loaded network ----------------------------------------------------------------
# Each op is a module (to inspect, move and save), but the network's forward runs a flat plan of the
# plain functions step() returns, tensors bound as locals: per-layer module calls would cost more
# than the arithmetic at batch 1. From the first flatten on, batches of CSR_MIN_BATCH or more run
# with the activations transposed (step_t), so a sparse layer is one CSR @ dense product and the
# pixel gather one pass.
class _Op(nn.Module):
    def forward(self, x):  # one op alone; the network runs the plan
        return self.step()(x)


class Input(_Op):
    """x -> x - mean (the scale is folded into the first layer's weights)."""

    def __init__(self, mean: torch.Tensor | None):
        super().__init__()
        self.register_buffer("mean", mean)

    def step(self):
        mean = self.mean
        return (lambda x: x) if mean is None else (lambda x: x - mean)


class Gather(_Op):
    """Flatten, then keep only the input features that still feed a weight."""

    def __init__(self, index: torch.Tensor):
        super().__init__()
        self.register_buffer("index", index)

    def step(self):
        index = self.index
        return lambda x: x.flatten(1).index_select(1, index)

    def step_t(self):
        index = self.index
        return lambda x: x.flatten(1).t().index_select(0, index)


class Flatten(nn.Flatten):
    def step(self):
        return lambda x: x.flatten(1)

    def step_t(self):
        return lambda x: x.flatten(1).t()


class ReLU(nn.ReLU):
    def step(self):
        return torch.relu

    step_t = step


class MaxPool(nn.MaxPool2d):
    """Max pooling without padding as an elementwise maximum of strided views, rows then columns:
    the same values as F.max_pool2d, several times faster on CPU (it skips the argmax indices)."""

    def step(self):
        k, s = self.kernel_size, self.stride
        if not (isinstance(k, int) and isinstance(s, int) and self.padding == 0 and self.dilation == 1
                and not self.ceil_mode):
            return lambda x: F.max_pool2d(x, k, s, self.padding, self.dilation, self.ceil_mode)

        def pool(x):
            if x.numel() < 32768:  # a few images: one kernel call costs less than six small ones
                return F.max_pool2d(x, k, s)
            for dim in (-2, -1):
                span = s * ((x.shape[dim] - k) // s)  # the last window's start
                views = [x.narrow(dim, i, span + 1) for i in range(k)]
                x = views[0][..., ::s, :] if dim == -2 else views[0][..., ::s]
                for v in views[1:]:
                    x = torch.maximum(x, v[..., ::s, :] if dim == -2 else v[..., ::s])
            return x
        return pool


class _Weighted(_Op):
    """A shrunk layer; ``relu`` fuses the activation that follows it."""

    def __init__(self, weight, bias):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.relu = False

    def _act(self, f):
        return (lambda x: f(x).relu_()) if self.relu else f

    def step_t(self):
        """y^T = W x^T + b, for activations kept transposed (features x batch)."""
        w, b = self._matrix(), None if self.bias is None else self.bias[:, None]
        return self._act((lambda x: torch.mm(w, x)) if b is None else (lambda x: torch.addmm(b, w, x)))

    def _matrix(self):
        return self.weight

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, relu={self.relu}"


class DenseLinear(_Weighted):
    def step(self):
        w, b = self.weight, self.bias
        return self._act(lambda x: F.linear(x, w, b))


class CSRLinear(_Weighted):
    """A sparse linear layer: in the transposed plan y^T = W x^T + b with W in compressed sparse row
    form; batches below the network's ``min_batch``, where that kernel's fixed cost dominates, take
    the dense shrunk weight."""

    def __init__(self, weight, bias):
        super().__init__(weight, bias)
        with warnings.catch_warnings():  # torch calls its CSR support beta; the matmul used here is exact
            warnings.simplefilter("ignore", UserWarning)
            self.register_buffer("csr", weight.to_sparse_csr())

    def _matrix(self):
        return self.csr

    step = DenseLinear.step


class Conv(_Weighted):
    def __init__(self, weight, bias, stride, padding):
        super().__init__(weight, bias)
        self.stride, self.padding = stride, padding

    def step(self):
        w, b, stride, padding = self.weight, self.bias, self.stride, self.padding
        return self._act(lambda x: F.conv2d(x, w, b, stride, padding))

    step_t = None  # convolutions come before the flatten


class CompressedNet(nn.Sequential):
    """The exported network: raw images (N, C, H, W) in [0, 1] -> logits."""

    def __init__(self, *mods, min_batch: int = CSR_MIN_BATCH):
        super().__init__(*mods)
        self._plan, self.min_batch = None, min_batch  # batches from min_batch on take the transposed plan

    def forward(self, x):
        if self._plan is None:
            self._plan = self._make_plan()
        head, steps, steps_t = self._plan
        if len(x) > CONV_CHUNK and any(isinstance(m, Conv) for m in self):
            x = torch.cat([_run(head, c) for c in x.split(CONV_CHUNK)])
        else:
            x = _run(head, x)
        if steps_t is None or x.shape[0] < self.min_batch:
            return _run(steps, x)
        return _run(steps_t, x).t().contiguous()

    def _make_plan(self):
        """(steps up to the first flatten, steps after it, the same transposed or None)."""
        mods = list(self)
        first = next((i for i, m in enumerate(mods) if isinstance(m, (Gather, Flatten))), len(mods))
        head, rest = [m.step() for m in mods[:first]], mods[first:]
        if not rest or any(getattr(m, "step_t", None) is None for m in rest):
            return head, [m.step() for m in rest], None
        return head, [m.step() for m in rest], [m.step_t() for m in rest]

    def _apply(self, fn, *args, **kwargs):  # .to(), .double(), ...: the plan holds the old tensors
        self._plan = None
        return super()._apply(fn, *args, **kwargs)


def _run(steps, x):
    for f in steps:
        x = f(x)
    return x


def _weighted(op: dict, stream, mode: str) -> list[nn.Module]:
    shape = op["shape"]
    weight = torch.zeros(shape).flatten()
    where = positions(op, stream)  # read before the values: the streams come in this order
    weight[where] = values(op, stream)
    weight = weight.view(shape)
    bias = None
    if op.get("bias"):
        bias = torch.frombuffer(bytearray(stream()), dtype=DTYPES[op["bias"]]).float().clone()
        if bias.numel() != shape[0]:
            raise ValueError("bias length does not match the layer")
    mods = []
    if op.get("gather") is not None:
        mods.append(Gather(torch.nonzero(unpack_bits(stream(), op["gather"])).flatten()))
    if op["op"] == "conv":
        return mods + [Conv(weight, bias, op.get("stride", 1), op.get("padding", 0))]
    if mode == "csr" or mode == "auto" and op["nnz"] <= CSR_DENSITY * weight.numel():
        return mods + [CSRLinear(weight, bias)]
    return mods + [DenseLinear(weight, bias)]


def build(header: dict, streams: list[bytes], mode: str = "auto") -> CompressedNet:
    it = iter(streams)
    stream = lambda: next(it)  # noqa: E731
    mods: list[nn.Module] = []
    for op in header["ops"]:
        kind = op["op"]
        if kind == "input":
            if op.get("mean"):
                mean = torch.frombuffer(bytearray(stream()), dtype=DTYPES[op["mean"]]).float()
                mods.append(Input((mean * op.get("mean_scale", 1.0)).view(op["shape"]).clone()))
        elif kind in ("linear", "conv"):
            mods += _weighted(op, stream, mode)
        elif kind == "relu":
            mods.append(ReLU())
        elif kind == "maxpool":
            mods.append(MaxPool(op["kernel"], op["stride"]))
        elif kind == "flatten":
            mods.append(Flatten(1))
        else:
            raise ValueError(f"unknown op {kind!r}")
    return CompressedNet(*_fuse(mods), min_batch=1 if mode == "csr" else CSR_MIN_BATCH).eval()


def _fuse(mods: list[nn.Module]) -> list[nn.Module]:
    """Fewer module calls (they dominate at batch 1): a ReLU joins the layer before it, and a Gather
    (which flattens) replaces the Flatten before it."""
    out: list[nn.Module] = []
    for m in mods:
        if isinstance(m, ReLU) and out and isinstance(out[-1], _Weighted) and not out[-1].relu:
            out[-1].relu = True
        elif isinstance(m, Gather) and out and isinstance(out[-1], Flatten):
            out[-1] = m
        else:
            out.append(m)
    return out


def split_payload(payload: bytes) -> tuple[dict, list[bytes]]:
    (hlen,) = struct.unpack_from("<I", payload, 0)
    header = json.loads(payload[4:4 + hlen].decode())
    streams, at = [], 4 + hlen
    for n in header["streams"]:
        streams.append(payload[at:at + n])
        at += n
    if at != len(payload):
        raise ValueError(f"payload has {len(payload)} bytes, the header accounts for {at}")
    return header, streams


def read(path: str | Path) -> tuple[dict, list[bytes]]:
    """The header and byte streams of an exported file; ExportFormatError names the file if it is bad."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ExportFormatError(f"{path}: cannot read ({exc.strerror})") from None
    if len(blob) < 6 or blob[:4] != MAGIC:
        raise ExportFormatError(f"{path}: not a sparsevd export (no SVDX signature); export one with "
                                f"scripts/export.py")
    if blob[4] != VERSION or blob[5] not in CODECS:
        raise ExportFormatError(f"{path}: format version {blob[4]}, codec {blob[5]}; this sparsevd reads "
                                f"version {VERSION} with codecs {sorted(CODECS)}")
    try:
        payload = blob[6:] if blob[5] == 0 else lzma.decompress(blob[6:], lzma.FORMAT_RAW, filters=LZMA_FILTERS)
        return split_payload(payload)
    except (lzma.LZMAError, ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
        raise ExportFormatError(f"{path}: truncated or corrupt ({type(exc).__name__}); export it again") from None


def load(path: str | Path, mode: str = "auto") -> CompressedNet:
    """The network in ``path`` as an eval-mode module: float images (N, C, H, W) in [0, 1] -> logits.

    ``mode``: ``auto`` picks per linear layer a dense matmul on the shrunk weight or a CSR matmul
    (at density <= CSR_DENSITY, for batches >= CSR_MIN_BATCH); ``dense`` or ``csr`` forces one.
    """
    if mode not in ("auto", "dense", "csr"):
        raise ValueError(f"mode must be auto, dense or csr, got {mode!r}")
    header, streams = read(path)
    try:
        return build(header, streams, mode)
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError, StopIteration) as exc:
        raise ExportFormatError(f"{path}: truncated or corrupt ({type(exc).__name__}: "
                                f"{str(exc)[:120]}); export it again") from None
