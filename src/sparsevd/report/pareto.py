"""Error against compression for every MNIST row and variant, beside the paper's Table 1.

The Pareto figures show test error for the records trained on all 60,000 training images; the candidates
that held out a validation split are judged on it, in the search figure (validation error), so that the
test-set figure holds the rows and variants a user compares with the paper.

Each record with weights is a threshold-sweep curve (the mean over its seeds at each threshold; the label
says so when some seeds of the row have no weights and so are not in it);
a record without weights is the one point it reports at threshold 3. The paper's SparseVD point and
its other methods (pruning, DNS, SWS: Table 1 of Molchanov et al. 2017, as ``results/paper.yaml``
quotes them) are labelled points; the dense row's mean error is a dashed line. Each figure has two
panels: the whole sweep, and the same curves near the paper's SparseVD point, where they crowd.

A magnitude-pruned record has no threshold to sweep: it is the one point it was trained to (a cross),
and the rows of one pruning recipe at several target compressions, named ``<row>`` and ``<row>_<k>x``,
are joined into one curve, so each pruning recipe is a curve of retrained nets beside SparseVD's sweeps.
"""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .figures import _save  # noqa: E402

NETS = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}


def on_mnist(rows: list[dict], net: str) -> list[dict]:
    """The sweep-like rows of ``net`` on MNIST with its true labels."""
    return [r for r in rows if r.get("model") == net and r.get("dataset", "mnist") == "mnist"
            and r.get("labels", "original") == "original"]


def whole_training_set(rows: list[dict]) -> list[dict]:
    """The sweep rows of records trained on every training image: a record that held out a validation
    split (its rows carry ``val_error``) is a search candidate, drawn in the search figure instead."""
    return [r for r in rows if r.get("val_error") in (None, "")]


def mean_curves(sweep: list[dict], metric: str = "test_error") -> dict[str, list[tuple[float, float, float]]]:
    """{experiment: [(threshold, mean compression, mean ``metric``), ...]} over the seeds of each
    experiment, at the thresholds every one of its seeds was swept at."""
    by: dict[str, dict[float, list[dict]]] = {}
    seeds: dict[str, set] = {}
    for r in sweep:
        if r.get(metric) in (None, ""):
            continue
        by.setdefault(r["row"], {}).setdefault(r["threshold"], []).append(r)
        seeds.setdefault(r["row"], set()).add(r["seed"])
    out = {}
    for row, at in by.items():
        n = len(seeds[row])
        out[row] = [(t, sum(r["compression"] for r in rs) / n, sum(r[metric] for r in rs) / n)
                    for t, rs in sorted(at.items()) if len(rs) == n]
    return out


def join_targets(curves: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """The one-point curves of pruned rows (threshold None) of one recipe, ``<row>`` and ``<row>_<k>x``,
    joined into one curve ordered by compression; every other curve as it is."""
    out: dict[str, list[tuple]] = {}
    families: dict[str, list[str]] = {}
    for row, curve in curves.items():
        if all(p[0] is None for p in curve):
            families.setdefault(re.sub(r"_\d+x$", "", row), []).append(row)
        else:
            out[row] = curve
    for family, rows in families.items():
        label = family if rows == [family] else f"{family} ({len(rows)} target compressions)"
        out[label] = sorted((p for row in rows for p in curves[row]), key=lambda p: p[1])
    return out


def _curve(ax, curve, label: str, **style) -> None:
    """One mean sweep as a line, its threshold-3 point circled; pruned records (no threshold) as crosses."""
    trained = all(p[0] is None for p in curve)
    style = {"ls": "-", **style}
    (line,) = ax.plot([p[1] for p in curve], [p[2] for p in curve], marker="P" if trained else ".",
                      ms=7 if trained else 3, label=label, **style)
    at3 = [p for p in curve if p[0] == 3.0]
    if at3:
        ax.plot(at3[0][1], at3[0][2], "o", ms=7, mfc="none", color=line.get_color(), zorder=4)


def _axes(ax, ylabel: str, title: str, cap: float | None = None,
          ticks=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)) -> None:
    """Log compression axis; the error axis stops at ``cap`` (a point far above it, e.g. a sweep's lowest
    threshold, would squeeze every curve near the paper's point into a line), and the label says so."""
    if cap is not None and ax.get_ylim()[1] > cap:
        ax.set_ylim(0, cap)
        ylabel = f"{ylabel}, axis cut at {cap:g} %"
    ax.set_xscale("log")
    ticks = [t for t in ticks if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("compression (weights / nonzero weights), log scale")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)


