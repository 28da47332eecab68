import torch
from torch import nn

from sparsevd.core.metrics import compression_with_biases, evaluate, stats
from sparsevd.core.layers import LinearSVDO


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = LinearSVDO(10, 4)   # 40 weights
        self.fc2 = nn.Linear(4, 2)     # 8 weights, dense

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def hand_built():
    model = Two()
    with torch.no_grad():
        model.fc1.weight.fill_(0.5)
        model.fc1.log_sigma2.fill_(-10.0)
        model.fc1.log_sigma2.view(-1)[:30] = 5.0   # log alpha = 5 - log 0.25 > 3: 30 pruned
        model.fc1.weight.view(-1)[30] = 0.0        # an exact zero with tiny sigma is pruned too
        model.fc2.weight.fill_(1.0)
        model.fc2.weight[0, 0] = 0.0               # one zero in the dense layer
        model.fc2.bias.fill_(0.1)
    return model


def test_counts_sparsity_and_compression_on_known_masks():
    st = stats(hand_built())
    assert {k: (v["weights"], v["nonzero"]) for k, v in st["layers"].items()} == {"fc1": (40, 9), "fc2": (8, 7)}
    assert st["layers"]["fc1"]["sparsity"] == 100 * 31 / 40 and abs(st["layers"]["fc2"]["sparsity"] - 12.5) < 1e-12
    assert st["compression"] == 48 / 16 and (st["weights"], st["nonzero"]) == (48, 16)


def test_compression_with_biases_counts_biases_as_weights():
    model = hand_built()
    # 48 weights + 6 biases; nonzero: 16 weights + 2 nonzero fc2 biases + 4 fc1 biases (torch init != 0)
    nonzero_bias = int((model.fc1.bias != 0).sum()) + 2
    assert compression_with_biases(model) == 54 / (16 + nonzero_bias)


def test_evaluate_error_uses_the_deterministic_pruned_net():
    model = hand_built()
    x = torch.randn(50, 10)
    model.eval()
    y = model(x).argmax(1)
    y[:5] = (y[:5] + 1) % 2
    model.train()
    out = evaluate(model, x, y)
    assert out["test_error"] == 10.0
    assert model.training  # evaluate restores the mode
    assert out["weights"] == {"fc1": 40, "fc2": 8} and out["nonzero"] == {"fc1": 9, "fc2": 7}
