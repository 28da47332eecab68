"""weights.safetensors: what a record keeps of its trained network, and that it rebuilds it exactly."""
import pytest
import torch

from sparsevd.core.models import build_model, svdo_layers
from sparsevd.compress.weights import WeightsError, load_weights, read_weights, save_weights


def trained_like(name, method="sparsevd", seed=0):
    """A model whose log alpha spreads over the whole clipped range, as after training."""
    torch.manual_seed(seed)
    model = build_model(name, method)
    with torch.no_grad():
        for layer in svdo_layers(model):
            layer.log_sigma2.copy_(torch.log(layer.weight ** 2 + 1e-8) + torch.randn_like(layer.weight) * 6 + 4)
            layer.bias.normal_()
    return model.eval()


@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
def test_round_trip_rebuilds_the_test_time_network_and_every_threshold(tmp_path, name):
    model = trained_like(name)
    save_weights(model, tmp_path / "w.safetensors")
    again = load_weights(build_model(name, "sparsevd"), tmp_path / "w.safetensors").eval()
    x = torch.randn(8, 1, 28, 28)
    assert torch.equal(model(x), again(x))
    for a, b in zip(svdo_layers(model), svdo_layers(again)):
        below = a.log_alpha < a.log_alpha_clip
        assert torch.equal(a.log_alpha[below], b.log_alpha[below])  # any threshold up to the clip agrees
        assert torch.equal(b.log_alpha[~below], torch.full_like(b.log_alpha[~below], b.log_alpha_clip))
        assert torch.equal(a.bias, b.bias)


def test_only_weights_below_the_clip_are_stored(tmp_path):
    model = trained_like("lenet300")
    save_weights(model, tmp_path / "w.safetensors")
    tensors, layout = read_weights(tmp_path / "w.safetensors")
    fc1 = dict(model.named_modules())["fc1"]
    assert tensors["fc1.index"].numel() == int((fc1.log_alpha < fc1.log_alpha_clip).sum())
    assert tensors["fc1.index"].dtype == torch.int32 and layout["fc1"] == {"shape": [300, 784], "sparse": True}


def test_dense_models_are_stored_whole(tmp_path):
    model = build_model("lenet5", "dense").eval()
    save_weights(model, tmp_path / "w.safetensors")
    again = load_weights(build_model("lenet5", "dense"), tmp_path / "w.safetensors").eval()
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model(x), again(x))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing", "other_net"])
def test_bad_weights_files_fail_with_one_line_naming_the_file(tmp_path, damage):
    path = tmp_path / "w.safetensors"
    save_weights(trained_like("lenet300"), path)
    target = build_model("lenet300", "sparsevd")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 64)
    elif damage == "missing":
        path.unlink()
    else:
        target = build_model("lenet5", "sparsevd")
    with pytest.raises(WeightsError) as err:
        load_weights(target, path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
