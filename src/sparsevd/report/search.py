"""The recipe search on validation data as one table, with the error bars its ranking needs.

Every candidate of a search trains with ``data.val_size`` images held out of the training set and is judged
on them alone. ``results/search_<net>.md`` (written by ``make compress`` from ``results/threshold.csv``) gives
for each candidate, over its seeds:

- the validation error and compression at threshold 3 (the mean over seeds where there are several, with
  their sample std);
- the standard error of that validation error as a binomial proportion on the held-out images,
  sqrt(p (1 - p) / n), about 0.1 pt for 1 % on 10,000 images;
- the lowest validation error at a compression of at least the paper's, and at any threshold: minima over
  the whole sweep on the same images, so they are optimistic by construction;
- the compression one step past threshold 3, which shows a pruning that sits on a knife's edge;
- the test error at threshold 3, for reference only.

Candidates whose threshold-3 point reaches the paper's compression are ranked by their threshold-3
validation error (the seed mean where there is one); a difference from the best that lies within the best's
standard error is marked as such.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..io import atomic_write_text
from .pareto import NETS, mean_curves, on_mnist

THRESHOLD = 3.0
NEXT = 3.5


def standard_error(error_pct: float, n: int) -> float:
    """The standard error (pt) of an error rate ``error_pct`` (%) measured on ``n`` images."""
    p = error_pct / 100
    return 100 * math.sqrt(p * (1 - p) / n)


def _at(rows: list[dict], threshold: float | None) -> dict | None:
    """The point of ``rows`` at ``threshold``; None asks for a pruned record's one point."""
    return next((r for r in rows if (None if r["threshold"] in (None, "") else float(r["threshold"])) == threshold),
                None)


def _lowest(point: tuple) -> tuple:
    """Lowest error first; at equal error, the higher compression."""
    return point[0], -point[1]


def candidates(sweep: list[dict], net: str, compression: float, pruned: bool = False) -> list[dict]:
    """One entry per search candidate of ``net`` (a row with validation errors), its seeds summarised:
    the threshold-3 point of a variational record, or (``pruned``) the one point of a magnitude-pruned one."""
    by: dict[str, list[dict]] = {}
    for r in on_mnist(sweep, net):
        if r.get("val_error") not in (None, "") and (r["threshold"] in (None, "")) == pruned:
            by.setdefault(r["row"], []).append(r)
    at, nxt_at = (None, 0.0) if pruned else (THRESHOLD, NEXT)
    out = []
    for row, rows in sorted(by.items()):
        seeds = sorted({int(r["seed"]) for r in rows})
        at3 = [_at([r for r in rows if int(r["seed"]) == s], at) for s in seeds]
        if None in at3:
            continue
        nxt = [_at([r for r in rows if int(r["seed"]) == s], nxt_at) for s in seeds]
        curve = [(v, c, t) for t, c, v in mean_curves(rows, "val_error")[row]]
        far = [p for p in curve if p[1] >= compression]
        vals = [float(r["val_error"]) for r in at3]
        out.append({"row": row, "seeds": seeds, "val": statistics.fmean(vals),
                    "val_std": statistics.stdev(vals) if len(vals) > 1 else None,
                    "comp": statistics.fmean(float(r["compression"]) for r in at3),
                    "next": statistics.fmean(float(r["compression"]) for r in nxt) if None not in nxt else None,
                    "test": statistics.fmean(float(r["test_error"]) for r in at3),
                    "best_far": min(far, key=_lowest) if far else None, "best_any": min(curve, key=_lowest)})
    return out


def rank(cands: list[dict], compression: float) -> list[dict]:
    """Candidates whose threshold-3 point reaches ``compression``, lowest validation error first."""
    return sorted((c for c in cands if c["comp"] >= compression), key=lambda c: c["val"])


def _pt(p: tuple | None) -> str:
    return "—" if p is None else f"{p[0]:.2f} % at {p[1]:.0f}× ({p[2]:g})"


def _val_cell(c: dict, n: int) -> str:
    spread = f"; std {c['val_std']:.2f} over {len(c['seeds'])} seeds" if c["val_std"] is not None else ""
    return f"{c['val']:.2f} % ± {standard_error(c['val'], n):.2f}{spread}"


def _rank_cell(c: dict, ranked: list[dict], n: int) -> str:
    if c not in ranked:
        return "—"
    i = ranked.index(c)
    if i == 0:
        return "1"
    gap = c["val"] - ranked[0]["val"]
    within = ", within the best's standard error" if gap <= standard_error(ranked[0]["val"], n) else ""
    return f"{i + 1} (+{gap:.2f} pt{within})"


