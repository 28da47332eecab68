"""The report on fabricated records: cells, mean/std, delta, marks, missing and corrupt rows."""
import csv
import io
import json
import shutil
import subprocess
import sys

import pytest

from sparsevd.report.table_files import render_csv, write_report
from sparsevd.report.tables import README_END, README_START, build_rows, load_paper, load_records, render_markdown
from sparsevd.report.from_wandb import records_from_wandb

from conftest import PAPER, REPO, fake_record, made_up_timing, script


@pytest.fixture
def runs(tmp_path):
    r = tmp_path / "runs"
    fake_record(r, "lenet300_sparsevd", 0, 1.80, 70.0, [99.0, 97.0, 60.0])
    fake_record(r, "lenet300_sparsevd", 1, 1.90, 80.0, [99.2, 97.4, 64.0])
    fake_record(r, "lenet300_sparsevd", 2, 2.00, 90.0, [99.4, 97.8, 68.0])
    fake_record(r, "lenet300_dense", 0, 1.80, 1.0, [0.0, 0.0, 0.0])
    fake_record(r, "lenet300_dense", 1, 1.80, 1.0, [0.0, 0.0, 0.0])
    fake_record(r, "lenet300_ard", 0, 1.95, 50.0, [98.0, 95.0, 50.0])
    return r


def table_line(md, network, method):
    return next(line for line in md.splitlines() if line.startswith(f"| {network} | {method} |"))


def test_cells_means_std_delta_and_marks(runs):
    paper = load_paper(PAPER)
    md = render_markdown(build_rows(load_records(runs), paper), paper)
    svd = table_line(md, "LeNet-300-100", "SparseVD").split(" | ")
    assert svd[2:4] == ["3", "200"]                  # seeds, epochs
    assert svd[5] == "1.90 ± 0.10" and svd[6] == "-0.02"   # mean ± sample std, delta vs 1.92
    assert svd[8] == "99.2-97.4-64.0"                # mean per-layer sparsity
    assert svd[10] == "80× ± 10" and svd[11].startswith("✓")
    # meets target: dense 1.80 > 1.70 fails; ARD 1.95 > 1.92 fails
    assert table_line(md, "LeNet-300-100", "original").split(" | ")[11].startswith("✗")
    assert table_line(md, "LeNet-300-100", "original").split(" | ")[10] == "1×"  # a dense net has no spread
    assert table_line(md, "LeNet-300-100", "ARD").split(" | ")[11].startswith("✗")
    # rows without runs are dashes, not crashes
    assert table_line(md, "LeNet-5-Caffe", "SparseVD").split(" | ")[2] == "—"
    assert "Quick run" not in md


def test_short_runs_are_never_averaged_with_full_ones(runs):
    fake_record(runs, "lenet300_sparsevd", 3, 9.0, 2.0, [10.0, 10.0, 10.0], epochs=1)
    warnings = []
    rows = {r.key: r for r in build_rows(load_records(runs), load_paper(PAPER), warn=warnings.append)}
    assert rows["lenet300_sparsevd"].n == 3 and rows["lenet300_sparsevd"].mean("test_error") == pytest.approx(1.9)
    assert len(warnings) == 1 and "shorter than 200 epochs" in warnings[0]


def test_quick_runs_are_labelled(tmp_path):
    fake_record(tmp_path, "lenet5_dense", 0, 3.0, 1.0, [0, 0, 0], epochs=1)
    paper = load_paper(PAPER)
    md = render_markdown(build_rows(load_records(tmp_path), paper), paper)
    assert md.startswith("> **Quick run (1 epoch instead of 200)")


