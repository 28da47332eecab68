"""The recipe-search table: standard errors, seed means, the ranking at the paper's compression."""
import math

import yaml

from sparsevd.report.search import candidates, search_table, standard_error, write_search_tables
from conftest import PAPER


def point(row, seed, threshold, val, compression, test=0.9):
    return {"row": row, "seed": seed, "threshold": threshold, "val_error": val, "test_error": test,
            "compression": compression, "model": "lenet5", "dataset": "mnist", "labels": "original"}


def sweep_of(row, seed, val3, comp3, comp35=None, val_low=None):
    """A three-threshold sweep: 2.5 (more compressed; ``val_low`` if given), 3 and 3.5."""
    return [point(row, seed, 2.5, val_low if val_low is not None else val3 + 0.05, comp3 * 1.2),
            point(row, seed, 3.0, val3, comp3), point(row, seed, 3.5, val3, comp35 or comp3)]


def test_standard_error_is_the_binomial_one():
    assert math.isclose(standard_error(1.0, 10_000), 100 * math.sqrt(0.01 * 0.99 / 10_000))
    assert round(standard_error(1.0, 10_000), 3) == 0.099


def test_seeds_are_averaged_and_their_spread_shown():
    sweep = sweep_of("a_val10k", 0, 0.90, 300.0) + sweep_of("a_val10k", 1, 1.00, 320.0)
    (c,) = candidates(sweep, "lenet5", 280)
    assert c["seeds"] == [0, 1] and math.isclose(c["val"], 0.95) and math.isclose(c["comp"], 310.0)
    assert math.isclose(c["val_std"], math.sqrt(0.005))
    assert "0.95 % ± 0.10; std 0.07 over 2 seeds" in search_table(sweep, "lenet5", 0.75, 280, 10_000)


def test_only_candidates_at_the_papers_compression_are_ranked_and_close_ones_are_marked():
    sweep = (sweep_of("best_val10k", 0, 0.90, 300.0) + sweep_of("close_val10k", 0, 0.95, 290.0)
             + sweep_of("far_val10k", 0, 1.20, 400.0) + sweep_of("dense_ish_val10k", 0, 0.70, 50.0))
    table = search_table(sweep, "lenet5", 0.75, 280, 10_000)
    lines = {line.split("`")[1]: line for line in table.splitlines() if line.startswith("| `")}
    assert "| 1 |" in lines["best_val10k"]
    assert "2 (+0.05 pt, within the best's standard error)" in lines["close_val10k"]
    assert "3 (+0.30 pt) |" in lines["far_val10k"]
    assert "| — |" in lines["dense_ish_val10k"]  # 50x: not ranked, however low its error
    assert "The best at ≥ 280× by its threshold-3 point is `best_val10k`: 0.90 % at 300×" in table


def test_a_knife_edge_pruning_shows_in_the_next_thresholds_compression():
    table = search_table(sweep_of("edge_val10k", 0, 0.9, 288.0, comp35=4.4), "lenet5", 0.75, 280, 10_000)
    assert "| 288× | 4× |" in table


def test_the_lowest_columns_are_minima_over_the_sweep_and_say_so():
    table = search_table(sweep_of("a_val10k", 0, 0.90, 300.0, val_low=0.80), "lenet5", 0.75, 280, 10_000)
    assert "0.80 % at 360× (2.5)" in table and "minima over the" in table and "optimistic" in table


def test_rows_without_validation_errors_make_no_table(tmp_path):
    sweep = [{**p, "val_error": ""} for p in sweep_of("row", 0, 0.9, 300.0)]
    assert search_table(sweep, "lenet5", 0.75, 280, 10_000) == ""
    assert write_search_tables(sweep, yaml.safe_load(PAPER.read_text()), tmp_path) == []
    assert list(tmp_path.iterdir()) == []
    made = write_search_tables(sweep_of("a_val10k", 0, 0.9, 300.0), yaml.safe_load(PAPER.read_text()), tmp_path)
    assert [p.name for p in made] == ["search_lenet5.md"] and "`a_val10k`" in made[0].read_text()


def pruned(row, seed, val, compression, model="lenet300"):
    return {**point(row, seed, None, val, compression), "model": model}


def test_pruned_records_get_their_own_table_ranked_at_equal_compression(tmp_path):
    sweep = [pruned("gmp_erk_val10k", 0, 1.70, 104.0), pruned("gmp_uniform_val10k", 0, 1.95, 103.5),
             pruned("gmp_global_val10k", 0, 1.75, 105.0), pruned("han_val10k", 0, 1.60, 12.0)]
    sweep += [{**p, "model": "lenet300"} for p in sweep_of("vd_val10k", 0, 1.8, 100.0)]
    paper = yaml.safe_load(PAPER.read_text())
    (made,) = write_search_tables(sweep, paper, tmp_path)
    text = made.read_text()
    assert "## Sparse variational dropout and ARD" in text and "## Magnitude pruning" in text
    pruning = text.split("## Magnitude pruning")[1]
    lines = {line.split("`")[1]: line for line in pruning.splitlines() if line.startswith("| `")}
    assert set(lines) == {"gmp_erk_val10k", "gmp_uniform_val10k", "gmp_global_val10k", "han_val10k"}
    assert "| 1 |" in lines["gmp_erk_val10k"] and "| 1 |" in lines["han_val10k"]  # alone at 12x
    assert "2 (+0.05 pt, within the best's standard error)" in lines["gmp_global_val10k"]
    assert "3 (+0.25 pt) |" in lines["gmp_uniform_val10k"]
    assert "vd_val10k" not in pruning and "gmp_erk_val10k" not in text.split("## Magnitude pruning")[0]
