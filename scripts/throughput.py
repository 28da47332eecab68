"""How many Table 1 runs one device trains at once: K real training processes share it.

    python scripts/throughput.py --rows lenet5_sparsevd --runs 1 --epochs 3          # one run alone
    python scripts/throughput.py --runs 18 --epochs 3 --out results/throughput.json  # all rows x 3 seeds

Each process is ``scripts/train.py experiment=<row> seed=<k>`` (rows cycle, seeds count up), writing to a
scratch folder under --work. Epoch times come from the runs' own metrics.jsonl (evaluation included);
the first epoch (warm-up, compilation) is left out. The report gives the per-epoch time of every run,
the device's aggregate throughput in run-epochs per second, and what the whole set of runs at the
paper's 200 epochs would take at that rate. On a GPU (device=auto picks it) this is the measurement
behind "six rows x three seeds in a quarter of an hour"; on a CPU it shows how the cores are shared.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = "lenet300_dense,lenet300_sparsevd,lenet300_ard,lenet5_dense,lenet5_sparsevd,lenet5_ard"


def epoch_times(run_dir: Path) -> list[float]:
    times = [json.loads(line)["time"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [b - a for a, b in zip(times, times[1:])]  # drops the first epoch


def _device(run_dir: Path) -> str:
    env = json.loads((run_dir / "final.json").read_text())["environment"]
    return f"{env['device']}: {env.get('device_name', '')}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default=ROWS, help="comma-separated experiment rows, cycled over the runs")
    p.add_argument("--runs", type=int, default=18, help="processes sharing the device")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (>= 2; the first is not timed)")
    p.add_argument("--full-epochs", type=int, default=200, help="epochs of a real run, for the projection")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("extra", nargs="*", help="further overrides for every run, e.g. device=cuda data.train_size=2000")
    args = p.parse_args(argv)
    if args.epochs < 2 or args.runs < 1:
        p.error("--epochs must be >= 2 (the first epoch is not timed) and --runs >= 1")
    rows = [r for r in args.rows.split(",") if r]
    work = args.work or Path(tempfile.mkdtemp(prefix="sparsevd-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    procs, t0 = [], time.perf_counter()
    for k in range(args.runs):
        row, seed = rows[k % len(rows)], k // len(rows)
        run_dir = work / f"{row}_seed{seed}"
        cmd = [sys.executable, "scripts/train.py", f"experiment={row}", f"seed={seed}", f"trainer.epochs={args.epochs}",
               "logger=none", "trainer.progress=false", f"hydra.run.dir={run_dir}", *args.extra]
        with open(work / f"{row}_seed{seed}.log", "w") as log:
            procs.append((row, seed, run_dir, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)))
    failed = [f"{row} seed {seed}" for row, seed, _, proc in procs if proc.wait() != 0]
    wall = time.perf_counter() - t0
    if failed:
        print(f"error: {len(failed)} run(s) failed ({', '.join(failed[:3])}); see their logs in {work}", file=sys.stderr)
        return 1
    runs = [{"row": row, "seed": seed, "s_per_epoch": statistics.median(epoch_times(run_dir)),
             "device": _device(run_dir)}
            for row, seed, run_dir, _ in procs]
    per_run_epoch = [r["s_per_epoch"] for r in runs]
    rate = sum(1 / s for s in per_run_epoch)  # run-epochs per second with all runs sharing the device
    report = {"runs": runs, "processes": args.runs, "epochs": args.epochs, "wall_s": wall, "extra": args.extra,
              "run_epochs_per_s": rate, "full_epochs": args.full_epochs,
              "projected_all_runs_s": args.runs * args.full_epochs / rate}
    for r in runs:
        print(f"{r['row']:<20} seed {r['seed']}  {r['s_per_epoch']:.3f} s/epoch  ({r['device']})")
    print(f"{args.runs} runs sharing the device: {rate:.2f} run-epochs/s; {args.runs} x {args.full_epochs} epochs "
          f"would take {report['projected_all_runs_s'] / 60:.1f} min")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