def test_a_row_whose_recipe_is_shorter_is_not_a_quick_run(tmp_path):
    paper = load_paper(PAPER)
    assert paper["rows"]["lenet300_ard_talk"]["epochs"] == 100
    fake_record(tmp_path, "lenet300_ard_talk", 0, 1.6, 17.0, [95.0, 90.0, 38.0], epochs=100)
    md = render_markdown(build_rows(load_records(tmp_path), paper), paper)
    assert "Quick run" not in md and "| LeNet-300-100 | ARD (the talk's recipe) | 1 | 100 |" in md
    fake_record(tmp_path, "lenet300_ard_talk", 1, 1.6, 17.0, [95.0, 90.0, 38.0], epochs=2)
    rows = build_rows(load_records(tmp_path), paper, warn=lambda m: None)
    assert [r.epochs() for r in rows if r.key == "lenet300_ard_talk"] == [[100]]  # the smoke run is left out


def test_corrupt_and_partial_records_are_skipped_and_named(runs):
    bad = runs / "lenet5_sparsevd" / "seed0"
    bad.mkdir(parents=True)
    (bad / "final.json").write_text('{"metrics": {"test_error": 0.7')   # half-written
    partial = runs / "lenet5_ard" / "seed0"
    partial.mkdir(parents=True)
    (partial / "final.json").write_text('{"metrics": {}, "config": {}}')
    no_seed = fake_record(runs, "lenet5_dense", 0, 0.8, 1.0, [0, 0, 0])
    final = json.loads((no_seed / "final.json").read_text())
    del final["seed"]
    (no_seed / "final.json").write_text(json.dumps(final))
    no_epoch = fake_record(runs, "lenet5_dense", 1, 0.8, 1.0, [0, 0, 0])
    final = json.loads((no_epoch / "final.json").read_text())
    del final["metrics"]["epoch"]
    (no_epoch / "final.json").write_text(json.dumps(final))
    warnings = []
    records = load_records(runs, warn=warnings.append)
    assert not {"lenet5_sparsevd", "lenet5_ard", "lenet5_dense"} & set(records)
    assert len(warnings) == 4 and any(str(bad / "final.json") in w for w in warnings)
    assert any("seed" in w for w in warnings) and any("metrics.epoch" in w for w in warnings)
    before = (bad / "final.json").read_text()
    write_report(records, load_paper(PAPER), runs.parent / "out")
    assert (bad / "final.json").read_text() == before     # the report never touches records


