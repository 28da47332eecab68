"""Generated README sentences: what ``make reproduce`` costs, from the records' wall times or, once
``make reproduce-timing`` has written it, from a measurement of both ways of running it; and what the
random-label rows did."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..io import RecordError, read_jsonl
from ..records import read_final

REPRODUCE_ROWS = ("lenet300_dense", "lenet300_sparsevd", "lenet300_ard", "lenet5_dense", "lenet5_sparsevd", "lenet5_ard")
WALL_START, WALL_END = "<!-- walltime:start -->", "<!-- walltime:end -->"
TIMING = Path("results/reproduce_timing.json")  # written by make reproduce-timing
TIMING_WAYS = ("sequential", "default")  # one run at a time on 2 threads; the Makefile's default


def cpu_wall_times(records: dict[str, list[dict]], row: str, cores: int = 2,
                   names: set | None = None) -> list[float]:
    """Wall times (s) of the row's full-length records trained wholly on a ``cores``-core CPU; the CPU
    names of those records are added to ``names`` when given."""
    out = []
    for r in records.get(row, []):
        segments = r.get("segments") or [r.get("environment") or {}]
        epochs = (r.get("config") or {}).get("trainer", {}).get("epochs")
        if (r.get("wall_time") and r["metrics"].get("epoch") == epochs
                and all(s.get("device") == "cpu" and s.get("cpu_count") == cores for s in segments)):
            out.append(float(r["wall_time"]))
            if names is not None:
                names.update(s.get("device_name", "?") for s in segments)
    return out


def wall_time_block(records: dict[str, list[dict]], timing: dict | None = None) -> str:
    """Markdown: one seed and three seeds of ``make reproduce``, and each row's median, or which rows lack
    a CPU record (then no total is claimed). With a ``timing`` (:func:`load_timing`) the block states
    that measurement instead (:func:`timing_block`)."""
    if timing is not None:
        return timing_block(timing)
    cpus: set = set()
    medians = {row: statistics.median(t) for row in REPRODUCE_ROWS if (t := cpu_wall_times(records, row, names=cpus))}
    per_row = ", ".join(f"{row} {medians[row] / 60:.0f} min" for row in REPRODUCE_ROWS if row in medians)
    missing = [row for row in REPRODUCE_ROWS if row not in medians]
    if missing:
        return f"Wall time on a 2-core CPU (median of each row's records): {per_row}; no CPU record of {', '.join(missing)}.\n"
    total = sum(medians.values())
    return (f"On a 2-core CPU ({', '.join(sorted(cpus))}) `make reproduce` takes about **{total / 3600:.1f} h** for one seed of the six rows "
            f"(`SEEDS=1`, the default) and **{3 * total / 3600:.1f} h** for three (`SEEDS=3`), from the median wall "
            f"time of each row's records trained wholly on such a CPU ({per_row}). `EPOCHS=2` trains every row "
            f"for 2 epochs, about {total / 100 / 60:.0f} min plus start-up: a check that everything runs, "
            f"not a result.\n")


def run_rates(runs_dir: Path, full_epochs: dict[str, int], seed: int = 0) -> dict[str, dict]:
    """Per row of ``full_epochs``, what its record under ``runs_dir`` measured: the median seconds per epoch
    after the first (evaluation included; the first holds start-up), its wall time and threads."""
    out = {}
    for row, full in full_epochs.items():
        run = Path(runs_dir) / row / f"seed{seed}"
        final = read_final(run / "final.json")
        times = [r["time"] for r in read_jsonl(run / "metrics.jsonl")]
        steps = [b - a for a, b in zip(times, times[1:])] or times
        out[row] = {"s_per_epoch": statistics.median(steps), "wall_s": final["wall_time"],
                    "threads": final["environment"]["threads"], "epochs": final["metrics"]["epoch"],
                    "full_epochs": full}
    return out


def load_timing(path: Path = TIMING) -> dict | None:
    """The committed ``make reproduce-timing`` measurement, or None before one exists."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        timing = json.loads(path.read_text())
        ways = [timing["ways"][way] for way in TIMING_WAYS]
        ok = int(timing["epochs"]) >= 1 and int(timing["machine"]["cores"]) >= 1 and all(
            float(w["wall_s"]) > 0 and int(w["jobs"]) >= 1 and int(w["threads"]) >= 1 and w["runs"]
            and all(float(r["s_per_epoch"]) > 0 and int(r["full_epochs"]) >= 1 for r in w["runs"].values())
            for w in ways)
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise RecordError(f"{path} is not a make reproduce-timing measurement; run make reproduce-timing "
                          f"again or remove the file")
    return timing


