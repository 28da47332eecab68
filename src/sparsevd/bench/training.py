"""Training-throughput benchmark: our layers vs a plain PyTorch reference and pytorch-ard.

All cases run in one process, interleaved block by block, so machine drift hits them alike.
A block is ``steps`` optimizer steps on MNIST-sized tensors (batch 100); s/epoch is the median
block time scaled to the 600 steps of an epoch. Ratios, not seconds, are what we compare.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.metrics import evaluate
from ..core.models import build_model
from ..train.trainer import make_optimizer, train_step

N_TRAIN, BATCH = 60_000, 100
STEPS_PER_EPOCH = N_TRAIN // BATCH


# ---- the reference: plain layers, plain loop, default Adam (the yardstick; do not tune it) ----
class RefLeNet300(nn.Module):
    def __init__(self, linear=nn.Linear):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = linear(784, 300), linear(300, 100), linear(100, 10)

    def forward(self, x):
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


class RefLeNet5(nn.Module):
    def __init__(self, linear=nn.Linear, conv=nn.Conv2d):
        super().__init__()
        self.conv1, self.conv2 = conv(1, 20, 5), conv(20, 50, 5)
        self.fc1, self.fc2 = linear(800, 500), linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


REF_NETS = {"lenet300": RefLeNet300, "lenet5": RefLeNet5}


def forward_macs(net: str) -> dict[str, int]:
    """Multiply-accumulates per example of each weighted layer's forward pass."""
    if net == "lenet300":
        return {"fc1": 784 * 300, "fc2": 300 * 100, "fc3": 100 * 10}
    return {"conv1": 24 * 24 * 20 * 25, "conv2": 8 * 8 * 50 * 20 * 25, "fc1": 800 * 500, "fc2": 500 * 10}


def train_flops_per_step(net: str, sparse: bool) -> float:
    """fwd + weight-grad + input-grad matmuls (no input grad for the first layer), x2 for the LRT paths."""
    macs = forward_macs(net)
    first = next(iter(macs))
    total = sum(m * (2 if name == first else 3) for name, m in macs.items())
    return 2.0 * total * BATCH * (2 if sparse else 1)


@dataclass
class Case:
    net: str
    impl: str      # ours | reference | pytorch_ard
    method: str    # dense | sparsevd | ard
    step: Callable[[], None]

    @property
    def name(self) -> str:
        return f"{self.net}/{self.impl}/{self.method}"


def _batches(x, y, device):
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=gen).to(device)
    pos = [0]

    def next_batch():
        i = pos[0] = (pos[0] + BATCH) % (len(y) - BATCH)
        idx = perm[i:i + BATCH]
        return x[idx], y[idx]
    return next_batch


def recipe_options(net: str, method: str) -> dict:
    """The layer options (``method.*``) that ``experiment=<net>_<method>`` trains with."""
    from ..config import PRUNING_OPTIONS, compose
    return {k: v for k, v in vars(compose(f"experiment={net}_{method}").method).items()
            if k != "name" and k not in PRUNING_OPTIONS}


def make_cases(nets, x, y, device, with_ard_lib: bool, recipes: dict | None = None) -> list[Case]:
    """``recipes["<net>/<method>"]``: layer options for our nets (default: build_model's)."""
    cases, recipes = [], recipes or {}
    for net in nets:
        nxt = _batches(x, y, device)
        ref = REF_NETS[net]().to(device)
        ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-3)

        def ref_step(model=ref, opt=ref_opt, nxt=nxt):
            xb, yb = nxt()
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        cases.append(Case(net, "reference", "dense", ref_step))
        for method in ("dense", "sparsevd", "ard"):
            model = build_model(net, method, **recipes.get(f"{net}/{method}", {})).to(device).train()
            opt = make_optimizer(model, 1e-3)

            def our_step(model=model, opt=opt, nxt=nxt):
                xb, yb = nxt()
                train_step(model, opt, xb, yb, N_TRAIN, 1.0, "sum")
            cases.append(Case(net, "ours", method, our_step))
        if with_ard_lib:
            cases.append(_pytorch_ard_case(net, nxt, device))
    return cases


