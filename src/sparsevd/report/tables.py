"""The paper-vs-ours table, built only from committed run records (or from the W&B API).

Every cell traces to ``results/runs/<experiment>/seed<k>/final.json``; the paper's numbers come
from ``results/paper.yaml``. A corrupt or half-written record is skipped and named, never fatal.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..io import RecordError, atomic_write_text
from ..records import read_final

DASH = "—"
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
REQUIRED_METRICS = {"test_error": (int, float), "compression": (int, float), "epoch": int, "sparsity": dict}


@dataclass
class Row:
    key: str
    network: str
    method: str
    paper: dict
    runs: list[dict] = field(default_factory=list)
    recipe_epochs: int = 200  # the row's own length (paper.yaml's `epochs`); fewer is a smoke run

    @property
    def n(self) -> int:
        return len(self.runs)

    def values(self, metric: str) -> list[float]:
        return [r["metrics"][metric] for r in self.runs]

    def mean(self, metric: str) -> float | None:
        return statistics.fmean(self.values(metric)) if self.runs else None

    def std(self, metric: str) -> float | None:
        return statistics.stdev(self.values(metric)) if self.n > 1 else None

    def sparsity(self) -> list[float]:
        layers = list(self.runs[0]["metrics"]["sparsity"])
        return [statistics.fmean(r["metrics"]["sparsity"][k] for r in self.runs) for k in layers]

    def epochs(self) -> list[int]:
        return sorted({r["metrics"]["epoch"] for r in self.runs})


def epochs_text(runs: list[dict]) -> str:
    """The records' own epochs and, for a run that started from a trained one (``model.init_from``), that
    run's epochs too: ``40 (+200 dense)`` costs 240 epochs in all."""
    text = ",".join(map(str, sorted({r["metrics"]["epoch"] for r in runs})))
    sources = [s for r in runs if isinstance(s := r.get("init_from"), dict) and s.get("epoch")]
    before = ",".join(map(str, sorted({s["epoch"] for s in sources})))
    kinds = "/".join(sorted({(s.get("identity") or {}).get("method", "trained") for s in sources}))
    return f"{text} (+{before} {kinds})" if sources else text


def load_records(runs_dir: Path, warn=print) -> dict[str, list[dict]]:
    """All readable final.json under runs_dir, by experiment name; bad ones are named and skipped."""
    out: dict[str, list[dict]] = {}
    for path in sorted(Path(runs_dir).glob("*/seed*/final.json")):
        try:
            final = read_final(path)
            m = final["metrics"]
            for key, kind in REQUIRED_METRICS.items():
                if not isinstance(m.get(key), kind):
                    raise RecordError(f"metrics.{key} missing or not a {kind}")
            if not isinstance(final.get("seed"), int):
                raise RecordError("seed missing")
        except RecordError as exc:
            warn(f"skipping {path}: {exc}")
            continue
        final["record"] = str(path.parent)
        out.setdefault(path.parent.parent.name, []).append(final)
    return out


