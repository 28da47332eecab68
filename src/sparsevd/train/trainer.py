"""The training loop: negative-ELBO loss, LR and KL-weight schedules, checkpoints, signals."""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from pathlib import Path
import torch
from torch import nn

from ..config import LR_SCHEDULES, Config
from ..core.metrics import evaluate, test_error
from ..core.models import svdo_layers
from ..core.objective import KLSchedule, elbo_loss
from ..data import Dataset
from ..io import RecordError, write_jsonl
from ..records import CHECKPOINT
from .checkpoint import load_checkpoint, save_checkpoint
from .device import keep_freed_memory, rng_state, set_rng_state
from .pruning import Pruner

class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, say); the message names where and what to do."""


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint was written before this was raised."""


def lr_factor(epoch: int, epochs: int, schedule: str) -> float:
    """Multiplier of the base LR at 0-based ``epoch``, the authors' two schedules plus constant."""
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return 1.0 - epoch / epochs
    if schedule == "constant_then_linear":
        half = epochs // 2
        return 1.0 if epoch < half else 1.0 - (epoch - half) / (epochs - half)
    raise ValueError(f"optim.schedule must be one of {LR_SCHEDULES}, got {schedule!r}")


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.0,
                   log_sigma2_lr_scale: float = 1.0) -> torch.optim.Optimizer:
    """Adam; the fused kernel (same update rule) is ~3x faster than the per-tensor loop on CPU.

    ``weight_decay`` is L2 added to the gradient (Caffe's ``weight_decay``), for dense baselines only.
    ``log_sigma2_lr_scale`` multiplies the LR of every log sigma^2 (its group's ``lr_scale``). Adam's
    step does not depend on the gradient's scale, so learning log sigma = log sigma^2 / 2 instead, as
    some implementations do, moves log sigma^2 exactly as a scale of 2 does (up to Adam's epsilon).
    """
    params = dict(model.named_parameters())
    noise = [n for n in params if n.endswith("log_sigma2")]
    if log_sigma2_lr_scale == 1.0 or not noise:
        groups = [{"params": list(params.values()), "lr_scale": 1.0}]
    else:
        groups = [{"params": [p for n, p in params.items() if n not in noise], "lr_scale": 1.0},
                  {"params": [params[n] for n in noise], "lr_scale": float(log_sigma2_lr_scale)}]
    optimizer = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, fused=True)
    set_lr(optimizer, lr)
    return optimizer


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group at ``lr`` times its ``lr_scale`` (log sigma^2's may differ)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def epoch_plan(cfg: Config, epoch: int) -> tuple[float, float]:
    """beta and the LR of 0-based ``epoch``, from the run's ``kl.*`` and ``optim.*`` schedules."""
    beta = KLSchedule(cfg.kl.start, cfg.kl.warmup, cfg.kl.max)(epoch)
    return beta, cfg.optim.lr * lr_factor(epoch, cfg.trainer.epochs, cfg.optim.schedule)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor,
               n: int, beta: float, loss_scale: str = "sum"):
    """One step on the negative ELBO (:func:`objective.elbo_loss`); returns (CE, KL) as detached tensors.

    sum:  N * mean CE + beta * KL  (the SGVLB, scaled as in the authors' code)
    mean: the same divided by N: mean CE + beta * KL / N
    Nothing here syncs with the device, so a CUDA step queues without waiting.
    """
    loss, ce, kl = elbo_loss(model(xb), yb, model, n, beta, terms=True)
    if loss_scale == "mean":
        loss = loss / n
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return ce, kl


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class _Loop:
    """What one training process carries between steps: optimizer, shuffling RNG, the part-done epoch,
    the history and where each segment ran; it checkpoints and restores all of it."""

    def __init__(self, model, data: Dataset, cfg: Config, run_dir: Path, device, keep: dict):
        self.model, self.data, self.cfg, self.device, self.keep = model, data, cfg, device, keep
        self.ckpt_path, self.metrics_path = Path(run_dir) / CHECKPOINT, Path(run_dir) / "metrics.jsonl"
        self.optimizer = make_optimizer(model, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.log_sigma2_lr_scale)
        self.kept = None  # each sparse layer's test-time mask at the last evaluation, for crossings
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.history, self.segments = [], []  # segments: git SHA, versions, device of each process
        self.epoch, self.step, self.part, self.wall = 0, 0, None, 0.0  # part: running state of a part-done epoch
        self.t0 = time.perf_counter()

    def restore(self) -> None:
        state = load_checkpoint(self.ckpt_path)
        if state.get("identity") != self.cfg.identity:
            raise RecordError(f"checkpoint in {self.ckpt_path.parent} is from {state.get('identity')}, not "
                              f"{self.cfg.identity}; resume with the run's own overrides or start a new run")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"], self.generator)
        self.epoch, self.step, self.wall = state["epoch"], state["step"], state["wall_time"]
        self.history, self.segments = state["history"], state.get("segments", [])
        self.kept = state.get("kept")
        part = state.get("part")
        self.part = None if part is None else {k: v.to(self.device) for k, v in part.items()}

    def save(self, epoch: int, step: int, part: dict | None) -> None:
        save_checkpoint(self.ckpt_path, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(self.generator), "epoch": epoch, "step": step, "part": part,
            "history": self.history, "wall_time": self.wall + time.perf_counter() - self.t0,
            "identity": self.cfg.identity, "segments": self.segments, "kept": self.kept, **self.keep})

    def train_epoch(self, epoch: int, beta: float, stop: "_StopFlag") -> tuple[float, float]:
        """The epoch's remaining steps; returns its mean train CE and last KL. A signal checkpoints
        mid-epoch and raises Interrupted; a non-finite loss raises TrainingError."""
        cfg, data, n, device = self.cfg, self.data, self.data.num_train, self.device
        if self.part is None:
            # first_bad: first non-finite step of (CE, KL), kept on the device so no step syncs.
            self.part = {"perm": torch.randperm(n, generator=self.generator), "ce_sum": torch.zeros((), device=device),
                         "kl": torch.zeros((), device=device),
                         "first_bad": torch.full((2,), 1 << 62, device=device, dtype=torch.long)}
        perm, ce_sum, kl, first_bad = (self.part[k] for k in ("perm", "ce_sum", "kl", "first_bad"))
        index = perm.to(device).split(cfg.trainer.batch_size)
        self.model.train()
        for step in _progress(range(self.step, len(index)), cfg.trainer.progress, f"epoch {epoch + 1}/{cfg.trainer.epochs}"):
            idx = index[step]
            ce, kl = train_step(self.model, self.optimizer, data.x_train[idx], data.y_train[idx], n, beta,
                                cfg.loss.scale)
            ce_sum = ce_sum + ce * len(idx)
            first_bad = torch.where(torch.isfinite(torch.stack((ce, kl))), first_bad, first_bad.clamp(max=step))
            if stop.signum is not None:
                if not _params_finite(self.model):
                    raise TrainingError(f"interrupted with non-finite parameters in epoch {epoch + 1}; kept the "
                                        f"last good checkpoint {self.ckpt_path}; lower optim.lr and resume from it")
                self.save(epoch, step + 1, {"perm": perm, "ce_sum": ce_sum, "kl": kl, "first_bad": first_bad})
                raise Interrupted(signal.Signals(stop.signum).name)
        train_ce, train_kl = (ce_sum / n).item(), float(kl.detach())
        _check_finite(self.model, train_ce, train_kl, first_bad.tolist(), epoch, self.ckpt_path)
        self.step, self.part = 0, None
        return train_ce, train_kl

    def _crossings(self) -> dict:
        """Weights whose test-time mask flipped since the last evaluation: ``revived`` came back below
        the threshold, ``newly_pruned`` crossed above it. Empty for a dense model or the first evaluation."""
        layers = svdo_layers(self.model)
        if not layers:
            return {}
        with torch.no_grad():
            now = [layer.mask().bool().cpu() for layer in layers]
        before, self.kept = self.kept, now
        if before is None or len(before) != len(now):
            return {}
        revived = sum(int((k & ~b).sum()) for k, b in zip(now, before))
        pruned = sum(int((b & ~k).sum()) for k, b in zip(now, before))
        return {"revived": revived, "newly_pruned": pruned}

    def record(self, epoch: int, beta: float, lr: float, train_ce: float, train_kl: float) -> dict:
        """Evaluate, append the row to the history and rewrite metrics.jsonl."""
        data, n = self.data, self.data.num_train
        row = {"epoch": epoch + 1, "train_ce": train_ce, "train_kl": train_kl, "train_kl_per_sample": train_kl / n,
               "kl_weight": beta, "lr": lr, "time": self.wall + time.perf_counter() - self.t0,
               **evaluate(self.model, data.x_test, data.y_test)}
        if data.x_val is not None:
            row["val_error"] = test_error(self.model, data.x_val, data.y_val)
        if self.cfg.data.labels == "random":  # the error on the labels it trains on: does it memorise them?
            row["train_error"] = test_error(self.model, data.x_train, data.y_train)
        row.update(self._crossings())
        self.history.append(row)
        write_jsonl(self.metrics_path, self.history)
        return row


