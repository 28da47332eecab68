"""Rebuild results/table.{md,csv,tex}, results/figures/ and the README's results section.

    python scripts/report.py                                  # from results/runs (committed records)
    python scripts/report.py --source wandb --entity E --project P
"""
import argparse
import sys
from pathlib import Path

from sparsevd.report.compare import render_comparison
from sparsevd.report.figures import make_all
from sparsevd.io import RecordError, atomic_write_text
from sparsevd.report.table_files import write_report
from sparsevd.report.tables import load_paper, load_records, update_readme
from sparsevd.report.sentences import (RANDOM_END, RANDOM_START, TIMING, WALL_END, WALL_START, load_timing,
                                       random_label_sentence, wall_time_block)
from sparsevd.report.from_wandb import records_from_wandb


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("results/runs"), help="records folder")
    p.add_argument("--paper", type=Path, default=Path("results/paper.yaml"))
    p.add_argument("--out", type=Path, default=Path("results"), help="where table.* and figures/ go")
    p.add_argument("--readme", default="README.md", help="README to update ('' to skip)")
    p.add_argument("--source", choices=["files", "wandb"], default="files")
    p.add_argument("--compare", type=Path, help="committed records to put beside these runs and the paper "
                                                "(writes <out>/comparison.md)")
    p.add_argument("--timing", type=Path, default=TIMING,
                   help="make reproduce-timing's measurement, for the README's wall-time block (when present)")
    p.add_argument("--entity")
    p.add_argument("--project", default="sparsevd")
    args = p.parse_args(argv)
    try:  # read before anything is written: a bad file stops the report with one line
        timing = load_timing(args.timing) if args.readme and args.source == "files" else None
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.source == "wandb":
        if not args.entity:
            p.error("--source wandb needs --entity (your W&B user or team)")
        import wandb

        records = records_from_wandb(wandb.Api().runs(f"{args.entity}/{args.project}"))
    else:
        records = load_records(args.runs, warn=lambda m: print(m, file=sys.stderr))
    rows = write_report(records, load_paper(args.paper), args.out,
                        readme=Path(args.readme) if args.readme else None,
                        warn=lambda m: print(m, file=sys.stderr))
    figures = make_all(rows, args.out / "figures", records) if args.source == "files" else []
    if args.readme and args.source == "files":
        for text, start, end in ((wall_time_block(records, timing), WALL_START, WALL_END),
                                 (random_label_sentence(records), RANDOM_START, RANDOM_END)):
            if not update_readme(Path(args.readme), text, start, end):
                print(f"note: {args.readme} has no {start} markers; that block is not written", file=sys.stderr)
    print((args.out / "table.md").read_text())
    if args.compare:
        warn = lambda m: print(m, file=sys.stderr)  # noqa: E731
        md = render_comparison(load_paper(args.paper), load_records(args.compare, warn=warn), records, warn=warn)
        atomic_write_text(args.out / "comparison.md", md)
        print(md)
        print(f"wrote {args.out}/comparison.md")
    print(f"wrote {args.out}/table.md, table.csv, table.tex and {len(figures)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
