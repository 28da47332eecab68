"""Does SparseVD beat magnitude pruning here? One generated sentence per net, from the test-set sweeps.

Two comparisons, both on the test set and both from committed records with weights:

- at equal compression: the SparseVD row at threshold 3 (``<net>_sparsevd``) against gradual magnitude
  pruning trained to SparseVD's compression (``<net>_gmp``), each as its mean and sample std over seeds,
  and their gap against its standard error (Welch's, from the two spreads);
- at equal error: the most compressed point of each method at or under the other's error. SparseVD's points
  are its row's seed-mean threshold sweep; magnitude pruning's are the seed means of its retrained rows
  (``<net>_gmp``, ``<net>_gmp_<k>x`` and Han's rounds, ``<net>_pruning``), which have no threshold to sweep.

Records trained with a validation split are left out: they are the search, not the result.
"""
from __future__ import annotations

import statistics

from .pareto import NETS, mean_curves, on_mnist

VERSUS_START, VERSUS_END = "<!-- versus:start -->", "<!-- versus:end -->"


def _rows(sweep: list[dict], net: str) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for r in on_mnist(sweep, net):
        if r.get("val_error") in (None, ""):
            by.setdefault(r["row"], []).append(r)
    return by


def _mean(rows: list[dict], key: str) -> tuple[float, float | None]:
    values = [float(r[key]) for r in rows]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _pm(rows: list[dict], key: str = "test_error") -> str:
    mean, std = _mean(rows, key)
    return f"{mean:.2f} ± {std:.2f} %" if std is not None else f"{mean:.2f} %"


def pruning_points(by: dict[str, list[dict]], net: str) -> list[tuple[str, float, float, int]]:
    """(row, mean compression, mean test error, seeds) of each magnitude-pruning row of ``net``."""
    out = []
    for row, rows in by.items():
        if rows[0].get("method") == "pruning" and row.split("_")[1] in ("gmp", "pruning"):
            out.append((row, _mean(rows, "compression")[0], _mean(rows, "test_error")[0], len(rows)))
    return sorted(out, key=lambda p: p[1])


def _at_error(points, error: float):
    """The most compressed point at or under ``error`` (points: (label, compression, error, ...))."""
    under = [p for p in points if p[2] <= error + 1e-9]
    return max(under, key=lambda p: p[1]) if under else None


def _seeds(rows: list) -> str:
    return f"{len(rows)} seed{'s' if len(rows) != 1 else ''}"


def versus_sentence(net: str, sweep: list[dict]) -> str:
    """The generated README sentence for ``net`` (see the module docstring)."""
    name, by = NETS[net], _rows(sweep, net)
    vd, gmp = by.get(f"{net}_sparsevd", []), by.get(f"{net}_gmp", [])
    vd3 = [r for r in vd if r["threshold"] not in (None, "") and float(r["threshold"]) == 3.0]
    if not vd3 or not gmp:
        return f"{name}: no SparseVD and gradual-pruning records to compare yet (`make compress` after both rows).\n"
    vd_comp, gmp_comp = _mean(vd3, "compression")[0], _mean(gmp, "compression")[0]
    vd_err, gmp_err = _mean(vd3, "test_error")[0], _mean(gmp, "test_error")[0]
    head = (f"{name}, test set: at about equal compression SparseVD errs {_pm(vd3)} at {vd_comp:.0f}× "
            f"({_seeds(vd3)}, threshold 3) and gradual magnitude pruning {_pm(gmp)} at {gmp_comp:.0f}× "
            f"({_seeds(gmp)}), a gap of {gmp_err - vd_err:+.2f} pt for pruning{_spread(vd3, gmp)}")
    pruned = pruning_points(by, net)
    curve = [(f"threshold {t:g}", c, e) for t, c, e in mean_curves(vd).get(f"{net}_sparsevd", [])
             if t is not None]
    at_vd, at_gmp = _at_error(pruned, vd_err), _at_error(curve, gmp_err)
    tail = [f"at SparseVD's {vd_err:.2f} % magnitude pruning reaches "
            + (f"{at_vd[1]:.0f}× at most ({at_vd[0]}, {at_vd[2]:.2f} %)" if at_vd else
               f"no compression: none of its {len(pruned)} rows errs that little"),
            f"at pruning's {gmp_err:.2f} % SparseVD's seed-mean sweep reaches " + _reach(at_gmp, curve)]
    return f"{head}; {'; '.join(tail)}.\n"


def _spread(a: list[dict], b: list[dict], key: str = "test_error") -> str:
    """The gap between two seed means against its standard error, sqrt(s_a²/n_a + s_b²/n_b) (Welch), where
    both sides have two seeds or more; within two standard errors the two are called level."""
    (ma, sa), (mb, sb) = _mean(a, key), _mean(b, key)
    if sa is None or sb is None:
        return " (one side has a single seed: no standard error for the gap)"
    se = (sa ** 2 / len(a) + sb ** 2 / len(b)) ** 0.5
    if abs(mb - ma) < 2 * se:
        return f", within two standard errors of the difference of the means ({se:.2f} pt): level on these seeds"
    return f", {abs(mb - ma) / se:.1f} standard errors of the difference of the means ({se:.2f} pt)"


def _reach(point, curve) -> str:
    """Where a sweep reaches at an error: its point, or 'at least' when that is the sweep's last point."""
    if point is None:
        return "no point of its sweep"
    if point[1] >= max(p[1] for p in curve):  # the whole sweep stays under the error: it would reach further
        return f"at least {point[1]:.0f}×, its most compressed point ({point[0]}, {point[2]:.2f} %)"
    return f"{point[1]:.0f}× ({point[0]}, {point[2]:.2f} %)"
