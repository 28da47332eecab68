"""The README's code runs as printed: the own-model snippet on a tiny net, and the loading lines (torch, onnxruntime)."""
import re

import torch
from torch import nn

import sparsevd

from conftest import REPO

README = (REPO / "README.md").read_text()


def python_block(after: str) -> str:
    section = README[README.index(after):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_own_model_snippet_runs_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    namespace = {"torch": torch, "epochs": 2, "dataset": x,
                 "my_trained_model": nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)),
                 "loader": [(x[:32], y[:32]), (x[32:], y[32:])]}
    exec(python_block("## Use it in your own model"), namespace)
    assert sparsevd.load(tmp_path / "mine.svd")(x).shape == (64, 10)  # the file it wrote is a working net


def test_the_loading_snippet_runs_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = sparsevd.sparsify(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))
    sparsevd.export(net, "lenet300.svd")
    namespace = {"images": torch.rand(3, 1, 28, 28)}
    exec(python_block("## Get the compressed model"), namespace)
    assert namespace["logits"].shape == (3, 10)


def test_the_onnx_snippet_runs_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = sparsevd.sparsify(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))
    sparsevd.export(net, "net.onnx", format="onnx")
    sparsevd.export(net, "net.svd")
    images = torch.rand(3, 1, 28, 28)
    namespace = {"images": images.numpy()}
    exec(python_block("**As ONNX**"), namespace)
    torch.testing.assert_close(torch.from_numpy(namespace["logits"]), sparsevd.load("net.svd")(images), rtol=0, atol=1e-4)
