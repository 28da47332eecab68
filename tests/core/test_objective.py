"""kl(), elbo_loss() and KLSchedule: the one objective the trainer and users share."""
import torch
import torch.nn.functional as F

import sparsevd
from sparsevd.core.layers import kl_ard, kl_log_uniform

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


def test_the_trainer_steps_on_the_public_objective(monkeypatch):
    """A training step is one Adam step on exactly sparsevd.elbo_loss: swapping in a spy sees the
    call, and the step moves the parameters as a hand-made step on elbo_loss does."""
    from sparsevd.train import trainer

    calls = []

    def spy(logits, target, model, n_train, kl_weight=1.0, **kw):
        calls.append((n_train, kl_weight))
        return sparsevd.elbo_loss(logits, target, model, n_train, kl_weight, **kw)

    monkeypatch.setattr(trainer, "elbo_loss", spy)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    moved = []
    for step in ("trainer", "by hand"):
        torch.manual_seed(0)
        model = sparsevd.build_model("lenet300", "sparsevd")
        opt = trainer.make_optimizer(model, 1e-3)
        torch.manual_seed(1)
        if step == "trainer":
            trainer.train_step(model, opt, x, y, 1000, 0.25)
        else:
            opt.zero_grad()
            sparsevd.elbo_loss(model(x), y, model, 1000, 0.25).backward()
            opt.step()
        moved.append([p.detach().clone() for p in model.parameters()])
    assert calls == [(1000, 0.25)]
    for a, b in zip(*moved):
        torch.testing.assert_close(a, b)
