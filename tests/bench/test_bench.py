"""bench.py runs end to end and reports ratios; speed itself is never asserted in tests."""
import json
import re
import os
import subprocess
import sys

import pytest

from sparsevd.bench.training import forward_macs, train_flops_per_step

from conftest import REPO, script
from sparsevd.compress.weights import weights_sha256


def check_targets(targets, run):
    """Each target's verdict agrees with its value and bound, read back from its text; a target of a net
    that did not run has no value and no verdict, and one that ran has both."""
    assert targets
    for t in targets:
        name, op, bound = re.fullmatch(r"(.+) (<=|>=) ([\d.]+)", t["target"]).groups()
        if name.split()[0] not in run or t["value"] is None:
            assert t["value"] is None and t["met"] is None, t
            continue
        assert t["met"] is (t["value"] <= float(bound) if op == "<=" else t["value"] >= float(bound)), t


def test_the_committed_bench_timed_todays_records_and_its_verdicts_follow_its_values():
    committed = json.loads((REPO / "results/bench.json").read_text())
    check_targets(committed["targets"], run={"lenet300", "lenet5"})
    for key, r in committed["inference"].items():  # re-running a record changes its weights: re-run the bench then
        assert r.get("weights_sha256") == weights_sha256(REPO / r["record"]), f"{key}: results/bench.json is stale"


