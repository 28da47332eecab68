import math

import pytest
import torch
import torch.nn.functional as F

from sparsevd.core.layers import Conv2dSVDO, LinearSVDO, _WeightNoise, kl_ard, kl_log_uniform, kl_march2017

K1, K2, K3 = 0.63576, 1.87320, 1.48695


def test_kl_log_uniform_fixed_points():
    for la in (-8.0, -2.0, 0.0, 1.5, 8.0):
        sig = 1 / (1 + math.exp(-(K2 + K3 * la)))
        expected = -(K1 * sig - 0.5 * math.log1p(math.exp(-la)) - K1)
        assert kl_log_uniform(torch.tensor(la)).item() == pytest.approx(expected, abs=1e-6)


def true_neg_kl_up_to_const(log_alpha: torch.Tensor, n: int = 2_000_000) -> torch.Tensor:
    """0.5 log alpha - E_{eps ~ N(1, alpha)} log|eps| (the exact -KL up to a constant), by Monte Carlo.

    One set of normal draws for every alpha (common random numbers) keeps the curve smooth.
    """
    z = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = []
    for la in log_alpha.double():
        s = math.exp(0.5 * la.item())
        # log|1 + s z| = log s + log|1/s + z|: stable for large alpha.
        e_log = math.log(s) + torch.log(torch.abs(1.0 / s + z)).mean().item()
        out.append(0.5 * la.item() - e_log)
    return torch.tensor(out, dtype=torch.float64)


def test_kl_log_uniform_matches_true_kl_up_to_constant():
    log_alpha = torch.linspace(-8, 8, 81, dtype=torch.float64)
    approx = -kl_log_uniform(log_alpha)
    diff = approx - true_neg_kl_up_to_const(log_alpha)
    c = (diff.max() + diff.min()) / 2
    assert (diff - c).abs().max().item() < 0.02
    # A wrong constant k2 (or dropping the sigmoid) breaks the fit by far more than that.
    bad = K1 * torch.sigmoid(2.5 + K3 * log_alpha) - 0.5 * torch.log1p(torch.exp(-log_alpha)) - K1
    bad_diff = bad - true_neg_kl_up_to_const(log_alpha)
    assert (bad_diff - (bad_diff.max() + bad_diff.min()) / 2).abs().max().item() > 0.02


def test_kl_ard_formula():
    log_alpha = torch.linspace(-8, 8, 33, dtype=torch.float64)
    alpha = log_alpha.exp()
    torch.testing.assert_close(kl_ard(log_alpha), 0.5 * torch.log(1 + 1 / alpha))


@pytest.mark.parametrize("kl", [kl_log_uniform, kl_ard])
def test_kl_decreases_in_log_alpha(kl):
    values = kl(torch.linspace(-8, 8, 1001, dtype=torch.float64))
    assert (values[1:] < values[:-1]).all()
    assert values[-1] < 1e-3 and values[0] > 3.0


def _set_posterior(layer, seed=0, log_alpha_range=(-3.0, 1.0)):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.5)
        la = torch.empty(layer.weight.shape).uniform_(*log_alpha_range, generator=g)
        layer.log_sigma2.copy_(la + torch.log(layer.weight ** 2))
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g))


def _check_moments(samples, mean, var, n):
    """Sample moments within ~5 standard errors of the analytic ones."""
    m_hat, v_hat = samples.mean(0), samples.var(0)
    assert ((m_hat - mean).abs() <= 5 * (var / n).sqrt() + 1e-4).all()
    assert ((v_hat / var - 1).abs() <= 5 * math.sqrt(2 / n)).all()


def test_linear_lrt_moments_match_analytic_and_weight_sampling():
    torch.manual_seed(0)
    layer = LinearSVDO(6, 4)
    _set_posterior(layer)
    x = torch.randn(1, 6)
    n = 40_000
    layer.train()
    with torch.no_grad():
        out = layer(x.expand(n, 6))
        theta, alpha = layer.weight, layer.log_alpha.exp()
        mean = F.linear(x, theta, layer.bias)[0]
        var = F.linear(x * x, alpha * theta ** 2)[0]
        _check_moments(out, mean, var, n)
        # Direct weight sampling: w ~ N(theta, alpha theta^2), per example.
        w = theta + (alpha * theta ** 2).sqrt() * torch.randn(n, *theta.shape)
        direct = torch.einsum("i,noi->no", x[0], w) + layer.bias
        _check_moments(direct, out.mean(0), out.var(0), n)


