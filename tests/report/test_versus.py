"""The generated comparison of SparseVD with magnitude pruning trained in the same harness."""
from sparsevd.report.versus import versus_sentence


def row(name, seed, threshold, error, compression, method, **extra):
    return {"row": name, "seed": seed, "threshold": threshold, "test_error": error, "compression": compression,
            "model": "lenet300", "dataset": "mnist", "labels": "original", "method": method, **extra}


def sweeps():
    vd = [row("lenet300_sparsevd", s, t, e + 0.1 * s, c, "sparsevd") for s in (0, 1)
          for t, e, c in ((2.0, 1.70, 90.0), (3.0, 1.80, 100.0), (-1.0, 2.60, 200.0))]
    gmp = [row("lenet300_gmp", s, None, 2.5 + 0.2 * s, 104.0, "pruning") for s in (0, 1)]
    curve = [row("lenet300_gmp_20x", 0, None, 1.75, 20.0, "pruning"),
             row("lenet300_gmp_500x", 0, None, 6.0, 500.0, "pruning"),
             row("lenet300_pruning", 0, None, 1.65, 12.0, "pruning")]
    search = [row("lenet300_gmp_val10k", 0, None, 1.0, 300.0, "pruning", val_error=1.0)]  # left out
    return vd + gmp + curve + search


def test_the_sentence_compares_at_equal_compression_with_the_seed_spread():
    text = versus_sentence("lenet300", sweeps())
    assert "SparseVD errs 1.85 ± 0.07 % at 100× (2 seeds, threshold 3)" in text
    assert "gradual magnitude pruning 2.60 ± 0.14 % at 104× (2 seeds)" in text
    # the gap against sqrt(0.0707²/2 + 0.1414²/2) = 0.11 pt, its standard error: 6.7 of them
    assert "a gap of +0.75 pt for pruning, 6.7 standard errors of the difference of the means (0.11 pt)" in text


def test_a_gap_within_two_standard_errors_is_called_level():
    sweep = [r for r in sweeps() if r["row"] != "lenet300_gmp"]
    sweep += [row("lenet300_gmp", s, None, e, 104.0, "pruning") for s, e in ((0, 1.6), (1, 2.3))]  # 1.95 ± 0.49
    assert ("a gap of +0.10 pt for pruning, within two standard errors of the difference of the means (0.35 pt): "
            "level on these seeds" in versus_sentence("lenet300", sweep))


def test_the_sentence_compares_compression_at_equal_error_both_ways():
    text = versus_sentence("lenet300", sweeps())
    # pruning's most compressed row at or under SparseVD's 1.85 %: the 20x row, not the 1.0 % search record
    assert "at SparseVD's 1.85 % magnitude pruning reaches 20× at most (lenet300_gmp_20x, 1.75 %)" in text
    # SparseVD's seed-mean sweep at or under pruning's 2.60 %: threshold 3 (100x, 1.85 %); -1 is 2.65 %
    assert "at pruning's 2.60 % SparseVD's seed-mean sweep reaches 100× (threshold 3, 1.85 %)" in text


def test_without_both_rows_the_sentence_says_what_is_missing():
    only_vd = [r for r in sweeps() if r["method"] == "sparsevd"]
    assert "no SparseVD and gradual-pruning records" in versus_sentence("lenet300", only_vd)
    assert "no SparseVD and gradual-pruning records" in versus_sentence("lenet5", sweeps())


def test_a_sweep_that_stays_under_the_error_says_it_would_reach_further():
    sweep = [r for r in sweeps() if r["row"] != "lenet300_gmp"]
    sweep += [row("lenet300_gmp", s, None, 3.0, 104.0, "pruning") for s in (0, 1)]  # above all of SparseVD's sweep
    assert "reaches at least 200×, its most compressed point (threshold -1, 2.65 %)" in versus_sentence("lenet300", sweep)


def test_one_seed_is_one_seed():
    one = [r for r in sweeps() if not (r["row"] == "lenet300_gmp" and r["seed"] == 1)]
    text = versus_sentence("lenet300", one)
    assert "gradual magnitude pruning 2.50 % at 104× (1 seed), a gap of +0.65 pt for pruning (one side has a single seed: no standard error" in text