def search_table(sweep: list[dict], net: str, paper_error: float, compression: float, n: int) -> str:
    """The markdown table of ``net``'s search (see the module docstring); '' without candidates."""
    cands = candidates(sweep, net, compression)
    if not cands:
        return ""
    ranked = rank(cands, compression)
    order = ranked + sorted((c for c in cands if c not in ranked), key=lambda c: c["val"])
    lines = [f"| Candidate | Seeds | Validation error at threshold 3 (± standard error) | Compression at 3 "
             f"| Compression at {NEXT:g} | Rank at ≥ {compression:g}× | Lowest at ≥ {compression:g}× "
             f"(threshold) | Lowest at any threshold (threshold) | Test error at 3 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in order:
        nxt = "—" if c["next"] is None else f"{c['next']:.0f}×"
        lines.append(f"| `{c['row']}` | {len(c['seeds'])} | {_val_cell(c, n)} | {c['comp']:.0f}× | {nxt} "
                     f"| {_rank_cell(c, ranked, n)} | {_pt(c['best_far'])} | {_pt(c['best_any'])} "
                     f"| {c['test']:.2f} % |")
    if ranked:
        best = ranked[0]
        seeds = f"the mean of {len(best['seeds'])} seeds" if len(best["seeds"]) > 1 else "one seed"
        verdict = (f"The best at ≥ {compression:g}× by its threshold-3 point is `{best['row']}`: "
                   f"{best['val']:.2f} % at {best['comp']:.0f}× on validation ({seeds}), against the paper's "
                   f"{paper_error:g} % at {compression:g}×.")
    else:
        verdict = f"No candidate's threshold-3 point reaches {compression:g}×."
    note = (f"{NETS[net]}, validation error on the {n:,} held-out training images. Standard error: "
            f"sqrt(p(1 - p)/n), for one seed's error. Where a candidate has several seeds, every number is the "
            f"mean over them. The two 'lowest' columns are minima over the 19 thresholds of the (seed-mean) sweep "
            f"on the same images, so they are optimistic. {verdict}")
    return note + "\n\n" + "\n".join(lines) + "\n"


def groups(cands: list[dict], tolerance: float = 0.1) -> list[list[dict]]:
    """Candidates at about the same compression (each within ``tolerance`` of its group's smallest),
    each group lowest validation error first."""
    out: list[list[dict]] = []
    for c in sorted(cands, key=lambda c: c["comp"]):
        if out and c["comp"] <= out[-1][0]["comp"] * (1 + tolerance):
            out[-1].append(c)
        else:
            out.append([c])
    return [sorted(g, key=lambda c: c["val"]) for g in out]


def pruning_table(sweep: list[dict], net: str, n: int) -> str:
    """The magnitude-pruning candidates of ``net`` on validation: each retrained net's one point, compared
    with the others pruned to about the same compression (within 10 %); '' without candidates."""
    found = groups(candidates(sweep, net, 0.0, pruned=True))
    if not found:
        return ""
    lines = ["| Candidate | Seeds | Compression | Validation error (± standard error) | Rank at this compression "
             "| Test error |", "|---|---|---|---|---|---|"]
    for group in found:
        for c in group:
            lines.append(f"| `{c['row']}` | {len(c['seeds'])} | {c['comp']:.1f}× | {_val_cell(c, n)} "
                         f"| {_rank_cell(c, group, n)} | {c['test']:.2f} % |")
    note = (f"{NETS[net]}, magnitude pruning: each record is the one net it was retrained to, so it has no "
            f"threshold sweep. Candidates within 10 % of each other's compression are ranked together by "
            f"validation error ({n:,} held-out training images; standard error sqrt(p(1 - p)/n)).")
    return note + "\n\n" + "\n".join(lines) + "\n"


def write_search_tables(sweep: list[dict], paper: dict, out: Path, n: int = 10_000) -> list[Path]:
    """``out/search_<net>.md`` for each net with search candidates: the variational recipes beside the
    paper's SparseVD point, then the magnitude-pruning candidates."""
    written = []
    for net in NETS:
        spec = paper["rows"][f"{net}_sparsevd"]
        parts = [search_table(sweep, net, spec["error"], spec["compression"], n), pruning_table(sweep, net, n)]
        titles = ("## Sparse variational dropout and ARD", "## Magnitude pruning")
        body = "\n".join(f"{t}\n\n{part}" for t, part in zip(titles, parts) if part)
        if body:
            path = out / f"search_{net}.md"
            atomic_write_text(path, f"# The {NETS[net]} search on validation data\n\n"
                                    f"Written by `make compress` from `results/threshold.csv`.\n\n{body}")
            written.append(path)
    return written