def load_paper(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def build_rows(records: dict[str, list[dict]], paper: dict, warn=print) -> list[Row]:
    rows = []
    for key, spec in paper["rows"].items():
        target = paper["rows"][spec["target_of"]] if "target_of" in spec else spec
        numbers = {k: target[k] for k in ("error", "sparsity", "compression") if k in target}
        runs = sorted(records.get(key, []), key=lambda r: r["seed"])
        longest = max((r["metrics"]["epoch"] for r in runs), default=0)
        short = [r for r in runs if r["metrics"]["epoch"] < longest]
        if short:  # never average a smoke run into a full one
            warn(f"{key}: leaving out {len(short)} record(s) shorter than {longest} epochs: "
                 + ", ".join(r["record"] for r in short))
        runs = [r for r in runs if r["metrics"]["epoch"] == longest]
        rows.append(Row(key, spec["network"], spec["method"], numbers, runs, spec.get("epochs", 200)))
    return rows


def variant_rows(records: dict[str, list[dict]], paper: dict) -> list[Row]:
    """Records of experiments that are not Table 1 rows (docs/reproduction.md's variants), by name."""
    return [Row(key, DASH, DASH, {}, sorted(runs, key=lambda r: r["seed"]))
            for key, runs in sorted(records.items()) if key not in paper["rows"]]


def _num(v, fmt="{:.2f}") -> str:
    return DASH if v is None else fmt.format(v)


def seeds_needed(target: dict) -> int:
    """How many seeds a target's verdict needs (results/paper.yaml ``targets``; one unless it says)."""
    return target.get("seeds", 1)


def meets_target(row: Row, target: dict | None) -> str:
    """✓/✗ against the reproduction targets (results/paper.yaml ``targets``), — without runs or a target."""
    if not row.runs or not target:
        return DASH
    ok = row.mean("test_error") <= target["error"] + 1e-9  # records hold two decimals
    if "compression" in target:
        ok &= row.mean("compression") >= target["compression"]
    if "sparsity" in target:
        ok &= all(ours >= bar for ours, bar in zip(row.sparsity(), target["sparsity"]))
    need = seeds_needed(target)
    return ("✓" if ok else "✗") + (f" ({row.n}/{need} seeds)" if row.n < need else "")


def _target_text(key: str, t: dict) -> str:
    parts = [f"error ≤ {t['error']:.2f} %"] + ([f"≥ {t['compression']:g}×"] if "compression" in t else [])
    parts += [f"sparsity ≥ {'-'.join(f'{v:g}' for v in t['sparsity'])}"] if "sparsity" in t else []
    parts += [f"{t['seeds']} seeds"] if seeds_needed(t) > 1 else []
    return f"{key} {', '.join(parts)}"


def cells(row: Row, target: dict | None = None) -> dict[str, str]:
    err, paper_err = row.mean("test_error"), row.paper.get("error")
    err_cell = DASH
    if err is not None:
        err_cell = f"{err:.2f}" + (f" ± {row.std('test_error'):.2f}" if row.n > 1 else "")
    comp = row.mean("compression")
    method_is_sparse = row.runs and row.runs[0].get("config", {}).get("method", {}).get("name") != "dense"
    return {
        "Network": row.network,
        "Method": row.method,
        "Seeds": str(row.n) if row.runs else DASH,
        "Epochs": epochs_text(row.runs) if row.runs else DASH,
        "Paper error %": _num(paper_err),
        "Our error %": err_cell,
        "Δ error": DASH if err is None or paper_err is None else f"{err - paper_err:+.2f}",
        "Paper sparsity %": "-".join(f"{v:g}" for v in row.paper["sparsity"]) if "sparsity" in row.paper else DASH,
        "Our sparsity %": "-".join(f"{v:.1f}" for v in row.sparsity()) if method_is_sparse else DASH,
        "Paper compression": f"{row.paper['compression']:g}×" if "compression" in row.paper else DASH,
        "Our compression": DASH if comp is None else f"{comp:.0f}×" + (f" ± {row.std('compression'):.{0 if row.std('compression') >= 1 else 1}f}"
                                                                        if row.n > 1 and method_is_sparse else ""),
        "Meets target": meets_target(row, target),
    }


def quick_epochs(rows: list[Row]) -> list[int]:
    """Epoch counts of records shorter than their row's recipe (smoke runs such as EPOCHS=2)."""
    return sorted({e for r in rows for e in r.epochs() if e < r.recipe_epochs})


def render_markdown(rows: list[Row], paper: dict, variants: list[Row] = (), runs_list: bool = True) -> str:
    targets = paper.get("targets", {})
    table = [cells(r, targets.get(r.key)) for r in rows]
    header = list(table[0])
    lines = []
    quick = quick_epochs(rows)
    if quick:
        unit = "epoch" if quick == [1] else "epochs"
        lines += [f"> **Quick run ({', '.join(map(str, quick))} {unit} instead of 200): "
                  "smoke-test numbers, not results. Do not commit.**", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(t[h] for h in header) + " |" for t in table]
    lines += ["", "Error: mean ± sample std over seeds. Records: `results/runs/<row>/seed<k>/`."]
    if targets:
        lines += ["", "Meets target: the reproduction targets in results/paper.yaml, mean over seeds: "
                  + "; ".join(_target_text(k, t) for k, t in targets.items()) + "."]
    if runs_list and any(r.runs for r in rows):
        lines += ["", "Runs (wall time is training plus per-epoch evaluation, summed over resumed segments):", "",
                  render_runs(rows).rstrip("\n")]
    if any(v.runs for v in variants):
        lines += ["", "Variants: records of experiments that are not Table 1 rows, kept out of the table above "
                  "(what each changes: `docs/reproduction.md`):", "", render_runs(variants, "Variant").rstrip("\n")]
    return "\n".join(lines) + "\n"


def _hardware(env: dict) -> str:
    name = env.get("device_name") or env.get("device") or "?"
    return f"{name} ({env['device']}, torch {env.get('torch', '?')})" if env.get("device") else name


def _commit(env: dict) -> str:
    git = env.get("git") or {}
    return (git.get("sha") or "?")[:7] + ("+dirty" if git.get("dirty") else "")


def provenance(run: dict) -> tuple[str, str]:
    """(hardware, commits) of a record, one entry per distinct segment with the epoch it began at."""
    segments = run.get("segments") or ([run["environment"]] if run.get("environment") else [])
    first = segments[0].get("from_epoch", 0) if segments else 0
    # records from before segments were kept name only the resumed part
    hw, commits = ([(None, 0)] if first else [] for _ in range(2))
    for seg in segments:
        for entries, value in ((hw, _hardware(seg)), (commits, _commit(seg))):
            if not entries or entries[-1][0] != value:  # a resume on the same machine/commit adds nothing
                entries.append((value, seg.get("from_epoch", 0)))

    def text(entries):
        if len(entries) == 1:  # one machine (or commit) throughout: no epoch ranges to tell apart
            return entries[0][0]
        return "; ".join(f"epochs 1-{first}: not recorded" if value is None else f"from epoch {start + 1}: {value}"
                         for value, start in entries) or DASH
    return text(hw), text(commits)


def render_runs(rows: list[Row], first: str = "Row") -> str:
    """One line per record: how many epochs, where and how long it ran, and at which commit(s). When a
    record held out a validation split (``data.val_size``), a column gives its last validation error."""
    with_val = any("val_error" in run["metrics"] for row in rows for run in row.runs)
    cols = ["Seed", "Epochs", "Error %", *(["Val. error %"] if with_val else []), "Compression", "Wall time",
            "Hardware", "Commit"]
    lines = [f"| {first} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row in rows:
        for run in row.runs:
            m, wall = run["metrics"], run.get("wall_time")
            hw, commits = provenance(run)
            val = [f"{m['val_error']:.2f}" if "val_error" in m else DASH] if with_val else []
            cells = [run["seed"], epochs_text([run]), f"{m['test_error']:.2f}", *val, f"{m['compression']:.1f}×",
                     DASH if wall is None else f"{wall / 60:.0f} min", hw, commits]
            lines.append(f"| {row.key} | " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, table_md: str, start: str = README_START, end: str = README_END) -> bool:
    """Replace the text between two markers; False if the markers are missing."""
    text = readme.read_text()
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{start}\n{table_md}{end}{tail}"
    if new != text:
        atomic_write_text(readme, new)
    return True
