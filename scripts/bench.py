"""Time training epochs of our layers against a plain PyTorch reference and pytorch-ard.

    make bench                       # installs pytorch-ard (--no-deps), writes results/bench.json
    python scripts/bench.py --steps-lenet300 100 --steps-lenet5 20 --repeats 5
    python scripts/bench.py --render   # rewrite README's bench section from results/bench.json
    python scripts/bench.py --nets lenet300 --profile lenet300/ours/sparsevd   # where a step's time goes
"""
import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from sparsevd.bench.training import (N_TRAIN, cli_epoch_seconds, eval_seconds, make_cases, matmul_peak_gflops,
                                     peak_memory_mib, profile_table, recipe_options, summarize, time_cases)
from sparsevd.train.device import keep_freed_memory
from sparsevd.core import kernels
from sparsevd.bench.inference import INFERENCE_END, INFERENCE_START, bench_inference, inference_block, inference_table
from sparsevd.compress.onnx import version as onnxruntime_version
from sparsevd.io import atomic_write_json
from sparsevd.records import cpu_name, git_info
from sparsevd.report.tables import update_readme

BENCH_START, BENCH_END = "<!-- bench:start -->", "<!-- bench:end -->"
DEFAULT_OUT = Path("results/bench.json")

TARGETS = [  # (what, the measured value from the summary rows r and extras e, <= or >=, bound)
    ("lenet300 SparseVD epoch, x reference dense", lambda r, e: r["lenet300/ours/sparsevd"]["x_reference"], "<=", 2.3),
    ("lenet300 ARD epoch, x reference dense", lambda r, e: r["lenet300/ours/ard"]["x_reference"], "<=", 2.3),
    ("lenet5 SparseVD epoch, x reference dense", lambda r, e: r["lenet5/ours/sparsevd"]["x_reference"], "<=", 2.0),
    ("lenet5 ARD epoch, x reference dense", lambda r, e: r["lenet5/ours/ard"]["x_reference"], "<=", 2.0),
    ("lenet300 SparseVD epoch of scripts/train.py (evaluation included), x reference dense",
     lambda r, e: e["cli"]["lenet300_sparsevd"]["x_reference"], "<=", 2.3),
    ("lenet5 SparseVD epoch of scripts/train.py (evaluation included), x reference dense",
     lambda r, e: e["cli"]["lenet5_sparsevd"]["x_reference"], "<=", 2.0),
    ("lenet300 exported file, speed-up over the masked dense net at batch 1000",
     lambda r, e: e["inference"]["lenet300/1000"]["speedup"], ">=", 10.0),
    ("lenet300 exported file, speed-up over the masked dense net at batch 1",
     lambda r, e: e["inference"]["lenet300/1"]["speedup"], ">=", 2.0),
    ("lenet5 exported file, speed-up over the masked dense net at batch 1000",
     lambda r, e: e["inference"]["lenet5/1000"]["speedup"], ">=", 3.0),
]
DOCS = Path("docs/performance.md")  # holds the full table; the README a summary


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", default="lenet300,lenet5")
    p.add_argument("--steps-lenet300", type=int, default=100, help="steps per timed block")
    p.add_argument("--steps-lenet5", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5, help="timed blocks per case (after one warm-up)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--readme", default=None,
                   help="README whose bench section to rewrite ('' to skip); default: README.md, but only when "
                        "--out is results/bench.json, so the README always shows the committed measurement")
    p.add_argument("--docs", default=None, help=f"page whose bench section gets the full table ('' to skip); "
                                                 f"default: {DOCS}, only when --out is results/bench.json")
    p.add_argument("--render", action="store_true", help="only rewrite the README section from --out; time nothing")
    p.add_argument("--runs", type=Path, default=Path("results/runs"),
                   help="records whose <net>_sparsevd/seed0 weights the inference section exports and times")
    p.add_argument("--no-inference", action="store_true", help="skip the inference section")
    p.add_argument("--cli-epochs", type=int, default=3,
                   help="epochs of each net's SparseVD row through scripts/train.py on MNIST, timed from the 2nd (0: skip)")
    p.add_argument("--cli-args", nargs="*", default=[], help="extra overrides for those runs")
    p.add_argument("--profile", metavar="CASE", help="print torch.profiler's table for one case of --nets, e.g. "
                                                      "lenet300/ours/sparsevd, and time nothing else")
    p.add_argument("--compile", default="auto", choices=["auto", "true", "false"],
                   help="our layers' per-weight pass through torch.compile, as trainer.compile (default auto)")
    p.add_argument("--inference-repeats", type=int, default=7, help="timed blocks per inference case")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    default = args.out == DEFAULT_OUT
    readme = args.readme if args.readme is not None else "README.md" if default else ""
    docs = args.docs if args.docs is not None else str(DOCS) if default else ""
    if args.render:
        render(json.loads(args.out.read_text()), readme or "README.md", docs)
        return 0
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    if device.type == "cpu":
        keep_freed_memory()
    try:
        import torch_ard  # noqa: F401
        with_ard_lib = True
    except ImportError:
        if not args.profile:  # a profile prints one table, or one error line
            print("pytorch-ard not installed (make bench installs it); skipping its cases", file=sys.stderr)
        with_ard_lib = False
    nets = args.nets.split(",")
    compiled = kernels.use_compiled({"true": True, "false": False}.get(args.compile, "auto"))
    torch.manual_seed(0)
    # MNIST-sized random tensors: the arithmetic does not depend on pixel values.
    x = torch.randn(N_TRAIN, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (N_TRAIN,), device=device)
    recipes = {f"{n}/{m}": recipe_options(n, m) for n in nets for m in ("sparsevd", "ard")}
    cases = make_cases(nets, x, y, device, with_ard_lib, recipes)
    if args.profile:
        case = next((c for c in cases if c.name == args.profile), None)
        if case is None:
            print(f"error: no case {args.profile!r}; choose one of {', '.join(c.name for c in cases)}", file=sys.stderr)
            return 2
        print(profile_table(case, 50))
        return 0
    steps = {"lenet300": args.steps_lenet300, "lenet5": args.steps_lenet5}
    rows = summarize(time_cases(cases, steps, args.repeats, device), nets, device)
    extras = measure_extras(args, nets, x, y, device, rows)
    report = {
        "command": " ".join(["python scripts/bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(device),
        "settings": {"batch": 100, "steps_per_block": steps, "repeats": args.repeats, "compiled": compiled,
                     "pytorch_ard": with_ard_lib, "epoch": "median block time x 600 steps",
                     "inference_repeats": args.inference_repeats},
        "cases": rows, **extras, "targets": targets_met(rows, extras),
    }
    show(report)
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    render(report, readme, docs)
    return 0


def measure_extras(args, nets, x, y, device, rows) -> dict:
    """Everything beside the timed training steps: matmul peak, eval, memory, CLI epochs, inference."""
    extras = {"matmul_peak_gflops": matmul_peak_gflops(device)}
    if "lenet300" in nets:
        extras["eval_lenet300_s"] = eval_seconds(x[:10_000], y[:10_000], device)
    if "lenet5" in nets:
        extras["peak_memory_lenet5_sparsevd_mib"] = peak_memory_mib("lenet5", "sparsevd", str(device))
    if args.cli_epochs >= 2:
        extras["cli"] = cli_epochs(nets, args.cli_epochs, [f"device={device.type}", *args.cli_args], rows)
    if not args.no_inference and device.type == "cpu":
        inference = bench_inference(args.runs, nets, args.inference_repeats, warn=lambda m: print(m, file=sys.stderr))
        extras["inference"] = {f"{r['net']}/{r['batch']}": r for r in inference}
    return extras


def cli_epochs(nets, epochs: int, extra: list[str], rows: list[dict]) -> dict:
    """Each net's SparseVD row through the real entry point, against the reference dense epoch above and
    against its dense row's epoch through the same entry point (both sides in fresh processes)."""
    import tempfile
    ref = {r["net"]: r["s_per_epoch"] for r in rows if r["impl"] == "reference"}
    out = {}
    for net in nets:
        secs = {}
        for row in (f"{net}_sparsevd", f"{net}_dense"):
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    secs[row] = cli_epoch_seconds(row, epochs, extra, Path(tmp) / "run")
                except subprocess.CalledProcessError as exc:
                    last = (exc.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"scripts/train.py could not run ({last}); skipping its epoch timing", file=sys.stderr)
                    return out
        sparse, dense = secs[f"{net}_sparsevd"], secs[f"{net}_dense"]
        out[f"{net}_sparsevd"] = {"s_per_epoch": sparse, "x_reference": sparse / ref[net],
                                  "dense_row_s_per_epoch": dense, "x_dense_row": sparse / dense}
    return out


def _dense_row(name: str, r: dict) -> str:
    if "x_dense_row" not in r:  # reports written before the dense rows were timed too
        return ""
    return f", {r['x_dense_row']:.2f}× the {name.replace('sparsevd', 'dense')} row's epoch, {r['dense_row_s_per_epoch']:.2f} s"


def render(report: dict, readme: str, docs: str) -> None:
    """The README's bench block (a summary) and inference block (beside the export), and
    docs/performance.md's bench block (the full table)."""
    report = {**report, "targets": targets_met(report["cases"], report)}
    if readme and Path(readme).exists():
        update_readme(Path(readme), summary(report), BENCH_START, BENCH_END)
        update_readme(Path(readme), inference_block(report), INFERENCE_START, INFERENCE_END)
    if docs and Path(docs).exists():
        update_readme(Path(docs), markdown(report), BENCH_START, BENCH_END)


def machine(device) -> dict:
    return {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": str(torch.__version__),
            "onnxruntime": onnxruntime_version(),
            "python": platform.python_version(), "git": git_info()}


def targets_met(rows: list[dict], extras: dict) -> list[dict]:
    by_case, out = {r["case"]: r for r in rows}, []
    for name, value, op, bound in TARGETS:
        try:
            v = float(value(by_case, extras))
        except (KeyError, TypeError):
            out.append({"target": f"{name} {op} {bound:g}", "value": None, "met": None})  # case not run
            continue
        out.append({"target": f"{name} {op} {bound:g}", "value": v, "met": v <= bound if op == "<=" else v >= bound})
    return out


def show(report: dict) -> None:
    rows, extras, targets = report["cases"], report, report["targets"]
    print(f"{'case':32s} {'s/epoch':>8s} {'samples/s':>10s} {'x ref':>6s} {'x dense':>8s} {'vs ard':>7s} {'GFLOP/s':>8s}")
    for r in rows:
        vs = f"{r['speedup_vs_pytorch_ard']:.2f}x" if r["speedup_vs_pytorch_ard"] else "-"
        print(f"{r['case']:32s} {r['s_per_epoch']:8.2f} {r['samples_per_s']:10.0f} {r['x_reference']:6.2f} "
              f"{r['x_our_dense']:8.2f} {vs:>7s} {r['gflops']:8.1f}")
    for r in extras.get("inference", {}).values():
        ort = f", onnxruntime {r['onnxruntime_ms']:.3f} ms, {r['onnxruntime_speedup']:.1f}x" if "onnxruntime_ms" in r else ""
        print(f"inference {r['net']} batch {r['batch']:>4}: masked dense {r['masked_dense_ms']:.3f} ms, "
              f"exported {r['exported_ms']:.3f} ms, {r['speedup']:.1f}x{ort} ({r.get('threads', '?')} threads)")
    for name, r in extras.get("cli", {}).items():
        print(f"scripts/train.py {name}: {r['s_per_epoch']:.2f} s/epoch, {r['x_reference']:.2f}x reference dense, "
              f"{r['x_dense_row']:.2f}x its dense row's scripts/train.py epoch ({r['dense_row_s_per_epoch']:.2f} s)")
    print(json.dumps({k: v for k, v in extras.items() if k.startswith(("eval_", "peak_", "matmul_"))}, indent=None))
    for t in targets:
        print(f"  [{ {True: 'met', False: 'NOT met', None: 'not run'}[t['met']] }] {t['target']}: {t['value']}")


def _headline(report: dict) -> str:
    m = report["machine"]
    return (f"`{report['command']}` on {m['device_name']} ({m['device']}, {m['threads']} threads, torch "
            f"{m['torch']}, commit {(m['git']['sha'] or '?')[:7]}, per-weight pass "
            f"{'compiled' if report['settings'].get('compiled') else 'eager'}); our sparse nets with their rows' "
            f"layer options; median of {report['settings']['repeats']} interleaved blocks")


def _targets(report: dict) -> list[str]:
    return [f"- {'✓' if t['met'] else '✗' if t['met'] is False else '—'} {t['target']}: "
            f"{'not run' if t.get('value') is None else format(t['value'], '.2f')}" for t in report["targets"]]


def summary(report: dict) -> str:
    """The README's block: the targets with their measured values, and which records were timed."""
    lines = [_headline(report) + "; training epochs against the reference dense net, and inference of the "
             "exported files against the masked dense nets (full table: docs/performance.md):", ""]
    return "\n".join(lines + _targets(report) + [""] + _timed_records(report)) + "\n"


def _timed_records(report: dict) -> list[str]:
    """Which records' exported files the inference timings are of, so a re-run record shows them stale."""
    seen = {}
    for r in report.get("inference", {}).values():
        seen.setdefault(r["record"], r)
    if not seen:
        return []
    return ["Inference timed on the default export of " + "; ".join(
        f"`{rec}` ({r['file_bytes']:,} bytes, weights sha256 {r.get('weights_sha256', 'not recorded')[:12]})"
        for rec, r in seen.items()) + "."]


def markdown(report: dict) -> str:
    """docs/performance.md's block: every case, straight from bench.json."""
    lines = [_headline(report) + ", scaled to a 600-step epoch:", "",
             "| case | s/epoch | samples/s | × reference dense | × our dense | speed-up vs pytorch-ard | GFLOP/s |",
             "|---|---|---|---|---|---|---|"]
    for r in report["cases"]:
        vs = f"{r['speedup_vs_pytorch_ard']:.2f}×" if r["speedup_vs_pytorch_ard"] else "—"
        lines.append(f"| {r['case']} | {r['s_per_epoch']:.2f} | {r['samples_per_s']:.0f} | {r['x_reference']:.2f} | "
                     f"{r['x_our_dense']:.2f} | {vs} | {r['gflops']:.1f} |")
    lines += ["", f"Measured matmul peak: {report['matmul_peak_gflops']:.0f} GFLOP/s. "
              f"LeNet-300-100 evaluation on 10k images: {report.get('eval_lenet300_s', float('nan')):.3f} s. "
              f"LeNet-5 SparseVD peak memory: {report.get('peak_memory_lenet5_sparsevd_mib', float('nan')):.0f} MiB.", ""]
    if report.get("cli"):
        lines += ["Real epochs of `scripts/train.py` on MNIST (data, steps, evaluation and checkpoint; epoch 1 left "
                  "out): " + "; ".join(f"{name} {r['s_per_epoch']:.2f} s ({r['x_reference']:.2f}× the reference dense "
                                       f"epoch above{_dense_row(name, r)})" for name, r in report["cli"].items()) + ".",
                  "", "The reference dense epoch is timed inside this process and the rows' epochs in fresh ones, so a "
                  "machine that runs one kind slower than the other moves the first ratio; the second compares two "
                  "epochs of `scripts/train.py`.", ""]
    if report.get("inference"):
        lines += ["Inference on CPU (`torch.inference_mode`), the masked dense net against its default export, and "
                  "that export's network as ONNX in onnxruntime (as many intra-op threads as torch):", ""]
    table = inference_table(list(report.get("inference", {}).values()))
    return "\n".join(lines + table + _timed_records(report) + [""] + _targets(report)) + "\n"


if __name__ == "__main__":
    sys.exit(main())