def fit(model: nn.Module, data: Dataset, cfg: Config, run_dir: Path, *,
        device: torch.device = torch.device("cpu"), on_eval=None, resume: bool = False,
        segment: dict | None = None, keep: dict | None = None) -> list[dict]:
    """Train ``model`` as ``cfg`` (a validated :class:`config.Config`) says and return the per-evaluation
    history; checkpoints go to ``run_dir``.

    Loss (the negative SGVLB, as in the authors' code): N * mean CE + beta * sum KL.
    ``loss.scale=mean`` divides it by N, which changes Adam's effective epsilon.
    ``keep``: extra entries written into every checkpoint (the W&B run id, so a resume continues that run).
    ``method=pruning``: masks go on every weight and tighten on :class:`pruning.Pruner`'s schedule.
    """
    with cpu_numerics(device):
        return _fit(model, data, cfg, Path(run_dir), device, on_eval, resume, segment, keep)


@contextlib.contextmanager
def cpu_numerics(device: torch.device):
    """How training computes on a CPU: freed buffers kept (:func:`device.keep_freed_memory`) and
    subnormals flushed to 0. Pruned weights drift towards 0, and theta^2, alpha theta^2, their gradients
    and Adam's moments reach float32's subnormal range, where x86 arithmetic is slow: LeNet-300-100
    SparseVD's first five epochs took 15-20 % longer. Flushing changes nothing above 1.2e-38; the
    caller's setting (torch has no getter: a subnormal times 1 reads 0 when flushing) is restored after."""
    if device.type == "cpu" and sys.platform.startswith("linux"):
        keep_freed_memory()
    was_flushing = (torch.tensor([1e-39]) * 1.0).item() == 0.0
    flush = device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flush:
            torch.set_flush_denormal(was_flushing)