@pytest.mark.slow
def test_script_writes_tables_figures_and_readme_and_is_idempotent(runs, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\n<!-- walltime:start -->\nold\n<!-- walltime:end -->\n"
                      "after\n")
    timing = tmp_path / "reproduce_timing.json"
    timing.write_text(json.dumps(made_up_timing()))
    out = tmp_path / "out"
    cmd = [sys.executable, "scripts/report.py", "--runs", str(runs), "--out", str(out), "--readme", str(readme),
           "--timing", str(timing)]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    first = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {"table.md", "table.csv", "table.tex", "curves.png", "sparsity.png",
            "log_alpha_lenet300_sparsevd.png", "input_mask_lenet300_sparsevd.png"} <= set(first)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "old" not in text
    assert "1.90 ± 0.10" in text
    assert "**1.50×** as fast (`make reproduce-timing`" in text  # the wall-time block from the timing file
    assert "Runs (wall time" not in text and "Runs (wall time" in (out / "table.md").read_text()  # README: table only
    csv = (out / "table.csv").read_text().splitlines()
    assert csv[2].startswith("lenet300_sparsevd,LeNet-300-100,SparseVD,3,200,1.92,1.9,0.1,68,80.0,10.0,")
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == first
    timing.write_text("{}")  # a broken measurement: one line, and nothing rewritten
    assert script("report").main(cmd[2:]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run make reproduce-timing again" in err and readme.read_text() == text


def test_records_from_wandb_api_runs():
    class Run:   # the three attributes of wandb.apis.public.Run that the report reads
        def __init__(self, group, seed, err):
            self.group, self.url = group, f"https://wandb.ai/x/{seed}"
            self.config = {"seed": seed, "name": group}
            self.summary = {"final/test/error": err, "final/test/compression": 70.0, "final/epoch": 200,
                            "final/test/sparsity/fc1": 99.0, "final/test/sparsity/fc2": 97.0,
                            "final/test/sparsity/fc3": 60.0}

    crashed = Run("lenet300_ard", 0, 1.0)
    crashed.summary = {}                       # a run that died before its summary was written
    records = records_from_wandb([Run("lenet300_sparsevd", 0, 1.8), Run("lenet300_sparsevd", 1, 2.0), crashed])
    assert "lenet300_ard" not in records
    rows = {r.key: r for r in build_rows(records, load_paper(PAPER))}
    assert rows["lenet300_sparsevd"].n == 2 and rows["lenet300_sparsevd"].mean("test_error") == pytest.approx(1.9)


@pytest.mark.slow
def test_make_reproduce_trains_into_outputs_and_tables_beside_the_committed_records(tmp_path, data_root):
    """The real pipeline: Hydra multirun of two rows, one epoch, 2000 examples, then the report and the
    comparison; nothing tracked changes, and a second run finds the finished records instead of redoing them."""
    import os

    env = {**os.environ, "SPARSEVD_DATA": str(data_root), "WANDB_MODE": "disabled"}
    status = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    cmd = ["make", "reproduce", "ROWS=lenet300_dense,lenet300_sparsevd", "EPOCHS=1", f"REPRO={tmp_path}",
           "EXTRA=data.train_size=2000 trainer.compile=false"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    record = tmp_path / "runs" / "lenet300_sparsevd" / "seed0"
    assert {"final.json", "metrics.jsonl", "config.yaml", "arrays.npz", "weights.safetensors"} <= {
        p.name for p in record.iterdir()}
    final = json.loads((record / "final.json").read_text())
    assert final["metrics"]["epoch"] == 1 and final["config"]["data"]["train_size"] == 2000
    # by default the rows train side by side, each held to THREADS=1, and the record says so
    assert final["config"]["trainer"]["threads"] == 1 and final["environment"]["threads"] == 1
    assert "Joblib.Parallel(n_jobs=" in proc.stdout + proc.stderr
    md = (tmp_path / "table.md").read_text()
    row = table_line(md, "LeNet-300-100", "SparseVD").split(" | ")
    assert row[2:4] == ["1", "1"] and float(row[5]) == pytest.approx(final["metrics"]["test_error"], abs=0.005)
    assert md.startswith("> **Quick run")
    comparison = (tmp_path / "comparison.md").read_text()
    line = next(x for x in comparison.splitlines() if x.startswith("| LeNet-300-100 | SparseVD |"))
    assert f"| {final['metrics']['test_error']:.2f} |" in line and "| 1.92 |" in line and "| 3 / 1 |" in line
    assert subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                          text=True).stdout == status
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "record exists" in again.stdout
    assert json.loads((record / "final.json").read_text()) == final


def test_runs_table_names_each_segment_device_commit_and_wall_time(runs):
    final_path = runs / "lenet300_sparsevd" / "seed1" / "final.json"
    final = json.loads(final_path.read_text())
    gpu = {"device": "cuda", "device_name": "NVIDIA H100", "torch": "2.11.0", "git": {"sha": "a" * 40, "dirty": False}}
    cpu = {"device": "cpu", "device_name": "AMD EPYC", "torch": "2.14.1", "git": {"sha": "b" * 40, "dirty": True}}
    final.update(wall_time=1500.0, environment=cpu,
                 segments=[{**gpu, "from_epoch": 0}, {**gpu, "from_epoch": 120}, {**cpu, "from_epoch": 175}])
    final_path.write_text(json.dumps(final))
    same_path = runs / "lenet300_sparsevd" / "seed2" / "final.json"
    same = json.loads(same_path.read_text())
    same.update(segments=[{**gpu, "from_epoch": 0}, {**gpu, "from_epoch": 159}])
    same_path.write_text(json.dumps(same))
    paper = load_paper(PAPER)
    md = render_markdown(build_rows(load_records(runs), paper), paper)
    resumed_in_place = next(x for x in md.splitlines() if x.startswith("| lenet300_sparsevd | 2 |"))
    assert resumed_in_place.endswith("| NVIDIA H100 (cuda, torch 2.11.0) | aaaaaaa |")  # one machine: no epoch ranges
    line = next(x for x in md.splitlines() if x.startswith("| lenet300_sparsevd | 1 |"))
    assert "| 1.90 | 80.0× | 25 min |" in line
    assert ("from epoch 1: NVIDIA H100 (cuda, torch 2.11.0); from epoch 176: AMD EPYC (cpu, torch 2.14.1)"
            in line)  # the GPU->GPU resume at epoch 121 is one hardware entry, not two
    assert line.endswith("from epoch 1: aaaaaaa; from epoch 176: bbbbbbb+dirty |")
    bare = next(x for x in md.splitlines() if x.startswith("| lenet300_sparsevd | 0 |"))
    assert bare.endswith("| — | — | — |")  # no wall time, hardware or commit recorded: dashes, not guesses


def test_meets_target_checks_error_compression_sparsity_and_seed_count(runs):
    paper = load_paper(PAPER)
    md = render_markdown(build_rows(load_records(runs), paper), paper)
    last = {m: table_line(md, "LeNet-300-100", m).rstrip(" |").split(" | ")[-1] for m in ("SparseVD", "original", "ARD")}
    assert last == {"SparseVD": "✓", "original": "✗ (2/3 seeds)", "ARD": "✗ (1/3 seeds)"}
    # The CSV keeps the count too, so a verdict on too few seeds reads as provisional there as well.
    lines = list(csv.DictReader(io.StringIO(render_csv(build_rows(load_records(runs), paper), paper))))
    ard = next(r for r in lines if r["row"] == "lenet300_ard")
    assert (ard["seeds"], ard["meets_target"], ard["target_seeds"]) == ("1", "no", "3")
    assert next(r for r in lines if r["row"] == "fashion_lenet300_sparsevd")["target_seeds"] == ""  # no target
    assert "lenet5_sparsevd error ≤ 0.80 %, ≥ 280×, 3 seeds" in md and "lenet5_ard error ≤ 0.75 %, ≥ 196×" in md
    # One layer below the paper's sparsity is enough to miss, even with error and compression met.
    for seed in range(3):
        path = runs / "lenet300_sparsevd" / f"seed{seed}" / "final.json"
        final = json.loads(path.read_text())
        final["metrics"]["sparsity"]["fc3"] = 61.0
        path.write_text(json.dumps(final))
    md = render_markdown(build_rows(load_records(runs), paper), paper)
    assert table_line(md, "LeNet-300-100", "SparseVD").rstrip(" |").split(" | ")[-1] == "✗"


def test_variant_records_get_their_own_runs_list_and_stay_out_of_the_table(runs, tmp_path):
    fake_record(runs, "lenet300_dense_wd", 10, 1.56, 1.0, [0.0, 0.0, 0.0], epochs=100)  # globbed before seed2
    fake_record(runs, "lenet300_dense_wd", 2, 1.61, 1.0, [0.0, 0.0, 0.0])
    paper = load_paper(PAPER)
    rows = write_report(load_records(runs), paper, tmp_path)
    md = (tmp_path / "table.md").read_text()
    assert table_line(md, "LeNet-300-100", "original").split(" | ")[2] == "2"  # the row keeps only its own seeds
    head, variants = md.split("Variants:")
    assert "lenet300_dense_wd" not in head
    lines = [x for x in variants.splitlines() if x.startswith("| lenet300_dense_wd |")]
    # seed order, each record's own numbers, and a shorter variant says how long it ran
    assert [x.split(" | ")[1:4] for x in lines] == [["2", "200", "1.61"], ["10", "100", "1.56"]]
    assert "| lenet300_sparsevd |" not in variants  # Table 1 rows are never listed as variants
    assert "Val. error" not in md  # no record held out a validation split
    assert all(r.key != "lenet300_dense_wd" for r in rows)
    # the CSV has them too, after the rows, marked as variants, with the network of the rows on their net
    for d in [*(runs / "lenet300_dense_wd").glob("seed*"), *(runs / "lenet300_dense").glob("seed*")]:
        final = json.loads((d / "final.json").read_text())
        final["config"] |= {"model": {"name": "lenet300"}, "data": {"name": "mnist"}}
        (d / "final.json").write_text(json.dumps(final))
    write_report(load_records(runs), paper, tmp_path)
    table = list(csv.DictReader(io.StringIO((tmp_path / "table.csv").read_text())))
    assert {r["kind"] for r in table[:-1]} == {"row"} and len(table) == len(rows) + 1
    assert {k: table[-1][k] for k in ("row", "network", "method", "seeds", "epochs", "error_mean", "kind")} == {
        "row": "lenet300_dense_wd", "network": "LeNet-300-100", "method": "dense", "seeds": "2", "epochs": "100,200",
        "error_mean": "1.585", "kind": "variant"}
    shutil.rmtree(runs / "lenet300_dense_wd")
    write_report(load_records(runs), paper, tmp_path)
    assert "Variants:" not in (tmp_path / "table.md").read_text()


def test_variants_with_a_validation_split_show_their_validation_error(runs, tmp_path):
    d = fake_record(runs, "lenet5_sparsevd_val10k", 0, 0.85, 290.0, [80.0, 98.0, 99.8])
    final = json.loads((d / "final.json").read_text())
    final["metrics"]["val_error"] = 0.93
    (d / "final.json").write_text(json.dumps(final))
    fake_record(runs, "lenet300_dense_wd", 0, 1.61, 1.0, [0.0, 0.0, 0.0])
    write_report(load_records(runs), load_paper(PAPER), tmp_path)
    variants = (tmp_path / "table.md").read_text().split("Variants:")[1].splitlines()
    header = next(x for x in variants if x.startswith("| Variant |")).split(" | ")
    val = header.index("Val. error %")
    assert header[val - 1] == "Error %"
    cells = {x.split(" | ")[0][2:]: x.split(" | ") for x in variants if x.startswith("| lenet")}
    assert cells["lenet5_sparsevd_val10k"][val] == "0.93" and cells["lenet5_sparsevd_val10k"][val - 1] == "0.85"
    assert cells["lenet300_dense_wd"][val] == "—"


def test_the_pruning_rows_show_hans_numbers_a_verdict_and_both_trainings(tmp_path):
    for seed, error in enumerate((1.55, 1.60, 1.58)):
        d = fake_record(tmp_path, "lenet300_pruning", seed, error, 12.5, [92.0, 91.0, 74.0], epochs=40)
        final = json.loads((d / "final.json").read_text())
        final["config"]["method"] = {"name": "pruning"}
        final["init_from"] = {"epoch": 200, "identity": {"model": "lenet300", "method": "dense", "data": "mnist"}}
        (d / "final.json").write_text(json.dumps(final))
    paper = load_paper(PAPER)
    md = render_markdown(build_rows(load_records(tmp_path), paper), paper)
    cells = table_line(md, "LeNet-300-100", "Pruning").split(" | ")
    assert cells[2:5] == ["3", "40 (+200 dense)", "1.59"]  # its own epochs and the dense run's it started from
    assert cells[9] == "12×" and cells[11].startswith("✓")  # Han et al.'s 1.59 % at 12x: mean 1.58 % at 12.5x
    assert "| lenet300_pruning | 0 | 40 (+200 dense) | 1.55 |" in md and "Quick run" not in md
    assert table_line(md, "LeNet-5-Caffe", "Pruning").split(" | ")[4] == "0.77"
    assert table_line(md, "LeNet-300-100", "Gradual magnitude pruning").split(" | ")[2] == "—"