@pytest.mark.parametrize("net", ["lenet300", "lenet5"])
def test_flop_counts_match_torchs_own_count_of_a_training_step(net):
    """The bench's GFLOP/s divides by train_flops_per_step; torch's FlopCounterMode counts the same dense
    step independently (matmuls and convolutions, forward and backward)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sparsevd.core.models import build_model
    model = build_model(net, "dense")
    x = torch.randn(100, 1, 28, 28, requires_grad=False)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), torch.zeros(100, dtype=torch.long)).backward()
    assert train_flops_per_step(net, sparse=False) == pytest.approx(counter.get_total_flops(), rel=0.01)
    with FlopCounterMode(display=False) as forward:
        model(x[:1])
    assert 2 * sum(forward_macs(net).values()) == forward.get_total_flops()


@pytest.mark.slow
def test_bench_smoke_writes_a_complete_report(tmp_path, data_root):
    out = tmp_path / "bench.json"
    readme_before = (REPO / "README.md").read_bytes()
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--nets", "lenet300", "--steps-lenet300", "2",
                           "--repeats", "1", "--inference-repeats", "1", "--out", str(out), "--cli-epochs", "2", "--compile", "false",
                           "--cli-args", "data.train_size=1000", "trainer.compile=false"], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SPARSEVD_DATA": str(data_root), "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    cases = {c["case"]: c for c in report["cases"]}
    assert {"lenet300/reference/dense", "lenet300/ours/dense", "lenet300/ours/sparsevd",
            "lenet300/ours/ard"} <= set(cases)
    assert all(c["s_per_epoch"] > 0 and c["samples_per_s"] > 0 for c in cases.values())
    assert report["eval_lenet300_s"] > 0 and report["matmul_peak_gflops"] > 0
    assert report["machine"]["threads"] >= 1 and report["machine"]["torch"].startswith("2.14.1")
    inference = report["inference"]  # from the committed lenet300_sparsevd record's weights
    assert set(inference) == {"lenet300/1", "lenet300/1000"}
    assert all(r["speedup"] > 0 and r["file_bytes"] > 0 for r in inference.values())
    threads = report["machine"]["threads"]  # onnxruntime in the same interleaved run, with torch's thread count
    assert all(r["onnxruntime_speedup"] > 0 and r["onnx_bytes"] > r["file_bytes"] for r in inference.values())
    assert {(r["threads"], r["onnxruntime_threads"]) for r in inference.values()} == {(threads, threads)}
    assert report["machine"]["onnxruntime"] and report["settings"]["inference_repeats"] == 1
    assert {r["weights_sha256"] for r in inference.values()} == {weights_sha256(REPO / "results/runs/lenet300_sparsevd/seed0")}
    cli = report["cli"]["lenet300_sparsevd"]  # a real scripts/train.py epoch, and its dense row's
    assert cli["s_per_epoch"] > 0 and cli["dense_row_s_per_epoch"] > 0
    check_targets(report["targets"], run={"lenet300"})
    # A bench written elsewhere must not rewrite the README, whose section describes results/bench.json.
    assert (REPO / "README.md").read_bytes() == readme_before


def test_render_rewrites_only_the_bench_section_from_the_json(tmp_path):
    readme, docs = tmp_path / "README.md", tmp_path / "performance.md"
    for page in (readme, docs):
        page.write_text("intro\n<!-- bench:start -->\nstale\n<!-- bench:end -->\nafter\n")
    readme.write_text(readme.read_text() + "<!-- inference:start -->\nstale\n<!-- inference:end -->\nend\n")
    assert script("bench").main(["--render", "--out", str(REPO / "results/bench.json"), "--readme", str(readme),
                                 "--docs", str(docs)]) == 0
    committed = json.loads((REPO / "results/bench.json").read_text())
    for page in (readme, docs):
        text = page.read_text()
        assert text.startswith("intro\n<!-- bench:start -->\n") and text.endswith(
            "<!-- bench:end -->\nafter\n" if page == docs else "<!-- inference:end -->\nend\n")
        assert "stale" not in text and committed["command"] in text
    sparsevd = next(c for c in committed["cases"] if c["case"] == "lenet300/ours/sparsevd")
    assert f"lenet300 SparseVD epoch, x reference dense <= 2.3: {sparsevd['x_reference']:.2f}" in readme.read_text()
    assert f"| {committed['cases'][0]['s_per_epoch']:.2f} |" in docs.read_text()  # the full table is in the docs
    first = next(iter(committed["inference"].values()))  # the inference block beside the export: its table
    assert f"| {first['net']} | {first['batch']} | {first['masked_dense_ms']:.3f} |" in readme.read_text()


@pytest.mark.slow
def test_throughput_runs_processes_side_by_side_and_reports_the_shared_rate(tmp_path, data_root):
    out = tmp_path / "throughput.json"
    proc = subprocess.run([sys.executable, "scripts/throughput.py", "--rows", "lenet300_dense,lenet300_sparsevd",
                           "--runs", "2", "--epochs", "2", "--work", str(tmp_path / "work"), "--out", str(out),
                           "data.train_size=500", "trainer.compile=false", "device=cpu"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SPARSEVD_DATA": str(data_root)})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert [(r["row"], r["seed"]) for r in report["runs"]] == [("lenet300_dense", 0), ("lenet300_sparsevd", 0)]
    rate = sum(1 / r["s_per_epoch"] for r in report["runs"])
    assert report["run_epochs_per_s"] == pytest.approx(rate) and all(r["device"].startswith("cpu") for r in report["runs"])
    assert report["projected_all_runs_s"] == pytest.approx(2 * 200 / rate)
    bad = subprocess.run([sys.executable, "scripts/throughput.py", "--runs", "1", "--epochs", "2",
                          "--work", str(tmp_path / "bad"), "method.threshold=inf"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("error: 1 run(s) failed (lenet300_dense seed 0)")


@pytest.mark.slow
def test_profile_prints_where_one_cases_step_time_goes_and_names_a_wrong_case(capsys):
    cmd = [sys.executable, "scripts/bench.py", "--nets", "lenet300", "--compile", "false", "--profile"]
    ok = subprocess.run([*cmd, "lenet300/reference/dense"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and "aten::addmm" in ok.stdout and "Self CPU" in ok.stdout, ok.stderr
    assert script("bench").main([*cmd[2:], "lenet300/ours/nope"]) == 2  # the refusal, in this process
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lenet300/ours/sparsevd" in err


@pytest.mark.parametrize("net", ["lenet300", "lenet5"])
@pytest.mark.parametrize("method", ["sparsevd", "ard"])
def test_the_bench_builds_each_row_with_its_recipes_layer_options(net, method):
    """The bench's nets are the rows' own: every method.* option the row trains with, and nothing a layer
    does not take (such as magnitude pruning's options)."""
    from sparsevd.bench.training import recipe_options
    from sparsevd.core.models import build_model, svdo_layers

    options = recipe_options(net, method)
    layers = svdo_layers(build_model(net, method, **options))
    assert layers and all(layer.threshold == options["threshold"] for layer in layers)