def _pytorch_ard_case(net, nxt, device) -> Case:
    """The peer library's own layers and ELBO loss (N * CE + KL), with default Adam."""
    import torch_ard

    model = (RefLeNet300(torch_ard.LinearARD) if net == "lenet300"
             else RefLeNet5(torch_ard.LinearARD, torch_ard.Conv2dARD)).to(device).train()
    elbo = torch_ard.ELBOLoss(model, F.cross_entropy)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        xb, yb = nxt()
        loss = elbo(model(xb), yb, loss_weight=N_TRAIN, kl_weight=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return Case(net, "pytorch_ard", "sparsevd", step)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_cases(cases: list[Case], steps: dict[str, int], repeats: int, device) -> dict[str, list[float]]:
    """Warm up each case with one block, then `repeats` rounds over all cases (interleaved)."""
    times = {c.name: [] for c in cases}
    for rnd in range(repeats + 1):
        for c in cases:
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps[c.net]):
                c.step()
            _sync(device)
            if rnd > 0:
                times[c.name].append((time.perf_counter() - t0) / steps[c.net] * STEPS_PER_EPOCH)
    return times


def profile_table(case: Case, steps: int, rows: int = 20) -> str:
    """torch.profiler's table (self CPU time) of ``steps`` steps of one case, after a few warm-up steps."""
    from torch.profiler import profile
    for _ in range(5):
        case.step()
    with profile() as prof:
        for _ in range(steps):
            case.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def matmul_peak_gflops(device, n: int = 1024, reps: int = 20) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def eval_seconds(x_test, y_test, device, repeats: int = 5) -> float:
    """Median time of our full evaluation (error + sparsity + compression) of LeNet-300-100 SparseVD."""
    model = build_model("lenet300", "sparsevd").to(device)
    evaluate(model, x_test, y_test)
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        evaluate(model, x_test, y_test)
        _sync(device)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def cli_epoch_seconds(experiment: str, epochs: int, extra: list[str], run_dir) -> float:
    """Median wall time of a real ``scripts/train.py`` epoch (data, training step, evaluation, checkpoint),
    epoch 1 (start-up and compiling) left out."""
    import json
    cmd = [sys.executable, "scripts/train.py", f"experiment={experiment}", f"trainer.epochs={epochs}", "logger=none",
           "trainer.progress=false", f"hydra.run.dir={run_dir}", *extra]
    from pathlib import Path
    subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[3])
    wall = [json.loads(line)["time"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(b - a for a, b in zip(wall, wall[1:]))


def peak_memory_mib(net: str, method: str, device: str, steps: int = 20) -> float:
    """Peak resident memory (CPU) or peak allocated (CUDA) of a fresh process training `steps` steps."""
    code = f"""
import resource, torch
from sparsevd.bench.training import N_TRAIN
from sparsevd.core.models import build_model
from sparsevd.train.trainer import make_optimizer, train_step
from sparsevd.core.metrics import evaluate
d = torch.device({device!r})
x, y = torch.randn(N_TRAIN, 1, 28, 28, device=d), torch.randint(0, 10, (N_TRAIN,), device=d)
m = build_model({net!r}, {method!r}).to(d); opt = make_optimizer(m, 1e-3)
for i in range({steps}):
    train_step(m, opt, x[i*100:(i+1)*100], y[i*100:(i+1)*100], N_TRAIN, 1.0, "sum")
evaluate(m, x[:10000], y[:10000])
if d.type == "cuda":
    print(torch.cuda.max_memory_allocated() / 2**20)
else:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def summarize(times: dict[str, list[float]], nets, device) -> list[dict]:
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for name, secs in med.items():
        net, impl, method = name.split("/")
        ard_lib = med.get(f"{net}/pytorch_ard/sparsevd")
        flops = train_flops_per_step(net, method != "dense") * STEPS_PER_EPOCH
        rows.append({
            "case": name, "net": net, "impl": impl, "method": method,
            "s_per_epoch": secs, "spread": [min(times[name]), max(times[name])],
            "samples_per_s": N_TRAIN / secs,
            "x_our_dense": secs / med[f"{net}/ours/dense"],
            "x_reference": secs / med[f"{net}/reference/dense"],
            "speedup_vs_pytorch_ard": None if ard_lib is None else ard_lib / secs,
            "gflops": flops / secs / 1e9,
        })
    return rows