def test_conv_lrt_moments_match_analytic_and_weight_sampling():
    torch.manual_seed(1)
    layer = Conv2dSVDO(2, 3, 3, padding=1)
    _set_posterior(layer, seed=1)
    x = torch.randn(1, 2, 4, 4)
    n = 20_000
    layer.train()
    with torch.no_grad():
        out = layer(x.expand(n, -1, -1, -1)).flatten(1)
        theta, alpha = layer.weight, layer.log_alpha.exp()
        mean = F.conv2d(x, theta, layer.bias, padding=1).flatten()
        var = F.conv2d(x * x, alpha * theta ** 2, padding=1).flatten()
        _check_moments(out, mean, var, n)
        w = theta + (alpha * theta ** 2).sqrt() * torch.randn(2000, *theta.shape)
        direct = torch.stack([F.conv2d(x, wi, layer.bias, padding=1).flatten() for wi in w])
        _check_moments(direct, out.mean(0), out.var(0), 2000)


def test_noise_is_independent_per_output():
    # One input row repeated: each output unit's noise, standardised by the LRT moments, must be N(0, 1)
    # and uncorrelated across units and across rows (shared epsilon would give correlation 1 or std 0).
    torch.manual_seed(0)
    layer = LinearSVDO(5, 3)
    _set_posterior(layer)
    layer.train()
    x = torch.randn(1, 5).expand(20_000, 5)
    with torch.no_grad():
        out = layer(x)
        mean = x[:1] @ layer.weight.T + layer.bias
        var = (x[:1] ** 2) @ (layer.log_alpha.exp() * layer.weight ** 2).T
    z = (out - mean) / var.sqrt()
    torch.testing.assert_close(z.std(0), torch.ones(3), atol=0.03, rtol=0)
    corr = torch.corrcoef(z.T)
    assert (corr - torch.eye(3)).abs().max() < 0.05
    assert torch.corrcoef(torch.stack((z[:-1].flatten(), z[1:].flatten())))[0, 1].abs() < 0.03


@pytest.mark.parametrize("make", [lambda: LinearSVDO(8, 5), lambda: Conv2dSVDO(2, 4, 3)])
def test_eval_is_deterministic_masked_op_and_ignores_pruned_weights(make):
    layer = make()
    _set_posterior(layer, log_alpha_range=(-2.0, 6.0))
    layer.eval()
    x = torch.randn(7, 8) if isinstance(layer, LinearSVDO) else torch.randn(7, 2, 6, 6)
    mask = (layer.log_alpha < 3.0).float()
    assert 0 < mask.mean() < 1
    out = layer(x)
    assert torch.equal(out, layer(x))
    torch.testing.assert_close(out, layer._op(x, layer.weight * mask, layer.bias))
    # Change a pruned weight (keeping it pruned): output unchanged. Change a kept one: it changes.
    pruned = (mask == 0).flatten().nonzero()[0].item()
    kept = (mask == 1).flatten().nonzero()[0].item()
    with torch.no_grad():
        layer.weight.view(-1)[pruned] *= 1.5
        layer.log_sigma2.view(-1)[pruned] += 2 * math.log(1.5)
    assert layer.mask().flatten()[pruned] == 0
    torch.testing.assert_close(layer(x), out)
    with torch.no_grad():
        layer.weight.view(-1)[kept] += 1.0
    assert not torch.allclose(layer(x), out)


def test_log_alpha_is_clipped_and_defined_from_theta_and_sigma():
    layer = LinearSVDO(3, 2, log_sigma2_init=-10.0)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1e-6, 0.1, 1.0], [2.0, 0.01, 0.5]]))
        layer.log_sigma2.copy_(torch.tensor([[0.0, -4.0, -30.0], [0.0, -10.0, -1.0]]))
    expected = torch.clamp(layer.log_sigma2 - torch.log(layer.weight ** 2 + 1e-8), -8, 8)
    torch.testing.assert_close(layer.log_alpha, expected)
    assert layer.log_alpha[0, 0] == 8 and layer.log_alpha[0, 2] == -8


@pytest.mark.parametrize("make", [lambda c: LinearSVDO(3, 2, log_alpha_clip=c), lambda c: Conv2dSVDO(1, 2, 1, log_alpha_clip=c)])
def test_log_alpha_clip_sets_the_range_and_where_gradients_stop(make):
    """A weight at raw log alpha 9 is clipped (no gradient) under the authors' 8, free under 10."""
    grads = {}
    for clip in (8.0, 10.0):
        layer = make(clip)
        with torch.no_grad():
            layer.weight.fill_(0.1)
            layer.log_sigma2.fill_(math.log(0.01) + 9.0)  # raw log alpha = 9
            layer.log_sigma2.view(-1)[0] = math.log(0.01) + 20.0
        assert layer.log_alpha.view(-1)[0] == clip and torch.allclose(layer.log_alpha.view(-1)[1:], torch.tensor(min(9.0, clip)))
        layer.train()
        layer(torch.ones(4, *((3,) if isinstance(layer, LinearSVDO) else (1, 2, 2)))).sum().backward()
        grads[clip] = layer.log_sigma2.grad.view(-1)[1:]
        assert layer.log_sigma2.grad.view(-1)[0] == 0  # beyond either clip
    assert (grads[8.0] == 0).all() and (grads[10.0] != 0).all()
    with pytest.raises(ValueError, match="log_alpha_clip"):
        make(0.0)


