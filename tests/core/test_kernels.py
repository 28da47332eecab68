"""The compiled per-weight pass computes what the eager one does, values and gradients."""
import pytest
import torch

from sparsevd.core import kernels
from sparsevd.core.models import build_model
from sparsevd.core.objective import elbo_loss


@pytest.fixture
def compiled():
    if not kernels.use_compiled(True):
        pytest.skip("torch.compile cannot build here; the eager path is what runs")
    yield
    kernels.use_compiled(False)


def step_grads(method, train_clip, kl_fit="eq14"):
    torch.manual_seed(0)
    model = build_model("lenet5", method, log_alpha_clip=8.0, train_clip=train_clip, kl_fit=kl_fit).train()
    with torch.no_grad():
        for layer in model.modules():
            if hasattr(layer, "log_sigma2"):  # spread log alpha over the clip and beyond it
                layer.log_sigma2.copy_(torch.log(layer.weight ** 2) + torch.randn_like(layer.weight) * 6)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    torch.manual_seed(1)
    loss = elbo_loss(model(x), y, model, 60_000, 0.7)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("method,train_clip,kl_fit", [("sparsevd", True, "eq14"), ("sparsevd", False, "eq14"),
                                                     ("ard", True, "eq14"), ("sparsevd", True, "march2017")])
def test_compiled_and_eager_paths_agree(method, train_clip, kl_fit, compiled):
    loss_c, grads_c = step_grads(method, train_clip, kl_fit)
    kernels.use_compiled(False)
    loss_e, grads_e = step_grads(method, train_clip, kl_fit)
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-6, atol=0)
    for name, want in grads_e.items():  # float32 rounding, relative to the gradient's scale (~1e9 here)
        torch.testing.assert_close(grads_c[name], want, rtol=1e-4, atol=1e-6 * float(want.abs().max()), msg=name)


def test_the_compiled_paths_log1p_is_accurate_over_the_whole_clip_range():
    z = torch.exp(-torch.linspace(-20, 20, 200_001))  # 1 / alpha for log alpha in [-20, 20]
    want = torch.log1p(z.double())
    rel = ((kernels._log1p(z).double() - want).abs() / want).max()
    assert rel < 4e-7  # a few float32 ulps


def test_a_failed_compile_falls_back_to_eager_with_one_line(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nsecond line")
    monkeypatch.setattr(torch, "compile", broken)
    assert kernels.use_compiled("auto") is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no C++ compiler found" in err and "eager" in err
    assert kernels.forward is not None and not kernels._compiled
