"""Shrink a traced chain to the inputs, units and channels that still carry weights.

A unit (a linear output or a conv channel) is kept when the next layer still reads it (the last
layer's are all kept) and it computes something: it has an incoming weight, or its bias survives
the activation (a unit with no weights in outputs the constant act(b)). Dropping a unit zeroes
the weights into and out of it, which can strand others, so this repeats until nothing changes.
The input preprocessing x = scale * u - mean is folded into the first layer where it is linear.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def run_chain(ops: list[dict], x: torch.Tensor) -> torch.Tensor:
    """Evaluate a chain of plain ops (weights in ``weight``/``bias``) on ``x``; used for shapes and checks."""
    for op in ops:
        kind = op["op"]
        if kind == "input":
            x = x if op["mean"] is None else x - op["mean"]
        elif kind == "gather":
            x = x[:, op["index"]]
        elif kind == "linear":
            x = F.linear(x, op["weight"], op["bias"])
        elif kind == "conv":
            x = F.conv2d(x, op["weight"], op["bias"], op["stride"], op["padding"])
        elif kind == "relu":
            x = F.relu(x)
        elif kind == "maxpool":
            x = F.max_pool2d(x, op["kernel"], op["stride"])
        elif kind == "flatten":
            x = x.flatten(1)
    return x


def _usage(next_w: torch.Tensor, units: int) -> torch.Tensor:
    """Which of ``units`` (channels or features of the previous layer) the next layer reads."""
    if next_w.dim() == 4:
        return next_w.ne(0).any(0).flatten(1).any(1)
    return next_w.ne(0).any(0).view(units, -1).any(1)


def _cut_inputs(next_w: torch.Tensor, dead: torch.Tensor) -> None:
    if next_w.dim() == 4:
        next_w[:, dead] = 0
    else:
        next_w.view(next_w.shape[0], dead.numel(), -1)[:, dead] = 0


def _relu_after(ops: list[dict], weighted: list[int]) -> list[bool]:
    ends = weighted[1:] + [len(ops)]
    return [any(ops[j]["op"] == "relu" for j in range(i + 1, end)) for i, end in zip(weighted, ends)]


def live_units(ops: list[dict]) -> list[torch.Tensor]:
    """Zero every stranded weight in place and return, per weighted op, the mask of units kept."""
    weighted = [i for i, op in enumerate(ops) if op["op"] in ("linear", "conv")]
    ws = [ops[i]["weight"] for i in weighted]
    bs = [ops[i]["bias"] if ops[i]["bias"] is not None else torch.zeros(w.shape[0]) for i, w in zip(weighted, ws)]
    relu = _relu_after(ops, weighted)
    alive = [torch.ones(w.shape[0], dtype=torch.bool) for w in ws]
    changed = True
    while changed:
        changed = False
        for k in range(len(ws) - 1):
            used = _usage(ws[k + 1], ws[k].shape[0])
            has_in = ws[k].flatten(1).ne(0).any(1)
            const = bs[k] > 0 if relu[k] else bs[k] != 0
            alive[k] = used & (has_in | const)
            if (~alive[k] & has_in).any():
                ws[k][~alive[k]] = 0
                changed = True
            if (~alive[k] & used).any():
                _cut_inputs(ws[k + 1], ~alive[k])
                changed = True
    return alive


def fold_input(ops: list[dict], scale: float, mean: torch.Tensor | None, in_shape) -> list[dict]:
    """Prepend the input op: scale always folds into the first layer's weight; the mean folds into
    its bias when only a flatten precedes a linear first layer, else it stays as ``u - mean / scale``."""
    first = next(i for i, op in enumerate(ops) if op["op"] in ("linear", "conv"))
    op = ops[first]
    if mean is not None and op["op"] == "linear" and all(o["op"] == "flatten" for o in ops[:first]):
        shift = op["weight"].double() @ mean.double().expand(in_shape).flatten()
        bias = op["bias"].double() if op["bias"] is not None else torch.zeros_like(shift)
        op["bias"], mean = (bias - shift).float(), None
    op["weight"] = op["weight"] * scale
    stored = None if mean is None else (mean / scale).float()
    return [{"op": "input", "mean": stored}, *ops]


def shrink(ops: list[dict], in_shape) -> list[dict]:
    """The chain with every weighted op cut to its kept units and read inputs (``gather`` where a
    linear layer reads only some of its features)."""
    alive = live_units(ops)
    x = torch.zeros(1, *in_shape)
    out, prev, k = [], None, 0
    for op in ops:
        if op["op"] not in ("linear", "conv"):
            out.append(op)
            x = run_chain([op], x)
            continue
        w, b, keep = op["weight"], op["bias"], alive[k]
        if op["op"] == "conv":
            cols = prev if prev is not None else torch.ones(w.shape[1], dtype=torch.bool)
            new = {**op, "weight": w[keep][:, cols].contiguous(), "gather": None}
        else:
            units = prev.numel() if prev is not None else x.shape[1]
            feats = (prev if prev is not None else torch.ones(units, dtype=torch.bool))
            feats = feats.repeat_interleave(x.shape[1] // units)
            w = w[keep][:, feats]
            read = w.ne(0).any(0)
            new = {**op, "weight": w[:, read].contiguous(), "gather": None if read.all() else read}
        new["bias"] = None if b is None else b[keep].contiguous()
        out.append(new)
        x = run_chain([{**op, "op": op["op"]}], x)
        prev, k = keep, k + 1
    return out
