"""The ONNX export: onnxruntime runs each sparse Table 1 record's network and predicts what its compact
file predicts, on the whole test set; the graph is the shrunk one, its batch axis dynamic; a missing
extra is one line."""
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from sparsevd.compress.deploy import LOSSLESS, export_record, records_with_weights
from sparsevd.compress.export import ExportError, export
from sparsevd.compress.onnx import INPUT, OnnxNet, plain_net
from sparsevd.compress.reader import load
from sparsevd.compress.weights import load_record
from sparsevd.data import raw_input

from conftest import REPO, record_id, slow_after_first

RUNS = REPO / "results" / "runs"
TABLE1 = ("lenet300_sparsevd", "lenet300_ard", "lenet5_sparsevd", "lenet5_ard")
RECORDS = records_with_weights(RUNS, rows=TABLE1)
_TEST_SETS: dict[str, tuple] = {}


def mnist_test_set(data_cfg: dict) -> tuple:
    """(scale, mean, raw test images, labels) of a record's data config, read once per module and config."""
    key = json.dumps(data_cfg, sort_keys=True)
    if key not in _TEST_SETS:
        _TEST_SETS[key] = raw_input(data_cfg)
    return _TEST_SETS[key]


def exported_pair(folder, tmp_path, **kwargs):
    """The record's compact file and its ONNX file, with the same options; and its test set."""
    model, cfg = load_record(folder)
    scale, mean, u, y = mnist_test_set(cfg["data"])
    export(model, tmp_path / "net.svd", scale=scale, mean=mean, **kwargs)
    export(model, tmp_path / "net.onnx", format="onnx", scale=scale, mean=mean, **kwargs)
    return tmp_path / "net.svd", tmp_path / "net.onnx", u, y


def test_every_table1_row_has_a_record_to_check():
    assert {f.parent.name for f in RECORDS} == set(TABLE1)


@pytest.mark.parametrize("folder", slow_after_first(RECORDS, ids=record_id))
def test_onnxruntime_predicts_what_the_compact_file_predicts(tmp_path, folder, data_root):
    svd, graph, u, _ = exported_pair(folder, tmp_path)
    with torch.inference_mode():
        want = load(svd)(u)
    got = OnnxNet(graph, threads=1)(u)
    assert got.shape == want.shape == (10_000, 10)
    assert torch.equal(got.argmax(1), want.argmax(1))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("row", ["lenet300_sparsevd", "lenet5_sparsevd"])
def test_the_graph_is_the_shrunk_network_with_a_dynamic_batch_axis(tmp_path, row, data_root):
    import onnx
    from onnx import numpy_helper

    svd, graph, u, _ = exported_pair(RUNS / row / "seed0", tmp_path)
    proto = onnx.load(graph)
    (images,) = proto.graph.input
    batch = images.type.tensor_type.shape.dim[0]
    assert images.name == INPUT and batch.dim_param and not batch.HasField("dim_value")
    # its weights are the compact file's, dense in the compact file's shrunk shapes
    stored = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    want = {f"{i}.{k}": b for i, m in enumerate(plain_net(svd)) for k, b in m.named_buffers()
            if k in ("weight", "bias", "mean")}
    assert {k: v.shape for k, v in stored.items() if k in want} == {k: tuple(v.shape) for k, v in want.items()}
    assert all(torch.equal(torch.from_numpy(stored[k].copy()), v) for k, v in want.items() if k.endswith(".weight"))
    assert {n.op_type for n in proto.graph.node} <= {"Sub", "Conv", "Relu", "MaxPool", "Reshape", "Flatten", "Gather", "Gemm"}
    net, fast = OnnxNet(graph, threads=1), load(svd)
    for n in (1, 7):
        torch.testing.assert_close(net(u[:n]), fast(u[:n]), rtol=0, atol=1e-4)


def test_a_lossless_onnx_file_has_exactly_the_records_error(tmp_path, data_root):
    folder = RUNS / "lenet5_sparsevd" / "seed0"
    got = export_record(folder, tmp_path / "net.onnx", LOSSLESS, format="onnx")
    final = json.loads((folder / "final.json").read_text())["metrics"]
    assert got["test_error"] == final["test_error"] and got["bytes"] == (tmp_path / "net.onnx").stat().st_size


@pytest.mark.parametrize("missing", ["onnx", "onnxscript", "onnxruntime"])
def test_a_missing_extra_is_one_line_naming_the_install(tmp_path, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if it were not installed
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(ExportError) as err:
        if missing == "onnxruntime":
            OnnxNet(tmp_path / "net.onnx")
        else:
            export(net, tmp_path / "net.onnx", format="onnx")
    assert "pip install 'sparsevd[onnx]'" in str(err.value) and repr(missing) in str(err.value)
    assert "\n" not in str(err.value) and not (tmp_path / "net.onnx").exists()


@pytest.mark.slow
def test_export_cli_writes_onnx_and_a_missing_extra_is_one_line(tmp_path, data_root):
    record, out = str(RUNS / "lenet300_sparsevd" / "seed0"), tmp_path / "net.onnx"
    env = {**os.environ, "SPARSEVD_DATA": str(data_root)}
    ok = subprocess.run([sys.executable, "scripts/export.py", record, "--out", str(out), "--format", "onnx"],
                        cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert ok.returncode == 0, ok.stderr
    assert f"{out.stat().st_size:,} bytes" in ok.stdout and "(onnxruntime)" in ok.stdout
    without = ("import runpy, sys; sys.modules['onnxscript'] = None; sys.argv = sys.argv[1:]; "
               "runpy.run_path('scripts/export.py', run_name='__main__')")
    bad = subprocess.run([sys.executable, "-c", without, "scripts/export.py", record, "--out",
                          str(tmp_path / "x" / "bad.onnx"), "--format", "onnx"], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: "), bad.stderr
    assert "pip install 'sparsevd[onnx]'" in bad.stderr and not (tmp_path / "x").exists()


def test_an_unknown_format_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ExportError, match="format='tflite'; use one of svd, onnx"):
        export(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), tmp_path / "net.tflite", format="tflite")
    assert not (tmp_path / "net.tflite").exists()
