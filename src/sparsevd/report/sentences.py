"""Generated README sentences: what ``make reproduce`` costs on a 2-core CPU, from the records' wall
times, and what the random-label rows did."""
from __future__ import annotations

import statistics

REPRODUCE_ROWS = ("lenet300_dense", "lenet300_sparsevd", "lenet300_ard", "lenet5_dense", "lenet5_sparsevd", "lenet5_ard")
WALL_START, WALL_END = "<!-- walltime:start -->", "<!-- walltime:end -->"


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


def wall_time_block(records: dict[str, list[dict]]) -> str:
    """Markdown: one seed and three seeds of ``make reproduce``, and each row's median, or which rows lack
    a CPU record (then no total is claimed)."""
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