def _two_panels(draw, spec: dict, floor: float | None, ylabel: str, title: str):
    """The whole sweep on the left; on the right the same curves near the paper's point (half to twice its
    compression, its error ± 60 %, down to below ``floor``, the dense net's error), where the curves that
    matter crowd together on the left panel. ``draw(ax)`` draws every curve and point on one panel."""
    fig, (ax, near) = plt.subplots(1, 2, figsize=(12.0, 4.6), gridspec_kw={"wspace": 0.22})
    draw(ax)
    draw(near)
    err, comp = spec.get("error"), spec.get("compression")
    _axes(ax, ylabel, title, 3 * err if err else None)
    if err and comp:
        low = min(err, floor if floor is not None else err)
        near.set_xlim(comp / 2, comp * 2)
        near.set_ylim(max(0.0, low - 0.2 * err), 1.6 * err)
    _axes(near, ylabel, "near the paper's point", None,
          ticks=(20, 30, 40, 50, 70, 100, 150, 200, 300, 400, 500, 700, 1000))
    near.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def pareto_figure(net: str, curves: dict, points: dict, paper: dict, dense_error: float | None, out: Path) -> Path:
    """One panel: test error (%) against compression (log axis) for ``net``.

    ``curves``: {experiment: mean sweep}; ``points``: {experiment: (compression, error, seeds)} for
    records without weights; ``paper``: results/paper.yaml's content."""
    rows = sorted(set(curves) | set(points))
    colors = {f"{net}_{m}": c for m, c in (("sparsevd", "C0"), ("ard", "C1"), ("pruning", "C2"), ("gmp", "C3"))}
    table_rows = [r for r in rows if r.split(" (")[0] in colors]
    styles, others = {}, plt.get_cmap("tab20").colors[8:]  # tab20 after the blues, oranges, greens and reds of the rows
    for i, row in enumerate(table_rows + [r for r in rows if r not in table_rows]):
        main = row in table_rows
        styles[row] = dict(color=colors[row.split(" (")[0]] if main else others[i % len(others)],
                           lw=2.2 if main else 1.0, alpha=1.0 if main else 0.8, zorder=3 if main else 2)
    spec = paper["rows"].get(f"{net}_sparsevd", {})

    def draw(ax):
        for row in rows:
            st = styles[row]
            if row in curves:
                _curve(ax, curves[row], row, **st)
            else:
                comp, err, n = points[row]
                ax.plot(comp, err, "s", ms=6, color=st["color"], label=f"{row} (log α = 3 only)", zorder=st["zorder"])
        if spec.get("compression"):
            ax.plot(spec["compression"], spec["error"], "*", ms=16, color="k", zorder=5, label="paper: SparseVD")
        for other in paper.get("other_methods", {}).get(net, []):
            ax.plot(other["compression"], other["error"], "D", ms=6, color="0.45", zorder=4)
            ax.annotate(f"paper: {other['method']}", (other["compression"], other["error"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=8, color="0.3")
        if dense_error is not None:
            ax.axhline(dense_error, ls="--", color="0.5", lw=1, label=f"{net}_dense (ours, mean)")

    fig = _two_panels(draw, spec, dense_error, "test error (%)",
                      f"{NETS[net]} on MNIST: each curve sweeps the threshold on log α (circle: 3)")
    return _save(fig, out / f"pareto_{net}.png")


def search_figure(net: str, curves: dict, paper: dict, out: Path, dense_val: float | None = None) -> Path | None:
    """Validation error against compression for the records trained with a validation split; ``dense_val``:
    the dense net's validation error on the same split, drawn as a line."""
    if not curves:
        return None
    spec = paper["rows"].get(f"{net}_sparsevd", {})

    def draw(ax):
        for i, (row, c) in enumerate(sorted(curves.items())):  # ten colours, then the same dashed
            _curve(ax, c, row, color=f"C{i % 10}", ls=("-", "--", ":")[i // 10 % 3])
        if spec.get("compression"):
            ax.plot(spec["compression"], spec["error"], "*", ms=16, color="k", label="paper: SparseVD (test)")
        if dense_val is not None:
            ax.axhline(dense_val, ls="--", color="0.5", lw=1, label=f"{net}_dense_val10k (validation)")

    fig = _two_panels(draw, spec, dense_val, "validation error (%), last 10,000 training images",
                      f"{NETS[net]}: the recipe search on validation data (circle: log α = 3)")
    return _save(fig, out / f"search_{net}.png")


PARETO_START, PARETO_END = "<!-- pareto:start -->", "<!-- pareto:end -->"


def _point(r: dict) -> str:
    return f"{r['row']} seed {r['seed']} at threshold {r['threshold']:g}, {r['compression']:.0f}×"


def weightless_points(runs_dir: Path) -> list[dict]:
    """Sweep-like rows (the record's own threshold only) for the sparse records that have no weights to sweep."""
    from .tables import load_records

    out = []
    for row, finals in load_records(Path(runs_dir), warn=lambda msg: None).items():
        for f in finals:
            cfg = f["config"]
            if cfg["method"]["name"] == "dense" or (Path(f["record"]) / "weights.safetensors").is_file():
                continue
            data = cfg.get("data", {})
            out.append({"row": row, "seed": f["seed"], "threshold": float(cfg["method"].get("threshold", 3.0)),
                        "test_error": f["metrics"]["test_error"], "val_error": f["metrics"].get("val_error"),
                        "compression": f["metrics"]["compression"], "method": cfg["method"]["name"],
                        "model": cfg.get("model", {}).get("name", row.split("_")[0]),
                        "dataset": data.get("name", "mnist"), "labels": data.get("labels", "original")})
    return out


def pareto_sentence(net: str, sweep: list[dict], paper: dict, points: list[dict] = ()) -> str:
    """Where ``net``'s MNIST records of the variational methods (rows of ``method`` pruning are left out)
    sit against the paper's SparseVD point, on the test set: the most
    compressed point at or under the paper's error, and the lowest error at or over its compression, for
    single records (``sweep`` rows and the threshold-3 ``points`` of records without weights) and for
    seed-mean curves (``sweep`` only). Records that held out a validation split are left out, as in the figure."""
    spec = paper["rows"][f"{net}_sparsevd"]
    err, comp = spec["error"], spec["compression"]
    ours, points = ([r for r in whole_training_set(on_mnist(rows, net)) if r.get("method") != "pruning"]
                    for rows in (sweep, points))  # SparseVD's and ARD's, trained on every training image
    mine = ours + points
    name = NETS[net]
    if not mine:
        return f"No {name} sweep yet (`make compress` after training a sparse {net} row).\n"
    both = [r for r in mine if r["test_error"] <= err and r["compression"] >= comp]
    n = len({r["row"] for r in both})
    head = (f"{n} of our {name} recipes {'reaches' if n == 1 else 'reach'} the paper's {err:g} % at {comp:g}× on the "
            f"test set on some record, e.g. {_point(max(both, key=lambda r: r['compression']))}" if both else
            f"No {name} recipe of ours reaches the paper's {err:g} % at {comp:g}× on the test set")
    under = [r for r in mine if r["test_error"] <= err]
    over = [r for r in mine if r["compression"] >= comp]
    parts = []
    if under:
        best = max(under, key=lambda r: r["compression"])
        parts.append(f"at {err:g} % or less the most compressed record is {_point(best)} ({best['test_error']:.2f} %)")
    if over:
        best = min(over, key=lambda r: (r["test_error"], -r["compression"]))
        seeds = {}  # a seed-mean curve: every seed of the row has weights, and there are several
        for r in ours:
            seeds.setdefault(r["row"], set()).add(r["seed"])
        whole = {row for row, k in seeds.items() if len(k) > 1 and row not in {p["row"] for p in points}}
        curves = [(row, p) for row, c in mean_curves(ours).items() if row in whole for p in c if p[1] >= comp]
        line = ""
        if curves:
            row, p = min(curves, key=lambda rp: (rp[1][2], -rp[1][1]))
            line = (f"{p[2]:.2f} % on a curve averaged over seeds ({row}, {len(seeds[row])} seeds, at threshold "
                    f"{p[0]:g}, {p[1]:.0f}×) and ")
        parts.append(f"at {comp:g}× or more the lowest error is {line}{best['test_error']:.2f} % on a single "
                     f"record ({_point(best)})")
    return head + ("; " + "; ".join(parts) if parts else "") + ".\n"


def make_pareto(sweep: list[dict], runs_dir: Path, paper: dict, out: Path) -> list[Path]:
    """Both Pareto figures and the validation-search figure from the sweep rows (``row``, ``seed``,
    ``threshold``, ``test_error``, ``compression``, optional ``val_error``, ``dataset``, ``labels``) and
    the records without weights under ``runs_dir``."""
    from .tables import load_records

    records = load_records(Path(runs_dir), warn=lambda msg: None)
    made = []
    for net in NETS:
        mine = on_mnist(sweep, net)
        curves = mean_curves(whole_training_set(mine))
        points, dense, dense_val = {}, [], []
        for row, finals in records.items():
            cfg = finals[0]["config"]
            data = cfg.get("data", {})
            if (cfg.get("model", {}).get("name", row.split("_")[0]) != net or data.get("name", "mnist") != "mnist"
                    or data.get("labels", "original") != "original"):
                continue
            if cfg["method"]["name"] != "dense" and not whole_training_set([finals[0]["metrics"]]):
                continue  # a search candidate (it has a validation error): in the search figure
            if cfg["method"]["name"] == "dense":
                dense += [f["metrics"]["test_error"] for f in finals] if row == f"{net}_dense" else []
                dense_val += [f["metrics"]["val_error"] for f in finals if row == f"{net}_dense_val10k"]
                continue
            swept = len({r["seed"] for r in mine if r["row"] == row})
            if row in curves and swept < len(finals):  # a curve of the seeds that have weights, said so
                curves[f"{row} ({swept} of {len(finals)} seeds with weights)"] = curves.pop(row)
            elif row not in curves:
                n = len(finals)
                points[row] = (sum(f["metrics"]["compression"] for f in finals) / n,
                               sum(f["metrics"]["test_error"] for f in finals) / n, n)
        made.append(pareto_figure(net, join_targets(curves), points, paper, sum(dense) / len(dense) if dense else None, out))
        fig = search_figure(net, mean_curves([r for r in mine if r.get("val_error") not in (None, "")], "val_error"),
                            paper, out, sum(dense_val) / len(dense_val) if dense_val else None)
        made += [fig] if fig else []
    return made