@pytest.mark.parametrize("train_clip,clip_noise", [(False, False), (True, False), (True, True)])
def test_train_forward_is_exactly_mean_plus_std_times_eps(train_clip, clip_noise):
    """Same RNG stream: out = linear(x, theta [masked if train_clip]) + b + sqrt(x^2 (alpha theta^2 [masked])) eps."""
    layer = LinearSVDO(6, 4, train_clip=train_clip, clip_noise=clip_noise)
    _set_posterior(layer, log_alpha_range=(-2.0, 6.0))
    assert 0 < layer.mask().mean() < 1
    x = torch.randn(3, 6)
    layer.train()
    torch.manual_seed(5)
    out = layer(x)
    torch.manual_seed(5)
    eps = torch.randn(3, 4)
    with torch.no_grad():
        theta = layer.weight * layer.mask() if train_clip else layer.weight
        var = F.linear(x * x, layer.log_alpha.exp() * layer.weight ** 2 * (layer.mask() if clip_noise else 1))
        expected = F.linear(x, theta, layer.bias) + (var + 1e-8).sqrt() * eps
    torch.testing.assert_close(out, expected)


def test_clip_noise_silences_pruned_conv_weights_only_in_the_noise_path():
    """With every weight pruned, clip_noise leaves bias alone (no noise); without it the noise stays."""
    x = torch.rand(2, 1, 6, 6) + 0.5
    noise = {}
    for clip_noise in (False, True):
        conv = Conv2dSVDO(1, 2, 3, train_clip=True, clip_noise=clip_noise)
        with torch.no_grad():
            conv.weight.fill_(0.1)
            conv.log_sigma2.fill_(2 * math.log(0.1) + 5.0)   # log alpha = 5 >= 3: all pruned
        conv.train()
        out = conv(x)
        noise[clip_noise] = (out - conv.bias.detach().view(1, -1, 1, 1)).abs().max()
    assert noise[True] < 1e-3    # only the sqrt(1e-8) floor is left
    assert noise[False] > 0.05
    with pytest.raises(ValueError, match="train_clip"):
        Conv2dSVDO(1, 2, 3, train_clip=False, clip_noise=True)


def test_rejects_non_finite_threshold():
    with pytest.raises(ValueError, match="threshold"):
        LinearSVDO(2, 2, threshold=float("nan"))


def test_parameters_and_shapes_match_torch_layers():
    lin = LinearSVDO(10, 3)
    assert lin.weight.shape == (3, 10) and lin.log_sigma2.shape == (3, 10) and lin.bias.shape == (3,)
    conv = Conv2dSVDO(1, 20, 5)
    assert conv.weight.shape == (20, 1, 5, 5) and conv.log_sigma2.shape == conv.weight.shape
    assert {n for n, _ in lin.named_parameters()} == {"weight", "bias", "log_sigma2"}
    assert (lin.log_sigma2 == -10.0).all() and lin.threshold == 3.0


def _reference_weight_noise(theta, log_sigma2, prior, clip, threshold):
    """The textbook formulas, differentiated by autograd."""
    log_alpha = torch.clamp(log_sigma2 - torch.log(theta * theta + 1e-8), -clip, clip)
    keep = (log_alpha < threshold).to(theta.dtype)
    if prior == "log_uniform_march2017":
        kl = kl_march2017(log_alpha, pruned=keep == 0)
    else:
        kl = kl_log_uniform(log_alpha) if prior == "log_uniform" else kl_ard(log_alpha)
    return torch.exp(log_alpha) * theta * theta, kl.sum(), theta * keep, keep


@pytest.mark.parametrize("prior,clip,threshold", [("log_uniform", 8.0, 3.0), ("ard", 8.0, 3.0),
                                                  ("log_uniform", 10.0, -1.0), ("ard", 8.0, float("inf")),
                                                  ("log_uniform_march2017", 8.0, 3.0),
                                                  ("log_uniform_march2017", 8.0, float("inf"))])
