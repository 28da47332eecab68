"""The exported file: exact when lossless, small, fast structure, and one clear line when it is bad."""
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn

from sparsevd.compress.reader import CSRLinear, DenseLinear, ExportFormatError, Gather, load
from sparsevd.compress.export import LOSSLESS, STAGES, ExportError, ExportOptions, export, export_bytes
from sparsevd.core.models import build_model, svdo_layers

from test_weights import trained_like

from conftest import REPO  # noqa: E402
SCALE = 255 / 256


def mean_image():
    return torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(1)) * 0.4


def reference(model, u):
    with torch.no_grad():
        return model(SCALE * u - mean_image())


@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
@pytest.mark.parametrize("mode", ["auto", "dense", "csr"])
def test_lossless_export_reproduces_the_masked_model(tmp_path, name, mode):
    model = trained_like(name)
    export(model, tmp_path / "net.svd", scale=SCALE, mean=mean_image(), options=LOSSLESS)
    net = load(tmp_path / "net.svd", mode)
    # 100: the transposed plan, where sparse layers take the CSR product; 301: convolutions in chunks
    for batch in (1, 7, 100, 301):
        u = torch.rand(batch, 1, 28, 28)
        got = net(u)
        assert isinstance(got, torch.Tensor) and got.shape == (batch, 10) and got.is_contiguous()
        torch.testing.assert_close(got, reference(model, u), rtol=0, atol=1e-4)
    net.double()  # moving the module rebuilds the plan from the moved tensors
    torch.testing.assert_close(net(u.double()).float(), reference(model, u), rtol=0, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,shape", [(2, 2, (9, 13, 24, 24)), (3, 2, (5, 4, 13, 12)), (3, 3, (64, 3, 11, 14)),
                                                  (2, 1, (40, 8, 9, 9)), (2, 2, (1, 3, 8, 8))])
def test_max_pooling_gives_exactly_torchs_values(kernel, stride, shape):
    from sparsevd.compress.reader import MaxPool
    x = torch.randn(shape)
    assert torch.equal(MaxPool(kernel, stride)(x), torch.nn.functional.max_pool2d(x, kernel, stride))


def test_every_stage_is_smaller_and_quantization_stays_close(tmp_path):
    model = trained_like("lenet5")
    sizes = [len(export_bytes(model, scale=SCALE, mean=mean_image(), options=o))
             for o in (*STAGES.values(), ExportOptions(bits=4))]
    assert sizes[0] > sizes[1] > sizes[2]
    export(model, tmp_path / "q.svd", scale=SCALE, mean=mean_image(), options=ExportOptions(bits=6))
    u = torch.rand(64, 1, 28, 28)
    want = reference(model, u)
    assert (load(tmp_path / "q.svd")(u) - want).abs().max() < 0.05 * want.abs().max()


def test_a_codebook_as_large_as_the_distinct_values_is_exact(tmp_path):
    model = build_model("lenet300", "sparsevd")
    with torch.no_grad():
        for layer in svdo_layers(model):
            layer.weight.copy_(torch.randint(-3, 4, layer.weight.shape) * 0.1)
            layer.bias.copy_(torch.randint(-3, 4, layer.bias.shape) * 0.125)  # exact in the fp16 biases
    export(model, tmp_path / "net.svd", options=ExportOptions(bits=3))
    u = torch.rand(8, 1, 28, 28)
    torch.testing.assert_close(load(tmp_path / "net.svd")(u), model.eval()(u), rtol=0, atol=1e-5)


def test_unused_units_and_pixels_are_dropped_and_constant_units_kept(tmp_path):
    model = build_model("lenet300", "dense")
    with torch.no_grad():
        for m in (model.fc1, model.fc2, model.fc3):
            m.weight.zero_()
            m.bias.fill_(-1.0)
        model.fc1.weight[:10, :50] = torch.randn(10, 50)  # units 0-9 read pixels 0-49
        model.fc1.bias[20] = 2.0                           # unit 20: no weights in, relu(2) = 2 out
        model.fc1.bias[21] = 2.0                           # unit 21: same, but nothing reads it
        model.fc2.weight[:3, :5] = torch.randn(3, 5)       # only units 0-4 of fc1 are read ...
        model.fc2.weight[3, 20] = 1.0                      # ... and the constant unit 20
        model.fc2.weight[4, 30] = 1.0                      # unit 30: no weights in, relu(-1) = 0: dropped
        model.fc3.weight[:, :5] = torch.randn(10, 5)
    export(model, tmp_path / "net.svd", options=LOSSLESS)
    net = load(tmp_path / "net.svd", "dense")
    gather = [m for m in net if isinstance(m, Gather)]
    linears = [m for m in net if isinstance(m, DenseLinear)]
    assert len(gather) == 1 and gather[0].index.tolist() == list(range(50))
    assert [tuple(m.weight.shape) for m in linears] == [(6, 50), (4, 6), (10, 4)]  # fc2's row 4 reads only unit 30
    u = torch.rand(16, 1, 28, 28)
    torch.testing.assert_close(net(u), model.eval()(u), rtol=0, atol=1e-5)


def test_sparse_layers_pick_csr_and_dense_ones_a_dense_matmul(tmp_path):
    model = trained_like("lenet300")
    export(model, tmp_path / "net.svd", options=LOSSLESS)
    assert any(isinstance(m, CSRLinear) for m in load(tmp_path / "net.svd", "csr"))
    assert not any(isinstance(m, CSRLinear) for m in load(tmp_path / "net.svd", "dense"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign", "empty", "missing"])
def test_bad_files_fail_with_one_line_naming_the_file(tmp_path, damage):
    path = tmp_path / "net.svd"
    export(trained_like("lenet300"), path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:6] + bytes(b ^ 0x5A for b in data[6:40]) + data[40:])
    elif damage == "foreign":
        path.write_bytes(b"PK\x03\x04" + data[4:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(ExportFormatError) as err:
        load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 784)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc(x) + x


@pytest.mark.parametrize("model, words", [
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Tanh()), "Tanh is not supported"),
    (Branchy(), "branches"),
    (nn.Sequential(nn.Flatten(), nn.BatchNorm1d(784), nn.Linear(784, 10)), "BatchNorm1d is not supported"),
])
def test_unsupported_models_are_named(model, words):
    with pytest.raises(ExportError, match=words):
        export_bytes(model)


@pytest.mark.parametrize("kwargs", [{"bits": 0}, {"bits": 9}, {"values": "int8"}, {"codec": "zip"}, {"index": "rle"}])
def test_bad_options_are_refused(kwargs):
    with pytest.raises(ExportError):
        ExportOptions(**kwargs)


def test_a_plain_user_chain_exports(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Dropout(0.5), nn.Linear(4 * 14 * 14, 10)).eval()
    export(net, tmp_path / "net.svd", options=LOSSLESS)
    u = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(load(tmp_path / "net.svd")(u), net(u), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_the_loader_needs_nothing_but_torch(tmp_path):
    export(trained_like("lenet300"), tmp_path / "net.svd")
    shutil.copy(REPO / "src" / "sparsevd" / "compress" / "reader.py", tmp_path / "standalone.py")
    code = ("import sys; sys.modules['sparsevd'] = None; import standalone, torch; "
            "print(standalone.load('net.svd')(torch.rand(2, 1, 28, 28)).shape)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch.Size([2, 10])" in out.stdout