def _fit(model, data, cfg, run_dir, device, on_eval, resume, segment, keep) -> list[dict]:
    # method=pruning: the masks go on before the optimizer takes the parameters, and before a resume loads them
    pruner = Pruner(cfg.method, model) if cfg.method.name == "pruning" else None
    loop = _Loop(model, data, cfg, Path(run_dir), device, keep or {})
    if resume:
        loop.restore()
    loop.segments = [*loop.segments, {**(segment or {}), "from_epoch": loop.epoch, "from_step": loop.step}]
    model.to(device)
    tr = cfg.trainer
    loop.t0 = time.perf_counter()
    with _StopFlag() as stop:
        for epoch in range(loop.epoch, tr.epochs):
            beta, lr = epoch_plan(cfg, epoch)
            set_lr(loop.optimizer, lr)
            if pruner is not None and loop.step == 0:  # a part-done epoch was pruned before it was saved
                pruner.before_epoch(epoch, loop.optimizer)
            train_ce, train_kl = loop.train_epoch(epoch, beta, stop)
            last = epoch + 1 == tr.epochs
            if (epoch + 1) % tr.eval_every == 0 or last:
                row = loop.record(epoch, beta, lr, train_ce, train_kl)
                if on_eval is not None:
                    on_eval(row)
            if (epoch + 1) % tr.checkpoint_every == 0 or last:
                loop.save(epoch + 1, 0, None)
    return loop.history


def _check_finite(model, train_ce, train_kl, first_bad, epoch, ckpt_path):
    """Stop on a non-finite loss term or parameter, naming where; no NaN ever reaches a record."""
    (bad_ce, bad_kl), where = first_bad, f"epoch {epoch + 1}"
    if not math.isfinite(train_ce) or not math.isfinite(train_kl) or min(bad_ce, bad_kl) < 1 << 62:
        term = "CE and KL" if bad_ce == bad_kl else "CE" if bad_ce < bad_kl else "KL"
        step = min(bad_ce, bad_kl)
        where += f", step {step + 1}" if step < 1 << 62 else ""
    elif not _params_finite(model):
        term = "parameters"
    else:
        return
    last_good = ckpt_path if ckpt_path.exists() else "none yet"
    raise TrainingError(f"non-finite {term} in {where}; last good checkpoint: {last_good}; "
                        f"lower optim.lr or check the data, then resume from it")


def _params_finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _progress(steps, enabled: bool, desc: str):
    if not enabled:
        return steps
    from tqdm import tqdm
    return tqdm(steps, desc=desc, leave=False, disable=None, file=sys.stderr, mininterval=0.5)


def summary_line(row: dict) -> str:
    """One epoch's line. With a validation split it names both errors, validation first: choices are made on it."""
    sp = "-".join(f"{v:.1f}" for v in row["sparsity"].values())
    error = (f"val error {row['val_error']:.2f}%  test error {row['test_error']:.2f}%" if "val_error" in row
             else f"error {row['test_error']:.2f}%")
    return (f"epoch {row['epoch']:>3}  {error}  sparsity {sp}%  "
            f"compression {row['compression']:.1f}x  beta {row['kl_weight']:.3f}  lr {row['lr']:.2e}  "
            f"ce {row['train_ce']:.4f}  kl/N {row['train_kl_per_sample']:.4f}")
