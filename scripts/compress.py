"""Bytes and threshold trade-off of the sparse records that hold weights, measured on the test set.

    python scripts/compress.py        # writes results/compression.{md,csv}, results/threshold.csv,
                                      # results/figures/threshold_<net>.png, pareto_<net>.png,
                                      # search_<net>.png, search_<net>.md (the recipe search on
                                      # validation data) and the README's bytes and pareto blocks
                                      # (there: each MNIST row's first seed with weights)

For each record of the sparse Table 1 rows (magnitude pruning's too): the exported file stage by stage
(pruning only; + index coding; + value quantization, the default export). For every sparse record with
weights, rows and variants alike: the test error (and, with a validation split, the validation error)
and compression at thresholds on log alpha from -1 to the clip in steps of 0.5, without retraining; a
magnitude-pruned record is the one point it was trained to. The Pareto figures put those curves beside
the paper's Table 1.

Each record's measurements are kept (``--cache``), so a re-run measures only the records that are new or
changed; ``--no-cache`` measures them all.
"""
import argparse
import sys
from pathlib import Path

from sparsevd.compress.deploy import (BYTES_END, BYTES_START, ROWS, bytes_verdicts, readme_rows, records_with_weights,
                                      render_bytes, render_csv, sparse_records_with_weights, stage_table,
                                      threshold_note, threshold_sweep)
from sparsevd.report.figures import threshold_curves
from sparsevd.report.pareto import PARETO_END, PARETO_START, make_pareto, pareto_sentence, weightless_points
from sparsevd.report.search import write_search_tables
from sparsevd.report.versus import VERSUS_END, VERSUS_START, versus_sentence
from sparsevd.compress.cache import ENV_VAR, cached, default_dir
from sparsevd.compress.weights import WeightsError
from sparsevd.data import DataError
from sparsevd.io import atomic_write_text
from sparsevd.report.tables import load_paper, update_readme


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("results/runs"))
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--readme", default="README.md", help="README whose bytes and pareto blocks to rewrite ('' to skip)")
    p.add_argument("--paper", type=Path, default=Path("results/paper.yaml"))
    p.add_argument("--cache", type=Path, default=None,
                   help=f"where each record's measurements are kept between runs (default ${ENV_VAR}/compress, "
                        f"else ~/.cache/sparsevd/compress); a record whose weights, config, data or the package's "
                        f"code changed is measured again")
    p.add_argument("--no-cache", action="store_true", help="measure every record, and keep nothing")
    args = p.parse_args(argv)
    try:
        return _compress(args)
    except (DataError, WeightsError) as exc:  # the data or a record's weights: one line, nothing written
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _compress(args) -> int:
    folders = records_with_weights(args.runs)
    if not folders:
        print(f"error: no sparse record with weights under {args.runs}; train a row first (make reproduce)",
              file=sys.stderr)
        return 2
    cache = None if args.no_cache else (args.cache or default_dir())
    table, sweep, by_net = [], [], {}
    for folder in folders:
        print(f"{folder.parent.name} seed {folder.name[4:]}: export stages ...", file=sys.stderr, flush=True)
        stages = cached("stages", folder, lambda: stage_table(folder), cache)
        table += [{"row": folder.parent.name, "seed": int(folder.name[4:]), **r} for r in stages]
    for folder in sparse_records_with_weights(args.runs):
        row, seed = folder.parent.name, int(folder.name[4:])
        print(f"{row} seed {seed}: threshold sweep ...", file=sys.stderr, flush=True)
        rows, cfg = cached("sweep", folder, lambda: threshold_sweep(folder), cache)
        where = {"model": cfg["model"]["name"], "dataset": cfg["data"]["name"],
                 "labels": cfg["data"].get("labels", "original"), "method": cfg["method"]["name"]}
        sweep += [{"row": row, "seed": seed, **where, **r} for r in rows]
        if folder in folders and len(rows) > 1:  # the threshold figures: the Table 1 rows that have a threshold
            by_net.setdefault(f"{cfg['data']['name']}_{cfg['model']['name']}", {})[f"{row} seed {seed}"] = rows
    md = render_bytes(table)
    atomic_write_text(args.out / "compression.md", md)
    atomic_write_text(args.out / "compression.csv", render_csv(table))
    atomic_write_text(args.out / "threshold.csv", render_csv(sweep))
    for net, sweeps in by_net.items():
        threshold_curves(sweeps, args.out / "figures", net.removeprefix("mnist_"))
    make_pareto(sweep, args.runs, load_paper(args.paper), args.out / "figures")
    write_search_tables(sweep, load_paper(args.paper), args.out)
    rows_only = sorted((r for r in sweep if r["row"] in ROWS), key=lambda r: ROWS.index(r["row"]))  # stable
    block = (f"{render_bytes(readme_rows(table))}\n{bytes_verdicts(table)} At threshold 3 against the rest of the "
             f"sweep:\n\n{threshold_note(readme_rows(rows_only))}\n")
    where = pareto_sentence("lenet5", sweep, load_paper(args.paper), weightless_points(args.runs))
    versus = "".join(f"- {versus_sentence(net, sweep)}" for net in ("lenet300", "lenet5"))
    for text, start, end in ((block, BYTES_START, BYTES_END), (where, PARETO_START, PARETO_END),
                             (versus, VERSUS_START, VERSUS_END)):
        if args.readme and not update_readme(Path(args.readme), text, start, end):
            print(f"note: {args.readme} has no {start} markers; that block is not written", file=sys.stderr)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
