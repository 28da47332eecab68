"""kl(), elbo_loss() and KLSchedule: the one objective the trainer and users share."""
import torch
import torch.nn.functional as F

import sparsevd
from sparsevd.nn import kl_ard, kl_log_uniform

from test_sparsify import trained_nested


def test_kl_is_the_differentiable_sum_over_layers():
    model = sparsevd.sparsify(trained_nested(), skip=("head.out",))
    sparsevd.sparsify(model, prior="ard")  # converts what is still plain: head.out, under the ARD prior
    assert model.head["out"].prior == "ard" and model.head["hidden"].prior == "log_uniform"
    layers = [model.features[0], model.features[4], model.head["hidden"]]
    want = sum(kl_log_uniform(m.log_alpha).sum() for m in layers) + kl_ard(model.head["out"].log_alpha).sum()
    got = sparsevd.kl(model)
    torch.testing.assert_close(got, want)
    got.backward()
    assert model.head["hidden"].log_sigma2.grad is not None and model.features[0].weight.grad is not None


def test_elbo_loss_is_n_times_ce_plus_weighted_kl():
    model = sparsevd.sparsify(trained_nested()).eval()
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    logits = model(x)
    loss, ce, kl = sparsevd.elbo_loss(logits, y, model, 60_000, 0.3, terms=True)
    torch.testing.assert_close(ce, F.cross_entropy(logits, y))
    torch.testing.assert_close(kl, sparsevd.kl(model))
    torch.testing.assert_close(loss, 60_000 * ce + 0.3 * kl)


def test_the_trainer_uses_the_public_objective():
    import inspect

    from sparsevd import trainer
    source = inspect.getsource(trainer)
    assert "elbo_loss(" in source and "KLSchedule(" in source and "cross_entropy" not in source
