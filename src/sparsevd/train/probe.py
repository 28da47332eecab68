"""The first steps of a run, one row every few steps: where the data term and the KL take each layer
before the first evaluation. A recipe that collapses (every weight pruned, chance-level error) usually
does so within its first epoch, and the per-epoch history cannot show how."""
from __future__ import annotations

import torch
from torch import nn

from ..config import Config, ConfigError
from ..core.models import svdo_layers, weighted_layers
from ..core.objective import kl as total_kl
from ..data import Dataset
from .trainer import cpu_numerics, epoch_plan, make_optimizer, set_lr, train_step


def layer_state(model: nn.Module) -> dict[str, dict[str, float]]:
    """Per sparse layer: median |theta|, median log sigma^2, median log alpha (clipped, as trained) and the
    share of weights at or above the layer's pruning threshold, in %."""
    names = {id(m): n for n, m in weighted_layers(model).items()}
    state = {}
    with torch.no_grad():
        for layer in svdo_layers(model):
            log_alpha = layer.log_alpha
            state[names[id(layer)]] = {
                "theta": float(layer.weight.abs().median()), "log_sigma2": float(layer.log_sigma2.median()),
                "log_alpha": float(log_alpha.median()),
                "pruned": 100.0 * (1.0 - float(layer.mask(log_alpha).mean()))}
    return state


def check_steps(steps: int, every: int, cfg: Config, num_train: int | None = None) -> None:
    """One line naming the flag to change when ``--steps``/``--every`` cannot be followed for this run
    (past its last epoch: checked once ``num_train`` is known)."""
    if steps < 1 or every < 1:
        raise ConfigError(f"--steps and --every must be >= 1, got {steps} and {every}")
    if num_train is None:
        return
    per_epoch = -(-num_train // cfg.trainer.batch_size)
    if steps > cfg.trainer.epochs * per_epoch:
        raise ConfigError(f"--steps {steps} is past the run's {cfg.trainer.epochs} epochs of {per_epoch} steps; "
                          f"pass fewer steps or more trainer.epochs")


def probe(model: nn.Module, data: Dataset, cfg: Config, steps: int, every: int,
          device: torch.device = torch.device("cpu")) -> list[dict]:
    """Train ``model`` for ``steps`` steps exactly as :func:`trainer.fit` does from the start (same
    optimizer, shuffling, beta and LR per epoch, CPU numerics) and return a row at step 0 and every
    ``every`` steps: step, epoch, beta, lr, the KL per training image and :func:`layer_state` after that
    step, and the CE of the step's batch, as its forward pass saw it before the update (None at step 0)."""
    if not svdo_layers(model):
        raise ConfigError(f"method={cfg.method.name} has no log alpha to follow; probe a sparsevd or ard run")
    check_steps(steps, every, cfg, data.num_train)
    n, tr = data.num_train, cfg.trainer
    optimizer = make_optimizer(model, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.log_sigma2_lr_scale)
    generator = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        kl0 = float(total_kl(model)) / n
    beta, lr = epoch_plan(cfg, 0)
    rows = [{"step": 0, "epoch": 1, "beta": beta, "lr": lr, "ce": None, "kl_per_image": kl0,
             "layers": layer_state(model)}]
    model.train()
    step, epoch = 0, 0
    with cpu_numerics(device):
        while step < steps:
            beta, lr = epoch_plan(cfg, epoch)
            set_lr(optimizer, lr)
            for idx in torch.randperm(n, generator=generator).to(device).split(tr.batch_size):
                ce, kl = train_step(model, optimizer, data.x_train[idx], data.y_train[idx], n, beta, cfg.loss.scale)
                step += 1
                if step % every == 0 or step == steps:
                    rows.append({"step": step, "epoch": epoch + 1, "beta": beta, "lr": lr, "ce": float(ce),
                                 "kl_per_image": float(kl) / n, "layers": layer_state(model)})
                if step == steps:
                    break
            epoch += 1
    return rows


def format_rows(rows: list[dict]) -> str:
    """A plain-text table: one line per row, the layers side by side."""
    names = list(rows[0]["layers"])
    lines = ["step epoch  beta      lr     ce   kl/N | "
             + " | ".join(f"{name}: |theta|  log s2  log a  pruned" for name in names)]
    for r in rows:
        ce = "     -" if r["ce"] is None else f"{r['ce']:6.3f}"
        cells = [f"{' ' * len(name)}  {s['theta']:7.4f} {s['log_sigma2']:7.2f} {s['log_alpha']:6.2f} "
                 f"{s['pruned']:6.1f}%" for name, s in r["layers"].items()]
        lines.append(f"{r['step']:4d} {r['epoch']:5d} {r['beta']:5.2f} {r['lr']:7.1e} {ce} {r['kl_per_image']:6.3f} | "
                     + " | ".join(cells))
    return "\n".join(lines)
