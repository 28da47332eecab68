"""Your runs beside the committed records and the paper: the table `make reproduce` ends with."""
from __future__ import annotations

from .tables import DASH, Row, build_rows


def _cell(row: Row, metric: str, fmt: str) -> str:
    if not row.runs:
        return DASH
    text = fmt.format(row.mean(metric))
    return f"{text} ± {fmt.format(row.std(metric))}" if row.n > 1 else text


def _sparse(row: Row) -> bool:
    return row.method not in ("original", DASH)


def render_comparison(paper: dict, committed: dict, yours: dict, warn=print) -> str:
    """Markdown: per Table 1 row, the paper's numbers, the committed records' and yours (mean ± std)."""
    ours, theirs = build_rows(committed, paper, warn), build_rows(yours, paper, warn)
    lines = ["| Network | Method | Paper error % | Committed error % | Your error % | Paper compression | "
             "Committed compression | Your compression | Seeds (committed / yours) | Your epochs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c, y in zip(ours, theirs):
        sparse = _sparse(c)
        comp = (lambda r: _cell(r, "compression", "{:.0f}") + ("×" if r.runs else "")) if sparse else (lambda r: DASH)
        paper_comp = f"{c.paper['compression']:g}×" if "compression" in c.paper else DASH
        paper_err = f"{c.paper['error']:.2f}" if "error" in c.paper else DASH
        epochs = ",".join(map(str, y.epochs())) if y.runs else DASH
        lines.append(f"| {c.network} | {c.method} | {paper_err} | {_cell(c, 'test_error', '{:.2f}')} | "
                     f"{_cell(y, 'test_error', '{:.2f}')} | {paper_comp} | {comp(c)} | {comp(y)} | "
                     f"{c.n} / {y.n} | {epochs} |")
    lines += ["", "Committed: `results/runs/`; yours: the folder this file sits in (`runs/`). "
              "Error: mean ± sample std over seeds; ARD rows have no paper row of their own and are shown "
              "against the SparseVD numbers."]
    return "\n".join(lines) + "\n"
