import math

import pytest
import torch
from torch import nn

from sparsevd.core.models import MODELS, build_model, weighted_layers
from sparsevd.core.objective import kl as total_kl
from sparsevd.core.layers import Conv2dSVDO, LinearSVDO, kl_ard, kl_log_uniform


@pytest.mark.parametrize("name,layers,shapes", [
    ("lenet300", ["fc1", "fc2", "fc3"], [(300, 784), (100, 300), (10, 100)]),
    ("lenet5", ["conv1", "conv2", "fc1", "fc2"], [(20, 1, 5, 5), (50, 20, 5, 5), (500, 800), (10, 500)]),
])
@pytest.mark.parametrize("method", ["dense", "sparsevd", "ard"])
def test_architecture_names_and_shapes(name, layers, shapes, method):
    model = build_model(name, method)
    found = weighted_layers(model)
    assert list(found) == layers
    assert [tuple(m.weight.shape) for m in found.values()] == shapes
    sparse_types = (LinearSVDO, Conv2dSVDO)
    assert all(isinstance(m, sparse_types) == (method != "dense") for m in found.values())
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)


@pytest.mark.parametrize("method,kl", [("sparsevd", kl_log_uniform), ("ard", kl_ard)])
def test_total_kl_sums_the_method_kl_over_layers(method, kl):
    model = build_model("lenet5", method)
    expected = sum(kl(m.log_alpha).sum() for m in weighted_layers(model).values())
    torch.testing.assert_close(total_kl(model), expected)
    model.train()
    model(torch.randn(2, 1, 28, 28))          # a training forward leaves the KL from its fused pass
    torch.testing.assert_close(total_kl(model), expected)
    assert total_kl(build_model("lenet5", "dense")).item() == 0.0


def test_normal_init_and_options_reach_the_layers():
    model = build_model("lenet300", "sparsevd", threshold=2.0, log_sigma2_init=-7.0, train_clip=True,
                        init="normal", init_std=0.01)
    fc1 = model.fc1
    assert fc1.threshold == 2.0 and fc1.train_clip and (fc1.log_sigma2 == -7.0).all()
    assert abs(fc1.weight.std().item() - 0.01) < 0.001 and (fc1.bias == 0).all()


@pytest.mark.parametrize("clip_noise,conv,linear", [(None, False, False), ("conv", True, False), ("all", True, True)])
def test_clip_noise_reaches_the_layer_kinds_it_names(clip_noise, conv, linear):
    model = build_model("lenet5", "ard", train_clip=True, clip_noise=clip_noise)
    layers = weighted_layers(model)
    assert [layers[n].clip_noise for n in ("conv1", "conv2", "fc1", "fc2")] == [conv, conv, linear, linear]
    with pytest.raises(ValueError, match="clip_noise"):
        build_model("lenet5", "sparsevd", train_clip=True, clip_noise="fc")


def test_lasagne_init_is_glorot_uniform_for_conv_and_normal_for_dense():
    torch.manual_seed(0)
    model = build_model("lenet5", "sparsevd", init="lasagne", init_std=0.01)
    layers = weighted_layers(model)
    for name, fan in (("conv1", 1 * 25 + 20 * 25), ("conv2", 20 * 25 + 50 * 25)):
        w, bound = layers[name].weight, math.sqrt(6.0 / fan)
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound       # uniform up to the Glorot bound
        assert abs(w.std().item() - bound / math.sqrt(3)) < 0.15 * bound
    assert abs(layers["fc1"].weight.std().item() - 0.01) < 0.001
    assert all((layer.bias == 0).all() for layer in layers.values())
    with pytest.raises(ValueError, match="model.init"):
        build_model("lenet5", "sparsevd", init="xavier")


def test_unknown_names_fail_clearly():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", "sparsevd")
    with pytest.raises(ValueError, match="unknown method"):
        build_model("lenet300", "l0")


def test_registry_lets_users_add_a_model():
    from sparsevd.core.models import register_model

    @register_model
    class Tiny(nn.Module):
        name = "tiny_test_model"

        def __init__(self, layers):
            super().__init__()
            self.fc1 = layers.linear(784, 10)

        def forward(self, x):
            return self.fc1(x.flatten(1))

    try:
        model = build_model("tiny_test_model", "ard")
        assert isinstance(model.fc1, LinearSVDO)
    finally:
        MODELS.pop("tiny_test_model")


def test_lenet5_channels_last_layout_computes_the_plain_nchw_network():
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = build_model("lenet5", "sparsevd").eval()
    x = torch.randn(7, 1, 28, 28)
    w = {n: m.weight * m.mask() for n, m in weighted_layers(model).items()}
    r = F.max_pool2d(F.relu(F.conv2d(x, w["conv1"].contiguous(), model.conv1.bias)), 2)
    r = F.max_pool2d(F.relu(F.conv2d(r, w["conv2"].contiguous(), model.conv2.bias)), 2)
    r = F.linear(F.relu(F.linear(r.flatten(1), w["fc1"], model.fc1.bias)), w["fc2"], model.fc2.bias)
    torch.testing.assert_close(model(x), r)