def makespan(durations: list[float], jobs: int) -> float:
    """Seconds until the last of ``durations`` ends when ``jobs`` run at once, each started, in order, as
    soon as one ends (how the joblib launcher hands out a sweep)."""
    ends = [0.0] * max(jobs, 1)
    for d in durations:
        ends[ends.index(min(ends))] += d
    return max(ends)


def full_length_estimate(way: dict, seeds: int, rows: list[str] | None = None) -> float:
    """Seconds for ``seeds`` seeds of every row at its recipe's epochs, at the per-epoch rates ``way``
    measured while its ``jobs`` runs shared the machine, handed out in the sweep's order (row, then seed)."""
    runs = [way["runs"][row] for row in rows or way["runs"]]
    return makespan([r["s_per_epoch"] * r["full_epochs"] for r in runs for _ in range(seeds)], way["jobs"])


def timing_block(timing: dict) -> str:
    """Markdown: the measured times of ``make reproduce EPOCHS=<n>`` one run at a time and by default, their
    ratio, and the full-length estimates for one and three seeds at the default's per-run rates."""
    seq, par, m = timing["ways"]["sequential"], timing["ways"]["default"], timing["machine"]
    epochs, cores = timing["epochs"], m["cores"]
    rows = [row for row in timing.get("rows", []) if row in par["runs"]] or sorted(par["runs"])  # sweep order
    full = sorted({r["full_epochs"] for r in par["runs"].values()})
    full_text = f"{full[0]} epochs" if len(full) == 1 else "their recipes' epochs"
    commit = f", commit {m['commit'][:7]}" if m.get("commit") else ""
    per_row = ", ".join(f"{row} {par['runs'][row]['s_per_epoch'] * par['runs'][row]['full_epochs'] / 60:.0f} min"
                        for row in rows)
    return (f"On a {cores}-core CPU ({m.get('cpu', '?')}{commit}), `make reproduce EPOCHS={epochs}` (the "
            f"{len(par['runs'])} rows, {epochs} epochs each, and the report) took **{seq['wall_s'] / 60:.1f} min** "
            f"one run at a time on {_threads(seq['threads'])} (`LAUNCHER=basic THREADS={seq['threads']}`) and "
            f"**{par['wall_s'] / 60:.1f} min** by default ({par['jobs']} runs at once, {_threads(par['threads'])} each): "
            f"**{seq['wall_s'] / par['wall_s']:.2f}×** as fast (`make reproduce-timing`, "
            f"`{TIMING.as_posix()}`). At the default's per-run rates ({par['jobs']} runs sharing the {cores} cores, "
            f"epochs after the first, evaluation included), {full_text} of every row take about "
            f"**{full_length_estimate(par, 1, rows) / 3600:.1f} h** for one seed (`SEEDS=1`, the default) and "
            f"**{full_length_estimate(par, 3, rows) / 3600:.1f} h** for three (`SEEDS=3`) on these {cores} cores "
            f"({per_row} per run). `EPOCHS={epochs}` is a check that everything runs, not a result.\n")


def _threads(n: int) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"


RANDOM_START, RANDOM_END = "<!-- random:start -->", "<!-- random:end -->"


def random_label_sentence(records: dict[str, list[dict]]) -> str:
    """One generated sentence per random-label row: its final error on its own (random) training labels,
    on the true test labels, and how many weights it kept."""
    parts = []
    for row, finals in sorted(records.items()):
        if (finals[0].get("config") or {}).get("data", {}).get("labels") != "random":
            continue
        for f in sorted(finals, key=lambda f: f["seed"]):
            m = f["metrics"]
            kept = sum(m["nonzero"].values()) if m.get("nonzero") else None
            total = sum(m["weights"].values()) if m.get("weights") else None
            weights = f"kept {kept:,} of {total:,} weights" if kept is not None and total else "weights not recorded"
            empty = [name for name, n in (m.get("nonzero") or {}).items() if n == 0]
            if empty and kept is not None and kept < total:
                weights += f" ({', '.join(empty)} with none: no path from input to output, a constant prediction)"
            train = f"{m['train_error']:.2f} %" if "train_error" in m else "not recorded"
            parts.append(f"`{row}` seed {f['seed']} ends (epoch {m['epoch']}) with training error {train} on its "
                         f"random labels and {m['test_error']:.2f} % test error, and {weights}")
    if not parts:
        return "No random-label record yet.\n"
    return "Trained on random labels (chance: 90 %): " + "; ".join(parts) + ".\n"