def test_fused_weight_noise_matches_autograd_of_the_formulas(prior, clip, threshold):
    g = torch.Generator().manual_seed(0)
    theta = (torch.randn(40, 30, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    # log alpha spans both clip edges, so the clipped-gradient branch is exercised too
    log_sigma2 = (torch.log(theta.detach() ** 2) + torch.empty_like(theta).uniform_(-12, 12, generator=g)).requires_grad_()
    grad_var, grad_mean = torch.randn(2, 40, 30, generator=g, dtype=torch.float64)
    outs = []
    for fn in (_WeightNoise.apply, _reference_weight_noise):
        var, kl, mean, keep = fn(theta, log_sigma2, prior, clip, threshold)
        loss = (var * grad_var).sum() + 0.7 * kl + (mean * grad_mean).sum()
        gt, gs = torch.autograd.grad(loss, (theta, log_sigma2))
        outs.append((var, kl, mean, keep, gt, gs))
    for got, want in zip(*outs):
        torch.testing.assert_close(got, want)
    assert 0 < outs[0][3].sum() < outs[0][3].numel() or threshold == float("inf")  # both sides of the threshold
    # only the KL used: the other outputs' gradients arrive as None and count as zero
    only_kl = [torch.autograd.grad(fn(theta, log_sigma2, prior, clip, threshold)[1], (theta, log_sigma2))
               for fn in (_WeightNoise.apply, _reference_weight_noise)]
    for got, want in zip(*only_kl):
        torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(lambda t, s: _WeightNoise.apply(t, s, prior, clip, threshold)[:3],
                                    (theta[:4, :4].detach().requires_grad_(), log_sigma2[:4, :4].detach().requires_grad_()))


def test_cached_kl_is_not_reused_after_the_parameters_change():
    layer = LinearSVDO(5, 3)
    layer.train()
    layer(torch.randn(2, 5))
    with torch.no_grad():
        layer.log_sigma2.add_(3.0)
    torch.testing.assert_close(layer.kl(), kl_log_uniform(layer.log_alpha).sum())


def test_cached_kl_from_a_no_grad_forward_is_not_used_for_a_loss():
    layer = LinearSVDO(5, 3)
    layer.train()
    with torch.no_grad():
        layer(torch.randn(2, 5))
    kl = layer.kl()
    assert kl.requires_grad
    kl.backward()
    assert layer.log_sigma2.grad is not None and layer.log_sigma2.grad.abs().sum() > 0


def test_march2017_kl_is_the_first_published_formula():
    """0.5 log1p(1/alpha) - (0.03 + 0.64 sigmoid(1.5 (log alpha + 1.3))), written out by hand."""
    for la in (-8.0, -2.0, -1.3, 0.0, 2.9, 3.0, 8.0):
        a = math.exp(la)
        want = 0.5 * math.log1p(1 / a) - (0.03 + 0.64 / (1 + math.exp(-1.5 * (la + 1.3))))
        assert kl_march2017(torch.tensor(la, dtype=torch.float64)).item() == pytest.approx(want, abs=1e-12)
    pruned = kl_march2017(torch.tensor([0.0, 5.0]), pruned=torch.tensor([False, True]))
    assert pruned[1].item() == pytest.approx(-0.67) and pruned[0].item() == pytest.approx(kl_march2017(torch.tensor(0.0)).item())
    # away from pruning it is Eq. 14 shifted by about -0.67 (Eq. 14 is 0 at alpha -> infinity), give or take 0.006
    la = torch.linspace(-8, 8, 1601)
    gap = kl_march2017(la) - kl_log_uniform(la)
    assert abs(float(gap.mean()) + 0.67) < 0.01 and 0.005 < float(gap.max() - gap.min()) < 0.02


@pytest.mark.parametrize("train_clip", [True, False])
def test_march2017_kl_gives_pruned_weights_no_gradient_only_under_train_clip(train_clip):
    layer = LinearSVDO(30, 20, train_clip=train_clip, prior="log_uniform_march2017")
    with torch.no_grad():
        layer.log_sigma2.copy_(torch.log(layer.weight ** 2) + torch.linspace(-6, 6, 600).view(20, 30))
    pruned = layer.log_alpha >= 3.0
    assert 0 < int(pruned.sum()) < pruned.numel()
    layer.train()
    layer(torch.randn(4, 30))
    kl = layer.kl()
    gt, gs = torch.autograd.grad(kl, (layer.weight, layer.log_sigma2))
    la = layer.log_alpha.detach()
    want = kl_march2017(la, pruned=pruned if train_clip else None).sum()
    torch.testing.assert_close(kl, want)
    if train_clip:
        assert (gs[pruned] == 0).all() and (gt[pruned] == 0).all()
    else:
        assert (gs[pruned] != 0).all()
    assert (gs[~pruned] != 0).all()
