"""sparsify(): an ordinary model becomes a sparse VD model that starts where the trained one was."""
import pytest
import torch
from torch import nn

import sparsevd
from sparsevd.core.layers import Conv2dSVDO, LinearSVDO


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, stride=2, groups=2))
        self.head = nn.ModuleDict({"hidden": nn.Linear(8 * 6 * 6, 32), "out": nn.Linear(32, 10)})

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.head["out"](torch.relu(self.head["hidden"](x)))


def trained_nested():
    torch.manual_seed(0)
    model = Nested()
    with torch.no_grad():
        model.features[1].running_mean.uniform_(-0.1, 0.1)
    return model.eval()


def test_a_sparsified_model_computes_what_the_trained_one_did():
    model = trained_nested()
    x = torch.randn(16, 1, 28, 28)
    before = model(x)
    sparsevd.sparsify(model)
    after = model.eval()(x)
    # log sigma^2 = -10 gives log alpha >= 3 exactly where |theta| <= exp(-6.5) ~ 0.0015: only those
    # near-zero weights are pruned at once, which moves the outputs by under 1 % of their scale
    for layer in (model.features[0], model.features[4], model.head["hidden"], model.head["out"]):
        pruned = layer.mask() == 0
        assert torch.all(layer.weight[pruned].abs() < 0.0016) and torch.all(layer.weight[~pruned].abs() > 0.0014)
    assert (after - before).abs().max() < 0.01 * before.abs().max()
    assert (after.argmax(1) == before.argmax(1)).float().mean() >= 0.9
    assert isinstance(model.features[0], Conv2dSVDO) and model.features[0].bias is None
    assert model.features[4].groups == 2 and model.features[4].stride == (2, 2)
    assert isinstance(model.head["hidden"], LinearSVDO) and isinstance(model.head["out"], LinearSVDO)
    assert isinstance(model.features[1], nn.BatchNorm2d)  # a norm layer's weight is a scale, left alone


def test_skip_leaves_the_named_modules_dense():
    model = sparsevd.sparsify(trained_nested(), skip=("head.out", "features"))
    assert type(model.head["out"]) is nn.Linear and type(model.features[0]) is nn.Conv2d
    assert isinstance(model.head["hidden"], LinearSVDO)


def test_options_reach_every_layer():
    model = sparsevd.sparsify(trained_nested(), threshold=2.0, log_sigma2_init=-8.0, prior="ard", train_clip=True)
    layer = model.head["hidden"]
    assert (layer.threshold, layer.prior, layer.train_clip) == (2.0, "ard", True)
    assert torch.all(layer.log_sigma2 == -8.0)


@pytest.mark.parametrize("bad, words", [
    (nn.Sequential(nn.Conv1d(1, 2, 3)), r"cannot convert 0 \(Conv1d\).*skip=\('0',\)"),
    (nn.Sequential(nn.Embedding(10, 4)), r"cannot convert 0 \(Embedding\)"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding="same")), r"0 \(Conv2d\) uses padding='same'"),
])
def test_layers_it_cannot_convert_are_named(bad, words):
    with pytest.raises(ValueError, match=words):
        sparsevd.sparsify(bad)


def test_unknown_skip_names_and_priors_are_refused():
    with pytest.raises(ValueError, match="not modules"):
        sparsevd.sparsify(trained_nested(), skip=("head.missing",))
    with pytest.raises(ValueError, match="prior"):
        sparsevd.sparsify(trained_nested(), prior="gaussian")
