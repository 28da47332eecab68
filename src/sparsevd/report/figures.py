"""Figures from the committed records: curves, sparsity bars, log-alpha histograms, input masks,
the random-label rows and the threshold curves."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import read_jsonl  # noqa: E402
from .tables import Row  # noqa: E402

# No timestamps or versions in the files, so re-running the report leaves them byte-identical.
PNG_META = {"Software": None}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", metadata=PNG_META)
    plt.close(fig)
    tmp.replace(path)
    return path


SEED_STYLES = ("-", "--", ":", "-.")
ERROR_TICKS = (0.5, 0.6, 0.8, 1, 1.5, 2, 3, 5, 8, 10, 12, 15, 20, 50)


METHOD_COLOURS = {"dense": "0.45", "sparsevd": "C0", "ard": "C1", "pruning": "C2", "gmp": "C3"}  # by row key suffix


def _panel_key(key: str) -> tuple[str, str, str]:
    """(dataset, net, method) of a Table 1 row key such as fashion_lenet5_ard."""
    dataset = "Fashion-MNIST" if key.startswith("fashion_") else "MNIST"
    net, method = key.removeprefix("fashion_").split("_", 1)
    return dataset, {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}.get(net, net), method


def _mean_band(histories: list[list[dict]], metric: str):
    """Epochs every seed has, the mean of ``metric`` over the seeds and its sample std (0 for one seed)."""
    common = sorted(set.intersection(*({h["epoch"] for h in hist} for hist in histories)))
    values = np.array([[next(h[metric] for h in hist if h["epoch"] == e) for e in common] for hist in histories])
    std = values.std(0, ddof=1) if len(histories) > 1 else np.zeros(len(common))
    return np.array(common), values.mean(0), std


def curves(rows: list[Row], out: Path) -> Path | None:
    """Test error (top) and compression (bottom) per epoch, a column per network x dataset, a colour per
    method: the mean over seeds, with a band of ± one sample std where there are several."""
    rows = [r for r in rows if r.runs]
    panels = sorted({_panel_key(r.key)[:2] for r in rows}, key=lambda p: (p[0] != "MNIST", p[1] != "LeNet-300-100"))
    if not panels:
        return None
    fig, axes = plt.subplots(2, len(panels), figsize=(3.6 * len(panels), 6.0), squeeze=False, sharex=True)
    for row in rows:
        dataset, net, method = _panel_key(row.key)
        col = panels.index((dataset, net))
        hists = [read_jsonl(Path(run["record"]) / "metrics.jsonl") for run in row.runs
                 if (Path(run["record"]) / "metrics.jsonl").exists()]
        if not hists:
            continue
        for ax, metric in ((axes[0][col], "test_error"), (axes[1][col], "compression")):
            x, mean, std = _mean_band(hists, metric)
            colour = METHOD_COLOURS.get(method, "C4")
            ax.plot(x, mean, color=colour, lw=1.3, label=f"{row.method} ({len(hists)} seed{'s' * (len(hists) > 1)})")
            ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.25, lw=0)
    for col, (dataset, net) in enumerate(panels):
        top, bottom = axes[0][col], axes[1][col]
        top.set_title(f"{net}, {dataset}", fontsize=10)
        top.set_yscale("log")
        lo, hi = top.get_ylim()
        top.set_yticks([t for t in ERROR_TICKS if lo <= t <= hi])
        top.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        top.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        bottom.set_yscale("log")
        bottom.set_xlabel("epoch")
        top.legend(fontsize=7, loc="upper right")
        for ax in (top, bottom):
            ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("test error % (log scale)")
    axes[1][0].set_ylabel("compression × (log scale)")
    fig.tight_layout()
    return _save(fig, out / "curves.png")


def random_labels(records: dict[str, list[dict]], out: Path) -> Path | None:
    """The random-label rows: error on their own (random) training labels and on the true test labels,
    and compression, per epoch; one colour per row, one line style per seed."""
    rows = {k: v for k, v in sorted(records.items()) if v[0]["config"].get("data", {}).get("labels") == "random"}
    if not rows:
        return None
    fig, (ax_err, ax_comp) = plt.subplots(1, 2, figsize=(11, 4.0))
    for i, (key, finals) in enumerate(rows.items()):
        for j, final in enumerate(sorted(finals, key=lambda f: f["seed"])):
            hist = read_jsonl(Path(final["record"]) / "metrics.jsonl")
            epochs = [h["epoch"] for h in hist]
            style = dict(color=f"C{i % 10}", ls=SEED_STYLES[j % len(SEED_STYLES)], lw=1.3)
            ax_err.plot(epochs, [h["train_error"] for h in hist], label=f"{key} seed {final['seed']}: training (random labels)", **style)
            ax_err.plot(epochs, [h["test_error"] for h in hist], alpha=0.5, label=f"{key} seed {final['seed']}: test", **{**style, "ls": ":"})
            ax_comp.plot(epochs, [h["compression"] for h in hist], label=f"{key} seed {final['seed']}", **style)
    ax_err.axhline(90.0, color="0.5", lw=0.8, ls="--")
    ax_err.set(xlabel="epoch", ylabel="error %", title="Error (90 % = chance)", ylim=(-2, 100))
    ax_err.legend(fontsize=7)
    ax_comp.set(xlabel="epoch", ylabel="compression × (log scale)", yscale="log",
                title="Compression (weights / nonzero weights)")
    ax_comp.legend(fontsize=7)
    ax_comp.grid(True, which="major", alpha=0.3)
    ax_err.grid(True, alpha=0.3)
    return _save(fig, out / "random_labels.png")


def sparsity_bars(rows: list[Row], out: Path) -> Path | None:
    """Per-layer share of weights kept (100 - sparsity), paper vs ours, on a log scale so that
    98 % and 99.8 % pruned (2 % and 0.2 % kept) look as different as they are."""
    rows = [r for r in rows if r.runs and "sparsity" in r.paper]
    if not rows:
        return None
    fig, axes = plt.subplots(1, len(rows), figsize=(3.6 * len(rows), 3.6), squeeze=False, sharey=True)
    for k, (ax, row) in enumerate(zip(axes[0], rows)):
        layers = list(row.runs[0]["metrics"]["sparsity"])
        x = np.arange(len(layers))
        ax.bar(x - 0.2, [100 - v for v in row.paper["sparsity"]], 0.4, label="paper")
        ax.bar(x + 0.2, [100 - v for v in row.sparsity()], 0.4, label=f"ours (mean of {row.n})")
        ax.set(xticks=x, xticklabels=layers, yscale="log", ylim=(0.05, 100), title=row.key)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        if k == 0:
            ax.set_ylabel("% of weights kept (log scale)")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _save(fig, out / "sparsity.png")


def _arrays(row: Row):
    path = Path(row.runs[0]["record"]) / "arrays.npz"
    return np.load(path) if path.exists() else None


def log_alpha_histograms(rows: list[Row], out: Path) -> list[Path]:
    """Per-layer histogram of log alpha in the final model (first seed); the threshold is dashed."""
    made = []
    for row in rows:
        arrays = _arrays(row) if row.runs else None
        if arrays is None:
            continue
        layers = [k.split("/", 1)[1] for k in arrays.files if k.startswith("log_alpha_hist/")]
        if not layers:
            continue
        edges = arrays["bin_edges"]
        threshold = row.runs[0]["config"]["method"]["threshold"]
        fig, axes = plt.subplots(1, len(layers), figsize=(3.4 * len(layers), 2.9), squeeze=False)
        for ax, layer in zip(axes[0], layers):
            ax.stairs(arrays[f"log_alpha_hist/{layer}"], edges, fill=True)
            ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
            ax.set(title=layer, xlabel="log α", yscale="log")
            ax.legend(fontsize=7, loc="upper center")
        axes[0][0].set_ylabel("weights (log scale)")
        fig.suptitle(f"{row.key}: log α of the final model (seed {row.runs[0]['seed']})", y=1.04)
        made.append(_save(fig, out / f"log_alpha_{row.key}.png"))
    return made


def input_masks(rows: list[Row], out: Path) -> list[Path]:
    """Which of the 28x28 input pixels keep any weight into fc1 (LeNet-300-100 sparse rows)."""
    made = []
    for row in rows:
        arrays = _arrays(row) if row.runs and "lenet300" in row.key else None
        if arrays is None or "log_alpha_hist/fc1" not in arrays.files:
            continue
        kept = arrays["inputs_kept/fc1"].reshape(28, 28)
        fig, ax = plt.subplots(figsize=(3.6, 3.2))
        im = ax.imshow(kept, cmap="magma")
        fig.colorbar(im, ax=ax, label="weights kept into fc1")
        ax.set(xticks=[], yticks=[], title=f"{row.key}: {int((kept > 0).sum())}/784 pixels used")
        made.append(_save(fig, out / f"input_mask_{row.key}.png"))
    return made


def make_all(rows: list[Row], out: Path, records: dict[str, list[dict]] | None = None) -> list[Path]:
    """Every report figure: the Table 1 rows' curves, sparsity, log alpha and input masks, and (from
    all ``records``) the random-label rows."""
    made = [curves(rows, out), sparsity_bars(rows, out), random_labels(records or {}, out)]
    made += log_alpha_histograms(rows, out) + input_masks(rows, out)
    return [p for p in made if p is not None]


def threshold_curves(sweeps: dict[str, list[dict]], out: Path, net: str) -> Path:
    """Test error against compression as the threshold moves, one line per record, threshold 3 marked."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = {}  # one colour per row; a row's later seeds in thinner lines
    for label, rows in sweeps.items():
        x = [r["compression"] for r in rows]
        y = [r["test_error"] for r in rows]
        row = label.split(" seed")[0]
        first = row not in colours
        colours.setdefault(row, f"C{len(colours)}")
        (line,) = ax.plot(x, y, marker=".", label=label, color=colours[row], lw=1.5 if first else 0.8,
                          alpha=1.0 if first else 0.6)
        at3 = [r for r in rows if r["threshold"] == 3.0]
        if at3:
            ax.plot(at3[0]["compression"], at3[0]["test_error"], "o", ms=10, mfc="none", color=line.get_color())
            if first:  # one label per row; every seed's point is circled
                ax.annotate("log α = 3", (at3[0]["compression"], at3[0]["test_error"]), textcoords="offset points",
                            xytext=(6, 6), fontsize=8, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("compression (weights / nonzero weights), log scale")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"{net}: threshold on log α from the clip (left) down to -1 (right)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / f"threshold_{net}.png")
