"""Weights & Biases logging behind a two-method interface, so ``logger=none`` needs no wandb at all."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def flatten_row(row: dict) -> dict:
    """One evaluation row as W&B keys: train/*, test/error, test/compression, test/sparsity/<layer>."""
    out = {
        "epoch": row["epoch"],
        "train/ce": row["train_ce"],
        "train/kl": row["train_kl"],
        "train/kl_per_sample": row["train_kl_per_sample"],
        "train/kl_weight": row["kl_weight"],
        "train/lr": row["lr"],
        "test/error": row["test_error"],
        "test/compression": row["compression"],
        "test/compression_with_biases": row["compression_with_biases"],
    }
    out.update({f"test/sparsity/{name}": v for name, v in row["sparsity"].items()})
    # present only for some runs: a validation split, random labels, sparse layers after the first evaluation
    optional = {"val_error": "val/error", "train_error": "train/error", "revived": "train/revived",
                "newly_pruned": "train/newly_pruned"}
    out.update({key: row[name] for name, key in optional.items() if name in row})
    return out


class NullTracker:
    run_id: str | None = None

    def log(self, row: dict) -> None:
        pass

    def finish(self, final: dict | None = None, exit_code: int = 0) -> None:
        pass


class WandbTracker(NullTracker):
    """Streams each evaluation to W&B; ``mode`` defaults to offline and ``$WANDB_MODE`` wins."""

    def __init__(self, config: dict, *, project: str, entity: str | None, group: str, tags: list,
                 name: str, mode: str, dir: str | os.PathLike, run_id: str | None = None):
        import wandb

        Path(dir).mkdir(parents=True, exist_ok=True)
        # A resumed training passes the id its checkpoint kept, so all its segments are one W&B run.
        self.run_id = run_id or secrets.token_hex(4)
        self.run = wandb.init(project=project, entity=entity, group=group, tags=list(tags), name=name,
                              config=config, dir=str(dir), mode=os.environ.get("WANDB_MODE") or mode,
                              id=self.run_id, resume="allow", reinit="finish_previous")

    def log(self, row: dict) -> None:
        self.run.log(flatten_row(row), step=row["epoch"])

    def finish(self, final: dict | None = None, exit_code: int = 0) -> None:
        if final is not None:
            self.run.summary.update({f"final/{k}": v for k, v in flatten_row(final).items()})
        self.run.finish(exit_code=exit_code)


def make_tracker(c, config: dict, run_name: str, run_dir: Path, run_id: str | None = None) -> NullTracker:
    """The run's tracker from its typed config ``c`` (``c.logger``); W&B gets the resolved ``config``."""
    log = c.logger
    if log.name == "none":
        return NullTracker()
    if log.name != "wandb":
        raise ValueError(f"unknown logger {log.name!r}; use logger=wandb or logger=none")
    return WandbTracker(config, project=log.project, entity=log.entity, group=log.group, tags=list(log.tags or []),
                        name=run_name, mode=log.mode or "offline", dir=log.dir or run_dir, run_id=run_id)
