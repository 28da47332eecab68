"""The table's files: ``results/table.{md,csv,tex}`` from the rows and variants of ``tables``."""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from ..io import atomic_write_text
from .tables import (DASH, README_START, Row, build_rows, cells, meets_target, render_markdown, seeds_needed,
                     update_readme, variant_rows)


def _net(run: dict) -> tuple | None:
    config = run.get("config", {})
    model = config.get("model", {}).get("name")
    return (model, config.get("data", {}).get("name", "mnist")) if model else None


def _named_variants(rows: list[Row], variants: list[Row]) -> list[Row]:
    """Each variant with the network of the rows trained on its model and data, and its config's method
    and schedule (``pruning/gradual``), for the CSV."""
    networks = {_net(r.runs[0]): r.network for r in rows if r.runs and _net(r.runs[0])}
    out = []
    for v in variants:
        method = v.runs[0].get("config", {}).get("method", {})
        name = "/".join(str(method[k]) for k in ("name", "schedule") if method.get(k))
        out.append(Row(v.key, networks.get(_net(v.runs[0]), ""), name, {}, v.runs, v.recipe_epochs))
    return out


def render_csv(rows: list[Row], paper: dict, variants: list[Row] = ()) -> str:
    """The Table 1 rows (``kind`` row) and then every other experiment with records (``kind`` variant:
    the search candidates, the pruning curves and the other variants of docs/reproduction.md)."""
    buf = io.StringIO()
    fields = ["row", "network", "method", "seeds", "epochs", "paper_error", "error_mean", "error_std",
              "paper_compression", "compression_mean", "compression_std", "sparsity_mean", "meets_target", "target_seeds",
              "kind"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in [*rows, *_named_variants(rows, list(variants))]:
        target = paper.get("targets", {}).get(r.key)
        writer.writerow({
            "kind": "row" if r.key in paper["rows"] else "variant",
            "row": r.key, "network": r.network, "method": r.method, "seeds": r.n,
            "epochs": ",".join(map(str, r.epochs())), "paper_error": r.paper.get("error", ""),
            "error_mean": _round(r.mean("test_error")), "error_std": _round(r.std("test_error")),
            "paper_compression": r.paper.get("compression", ""),
            "compression_mean": _round(r.mean("compression")), "compression_std": _round(r.std("compression")),
            "sparsity_mean": "-".join(f"{v:.2f}" for v in r.sparsity()) if r.runs else "",
            "meets_target": {"✓": "yes", "✗": "no"}.get(meets_target(r, target)[:1], ""),
            # the seeds the verdict needs: with fewer (seeds < target_seeds) it is the verdict so far
            "target_seeds": seeds_needed(target) if target else "",
        })
    return buf.getvalue()


def _round(v):
    return "" if v is None else round(v, 4)


def render_tex(rows: list[Row], paper: dict) -> str:
    out = [r"\begin{tabular}{llcccccc}", r"\toprule",
           r"Network & Method & Paper err. & Our err. & Paper spars. & Our spars. & Paper comp. & Our comp. \\",
           r"\midrule"]
    for r in rows:
        c = cells(r)
        vals = [c[k].replace("%", r"\%").replace("±", r"$\pm$").replace("×", r"$\times$").replace(DASH, "--")
                for k in ("Network", "Method", "Paper error %", "Our error %", "Paper sparsity %",
                          "Our sparsity %", "Paper compression", "Our compression")]
        out.append(" & ".join(vals) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def write_report(records: dict, paper: dict, out_dir: Path, readme: Path | None = None, warn=print) -> list[Row]:
    rows = build_rows(records, paper, warn)
    variants = variant_rows(records, paper)
    table_md = render_markdown(rows, paper, variants)
    atomic_write_text(out_dir / "table.md", table_md)
    atomic_write_text(out_dir / "table.csv", render_csv(rows, paper, variants))
    atomic_write_text(out_dir / "table.tex", render_tex(rows, paper))
    # The README shows the MNIST rows (the paper's Table 1); table.md has every row and the runs.
    mnist = [r for r in rows if not r.key.startswith("fashion_")]
    readme_md = render_markdown(mnist or rows, paper, runs_list=False)
    if len(mnist) < len(rows):
        readme_md += "\nFashion-MNIST rows, every run's device, commit and wall time: `results/table.md`.\n"
    if readme is not None and readme.exists() and not update_readme(readme, readme_md):
        print(f"note: {readme} has no {README_START} markers; README not updated", file=sys.stderr)
    return rows
