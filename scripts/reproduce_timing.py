"""Time `make reproduce EPOCHS=3` both ways on this machine and write results/reproduce_timing.json.

    make reproduce-timing                                   # what the README's wall-time block states
    python scripts/reproduce_timing.py --epochs 3 --out results/reproduce_timing.json

The two ways: one run at a time on 2 threads (LAUNCHER=basic THREADS=2), then the Makefile's default
(cores // THREADS runs at once, 1 thread each). Each trains the six Table 1 rows (seed 0) from scratch
into a folder of its own under --work and ends with make reproduce's report; its time is the whole
command's. Before them, one untimed epoch of every row each way fills the data and torch.compile caches,
so neither way pays for them alone. Per-run rates come from the runs' own metrics.jsonl (epochs after
the first, evaluation included). Run it with nothing else on the machine; then `make report` writes the
two times, their ratio and the full-length estimates that follow into the README's wall-time block.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from sparsevd.config import compose
from sparsevd.io import atomic_write_json
from sparsevd.records import cpu_name, git_info
from sparsevd.report.sentences import REPRODUCE_ROWS, TIMING, run_rates, timing_block

# The two ways, as make reproduce's knobs; the default's JOBS is cores // THREADS (the Makefile's rule).
WAYS = {"sequential": ("LAUNCHER=basic", "THREADS=2"), "default": ()}


def cores() -> int:
    """The cores this process may use, as nproc counts them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def make_reproduce(knobs, epochs: int, rows: list[str], repro: Path) -> float:
    """Run make reproduce with ``knobs`` (and only them: no knob of an outer make leaks in); its seconds."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    cmd = ["make", "reproduce", f"PY={sys.executable}", f"EPOCHS={epochs}", f"ROWS={','.join(rows)}",
           f"REPRO={repro}", *knobs]
    print("+", " ".join(cmd), flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed (exit {done.returncode}); see its output above")
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="epochs of every row (>= 2; the first is start-up)")
    p.add_argument("--rows", default=",".join(REPRODUCE_ROWS), help="comma-separated experiment rows")
    p.add_argument("--warmup-epochs", type=int, default=1, help="untimed epochs each way first (0: none)")
    p.add_argument("--work", type=Path, default=Path("outputs/reproduce-timing"), help="a new scratch folder")
    p.add_argument("--out", type=Path, default=TIMING, help="where the measurement goes")
    args = p.parse_args(argv)
    if args.epochs < 2 or args.warmup_epochs < 0:
        p.error("--epochs must be >= 2 (the first epoch is not a rate) and --warmup-epochs >= 0")
    if args.work.exists():
        p.error(f"{args.work} exists; remove it (its runs would be resumed, not timed) or pass --work <new folder>")
    rows = [r for r in args.rows.split(",") if r]
    full_epochs = {row: compose(f"experiment={row}").trainer.epochs for row in rows}  # a bad row stops here
    if args.warmup_epochs:
        for way, knobs in WAYS.items():
            make_reproduce(knobs, args.warmup_epochs, rows, args.work / f"warmup-{way}")
    ways = {}
    for way, knobs in WAYS.items():
        load = os.getloadavg()[0]
        wall = make_reproduce(knobs, args.epochs, rows, args.work / way)
        runs = run_rates(args.work / way / "runs", full_epochs)
        threads = max(r["threads"] for r in runs.values())
        ways[way] = {"command": " ".join(["make reproduce", f"EPOCHS={args.epochs}", *knobs]), "wall_s": wall,
                     "jobs": 1 if "LAUNCHER=basic" in knobs else max(1, cores() // threads), "threads": threads,
                     "load_before": load, "runs": runs}
    git = git_info()
    timing = {"epochs": args.epochs, "rows": rows, "ways": ways,
              "machine": {"cpu": cpu_name(), "cores": cores(), "cpu_count": os.cpu_count(),
                          "torch": str(torch.__version__), "commit": git["sha"], "dirty": git["dirty"]}}
    atomic_write_json(args.out, timing)
    print(f"wrote {args.out}; `make report` puts this in the README:\n\n{timing_block(timing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
