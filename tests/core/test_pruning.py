"""Magnitude pruning's masks and allocations: how many weights each layer keeps, and which."""
import math

import pytest
import torch

from sparsevd.core.models import build_model
from sparsevd.core.pruning import (ALLOCATIONS, allocate, attach_masks, erk_densities, final_share, kept_fraction,
                                   layer_counts, mask_of, original_of, quality_masks, set_masks)

TO_A_COUNT = [a for a in ALLOCATIONS if a != "layers"]  # "layers" keeps given shares per layer, not a count


def lenet5_weights(seed=0):
    torch.manual_seed(seed)
    model = build_model("lenet5", "dense")
    return {name: layer.weight.detach().clone() for name, layer in attach_masks(model).items()}


def test_the_gradual_schedule_is_zhu_and_guptas_cubic_and_han_keeps_a_fixed_share_per_round():
    target, n = 50.0, 10
    final = 1 - 1 / target
    for k in range(n + 1):  # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3 with s_i = 0
        assert 1 - kept_fraction("gradual", k, n, target) == pytest.approx(final - final * (1 - k / n) ** 3)
    assert kept_fraction("gradual", 0, n, target) == 1.0 and kept_fraction("gradual", n, n, target) == pytest.approx(1 / target)
    shares = [kept_fraction("han", k, 4, 16.0) for k in range(5)]
    assert shares == pytest.approx([1.0, 0.5, 0.25, 0.125, 0.0625])  # each round halves what is kept
    with pytest.raises(ValueError, match="schedule must be one of"):
        kept_fraction("cubic", 1, n, target)


def test_erk_shares_follow_the_sum_over_the_product_of_the_dimensions():
    shapes = {"conv": (20, 1, 5, 5), "fc": (500, 800), "out": (10, 500)}
    keep = 4000
    d = erk_densities(shapes, keep)
    assert sum(d[k] * math.prod(s) for k, s in shapes.items()) == pytest.approx(keep)
    raw = {k: sum(s) / math.prod(s) for k, s in shapes.items()}
    assert d["conv"] / d["fc"] == pytest.approx(raw["conv"] / raw["fc"])
    assert d["out"] / d["fc"] == pytest.approx(raw["out"] / raw["fc"])
    # a budget that would give the small layers more than all their weights keeps them dense
    big = erk_densities(shapes, 60_000)
    assert big["conv"] == 1.0 and big["out"] == 1.0 and 0 < big["fc"] < 1
    assert sum(big[k] * math.prod(s) for k, s in shapes.items()) == pytest.approx(60_000)


@pytest.mark.parametrize("allocation", TO_A_COUNT)
def test_each_allocation_keeps_exactly_the_count_asked_and_never_revives_a_weight(allocation):
    weights = lenet5_weights()
    live = {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}
    first = allocate(weights, live, 20_000, allocation)
    assert sum(int(m.sum()) for m in first.values()) == 20_000
    pruned = {k: w * m for (k, w), m in zip(weights.items(), first.values())}
    second = allocate(pruned, first, 5_000, allocation)
    assert sum(int(m.sum()) for m in second.values()) == 5_000
    assert all(not (second[k] & ~first[k]).any() for k in weights)  # a pruned weight stays pruned


def test_what_each_allocation_keeps():
    weights = lenet5_weights()
    live = {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}
    total = sum(w.numel() for w in weights.values())
    uniform = allocate(weights, live, total // 10, "uniform")
    for k, m in uniform.items():  # a tenth of every layer, the largest |w| of each
        assert abs(int(m.sum()) - weights[k].numel() / 10) <= 1
        assert weights[k][m].abs().min() >= weights[k][~m].abs().max()
    masks = allocate(weights, live, total // 10, "global")  # one threshold on |w| for the whole net
    kept = torch.cat([weights[k][m].abs() for k, m in masks.items()])
    dropped = torch.cat([weights[k][~m].abs() for k, m in masks.items()])
    assert kept.min() >= dropped.max()
    masks = allocate(weights, live, total // 10, "std")  # one threshold on |w| / std(layer)
    kept = torch.cat([weights[k][m].abs() / weights[k].std() for k, m in masks.items()])
    dropped = torch.cat([weights[k][~m].abs() / weights[k].std() for k, m in masks.items()])
    assert kept.min() >= dropped.max()
    erk = allocate(weights, live, total // 10, "erk")
    d = erk_densities({k: tuple(w.shape) for k, w in weights.items()}, total // 10)
    assert all(abs(int(m.sum()) - d[k] * weights[k].numel()) <= 1 for k, m in erk.items())


def test_the_layers_allocation_ends_at_the_given_shares_each_layer_on_one_log_scale():
    weights = lenet5_weights()
    sizes = {k: w.numel() for k, w in weights.items()}
    shares = {"conv1": 0.66, "conv2": 0.12, "fc1": 0.08, "fc2": 0.19}  # Han et al. 2015's LeNet-5
    final = final_share(shares, sizes)
    assert 1 / final == pytest.approx(430_500 / (330 + 3000 + 32_000 + 950))
    live = {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}
    half = allocate(weights, live, round(sum(sizes.values()) * final ** 0.5), "layers", shares)
    # half way on the log scale of the net's share, each layer is half way on the log scale of its own
    assert {k: int(m.sum()) for k, m in half.items()} == {k: round(sizes[k] * shares[k] ** 0.5) for k in sizes}
    pruned = {k: w * m for (k, w), m in zip(weights.items(), half.values())}
    end = allocate(pruned, half, round(sum(sizes.values()) * final), "layers", shares)
    assert {k: int(m.sum()) for k, m in end.items()} == {k: round(sizes[k] * shares[k]) for k in sizes}
    assert all(not (end[k] & ~half[k]).any() for k in weights)  # a pruned weight stays pruned
    for k, m in end.items():  # the largest |w| of each layer
        assert weights[k][m].abs().min() >= weights[k][~m].abs().max()
    assert layer_counts(shares, sizes, 1.0) == sizes  # nothing pruned before the first event


def test_han_quality_prunes_below_quality_times_the_layers_std():
    weights = lenet5_weights()
    live = {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}
    masks = quality_masks(weights, live, 0.7)
    for k, w in weights.items():
        assert torch.equal(masks[k], w.abs() >= 0.7 * w.std())


def test_masks_are_a_parametrization_whose_pruned_parameters_are_zero():
    from torch.nn.utils import parametrize

    torch.manual_seed(0)
    model = build_model("lenet5", "dense")
    layers = attach_masks(model)
    assert attach_masks(model).keys() == layers.keys()  # attaching twice changes nothing
    assert all(parametrize.is_parametrized(layer, "weight") for layer in layers.values())
    masks = {k: torch.rand(layer.weight.shape) > 0.5 for k, layer in layers.items()}
    set_masks(layers, masks)
    for k, layer in layers.items():
        assert torch.equal(mask_of(layer).bool(), masks[k])
        assert (original_of(layer)[~masks[k]] == 0).all() and (layer.weight[~masks[k]] == 0).all()
        assert torch.equal(layer.weight[masks[k]], original_of(layer)[masks[k]])
    assert "conv1.parametrizations.weight.0.mask" in model.state_dict()  # checkpoints carry the masks
