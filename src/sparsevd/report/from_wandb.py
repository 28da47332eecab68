"""Records from the W&B API instead of files: ``scripts/report.py --source wandb``."""
from __future__ import annotations


def records_from_wandb(runs) -> dict[str, list[dict]]:
    """W&B API runs (``wandb.Api().runs(...)``) as the same record dicts as final.json files."""
    out: dict[str, list[dict]] = {}
    for run in runs:
        s, cfg = dict(run.summary), dict(run.config)
        cfg.setdefault("method", {"name": "dense" if "dense" in (run.group or "") else "sparsevd"})
        if "final/test/error" not in s:
            continue
        metrics = {"test_error": s["final/test/error"], "compression": s["final/test/compression"],
                   "epoch": s.get("final/epoch", cfg.get("trainer", {}).get("epochs")),
                   "sparsity": {k.split("/")[-1]: v for k, v in s.items() if k.startswith("final/test/sparsity/")}}
        out.setdefault(run.group or cfg.get("name"), []).append(
            {"seed": cfg.get("seed", 0), "metrics": metrics, "config": cfg, "record": run.url})
    return out
