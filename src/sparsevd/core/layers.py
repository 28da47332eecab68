"""Sparse variational dropout layers (Molchanov, Ashukha & Vetrov, ICML 2017).

Each weight has the posterior q(w) = N(theta, sigma^2) with alpha = sigma^2 / theta^2.
We learn theta (``weight``) and ``log_sigma2`` directly: the additive reparameterization of
Sec. 4.1, which keeps the gradient variance of theta low even for huge alpha.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import kernels

__all__ = ["LinearSVDO", "Conv2dSVDO", "SVDOLayer", "kl_log_uniform", "kl_march2017", "kl_ard", "LOG_ALPHA_CLIP",
           "PRIORS"]

LOG_ALPHA_CLIP = 8.0  # the authors' clip; method.log_alpha_clip overrides it per run
# Eq. 14 of the paper: sigmoid + softplus fit of -KL(q || log-uniform) up to a constant.
K1, K2, K3 = kernels.K1, kernels.K2, kernels.K3
below = kernels.below


def kl_log_uniform(log_alpha: torch.Tensor) -> torch.Tensor:
    """Per-weight KL(N(theta, alpha theta^2) || log-uniform), the approximation of Eq. 14.

    -KL ~= k1 sigmoid(k2 + k3 log_alpha) - 0.5 log1p(exp(-log_alpha)) - k1,
    which is 0 as alpha -> infinity and grows as alpha -> 0.
    """
    neg_kl = K1 * torch.sigmoid(K2 + K3 * log_alpha) - 0.5 * F.softplus(-log_alpha) - K1
    return -neg_kl


def kl_march2017(log_alpha: torch.Tensor, pruned: torch.Tensor | None = None) -> torch.Tensor:
    """Per-weight KL(q || log-uniform) as the authors' first published code fits it (their repository's
    upload of 2017-03-10, before the camera-ready's Eq. 14):

        KL ~= 0.5 log1p(1/alpha) - (0.03 + 0.64 sigmoid(1.5 (log_alpha + 1.3))),

    which tends to -0.67 as alpha -> infinity. Where ``pruned`` is true (in that code: ``train_clip``
    and log alpha >= the threshold) the KL is the constant -0.67, so a pruned weight gets no KL
    gradient and only the data term moves its theta.
    """
    kl = 0.5 * F.softplus(-log_alpha) - (kernels.M0 + kernels.M1 * torch.sigmoid(kernels.M2 * (log_alpha + kernels.M3)))
    return kl if pruned is None else torch.where(pruned, torch.full_like(kl, kernels.M_PRUNED), kl)


def kl_ard(log_alpha: torch.Tensor) -> torch.Tensor:
    """Per-weight KL to the empirical-Bayes prior N(0, lambda) at its optimum lambda = theta^2 + sigma^2.

    Plugging that optimum into the Gaussian KL leaves 0.5 log(1 + 1/alpha) (ARD, cf. Sec. 4 and
    Kharitonov et al. 2018), written as softplus(-log_alpha) / 2 for stability.
    """
    return 0.5 * F.softplus(-log_alpha)


PRIORS = ("log_uniform", "log_uniform_march2017", "ard")


class _WeightNoise(torch.autograd.Function):
    """One fused pass over the weights per training step: the LRT variance weights alpha * theta^2,
    the summed KL, the mean weights theta * keep and keep = [log alpha < threshold], with a
    hand-written backward (see :mod:`sparsevd.core.kernels`).

    Autograd over the same formulas launches ~40 weight-sized kernels per layer and step (four of
    them transcendental); this does the math once and reuses alpha for the variance and the KL.
    """

    @staticmethod
    def forward(ctx, theta, log_sigma2, prior: str, clip: float, threshold: float = math.inf):
        out = kernels.forward(theta, log_sigma2, prior, clip, threshold)
        var_weight, kl, mean_weight, keep, inv, alpha, slope, inside = out
        ctx.save_for_backward(theta, keep, inv, alpha, var_weight, slope, inside)
        ctx.mark_non_differentiable(keep)
        ctx.set_materialize_grads(False)  # no weight-sized zeros for keep's gradient, or an unused output's
        return var_weight, kl, mean_weight, keep

    @staticmethod
    def backward(ctx, grad_var, grad_kl, grad_mean, _grad_keep):
        theta = ctx.saved_tensors[0]
        zero = lambda g, like: torch.zeros_like(like) if g is None else g  # noqa: E731
        grad_theta, grad_log_sigma2 = kernels.backward(*ctx.saved_tensors, zero(grad_var, theta),
                                                       zero(grad_kl, theta.new_zeros(())), zero(grad_mean, theta))
        return grad_theta, grad_log_sigma2, None, None, None


class SVDOLayer(nn.Module):
    """Shared machinery: theta, log sigma^2, log alpha, the pruning mask and the LRT forward.

    Subclasses supply ``_op(x, weight, bias)`` (the deterministic linear map) and create
    ``weight`` / ``bias`` with the shapes torch's own layer would use. This is the one place to
    extend: a new sparse layer only needs its ``_op``.
    """

    threshold: float
    train_clip: bool
    clip_noise: bool
    log_alpha_clip: float

    def _init_variational(self, threshold: float, log_sigma2_init: float, train_clip: bool,
                          prior: str, clip_noise: bool = False, log_alpha_clip: float = LOG_ALPHA_CLIP) -> None:
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold}; pass e.g. threshold=3.0")
        if not (math.isfinite(log_alpha_clip) and log_alpha_clip > 0):
            raise ValueError(f"log_alpha_clip must be finite and > 0, got {log_alpha_clip}; pass e.g. 8.0")
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        if clip_noise and not train_clip:
            raise ValueError("clip_noise drops pruned weights' noise, which only happens with train_clip=True")
        self.threshold = float(threshold)
        self.train_clip = bool(train_clip)
        self.clip_noise = bool(clip_noise)
        self.log_alpha_clip = float(log_alpha_clip)
        self.prior = prior
        self._kl_cache = None
        self.log_sigma2_init = float(log_sigma2_init)
        self.log_sigma2 = nn.Parameter(torch.full_like(self.weight, self.log_sigma2_init))

    def _op(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    @property
    def log_alpha(self) -> torch.Tensor:
        """log alpha = log sigma^2 - log theta^2, clipped to ±log_alpha_clip (the authors' code: ±8)."""
        log_alpha = self.log_sigma2 - torch.log(self.weight * self.weight + 1e-8)
        return torch.clamp(log_alpha, -self.log_alpha_clip, self.log_alpha_clip)

    def mask(self, log_alpha: torch.Tensor | None = None) -> torch.Tensor:
        """1 for weights kept at test time (log alpha < threshold), 0 for pruned ones."""
        return below(self.log_alpha if log_alpha is None else log_alpha, self.threshold)

    def kl(self) -> torch.Tensor:
        """Summed KL of this layer under its prior (Eq. 14, the March-2017 fit or ARD).

        A training forward computes it in the same fused pass as the noise and leaves it here; it
        is used once, and only while the parameters are unchanged since that forward.
        """
        cache, self._kl_cache = self._kl_cache, None
        if cache is not None and cache[1] == (self.weight._version, self.log_sigma2._version,
                                              torch.is_grad_enabled()):
            return cache[0]
        threshold = self.threshold if self.train_clip else math.inf  # the March-2017 fit's pruned constant
        return _WeightNoise.apply(self.weight, self.log_sigma2, self.prior, self.log_alpha_clip, threshold)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._op(x, self.weight * self.mask(), self.bias)
        # train_clip: the mean path sees theta zeroed where log alpha >= threshold, as at test time.
        threshold = self.threshold if self.train_clip else math.inf
        var_weight, kl, theta, keep = _WeightNoise.apply(self.weight, self.log_sigma2, self.prior,
                                                         self.log_alpha_clip, threshold)
        self._kl_cache = (kl, (self.weight._version, self.log_sigma2._version, torch.is_grad_enabled()))
        # Local reparameterization trick (Kingma et al. 2015): sample pre-activations, not weights, so
        # each example in the batch gets independent noise at the cost of one extra op.
        if self.clip_noise:
            # The authors' conv layer zeroes pruned weights before the variance path too, so a
            # pruned weight adds no noise that the deterministic test-time net does not have.
            var_weight = var_weight * keep
        mean = self._op(x, theta, self.bias)
        var = self._op(x * x, var_weight, None)
        # A plain-layout draw: randn_like on a channels_last tensor takes a slow strided path.
        eps = torch.randn(mean.shape, dtype=mean.dtype, device=mean.device)
        return mean + torch.sqrt(var + 1e-8) * eps

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, threshold={self.threshold}, train_clip={self.train_clip}, "
                f"clip_noise={self.clip_noise}, prior={self.prior}, log_alpha_clip={self.log_alpha_clip}")


class LinearSVDO(SVDOLayer, nn.Linear):
    """Fully connected layer with sparse variational dropout; ``weight`` is theta."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, threshold: float = 3.0,
                 log_sigma2_init: float = -10.0, train_clip: bool = False, prior: str = "log_uniform",
                 clip_noise: bool = False, log_alpha_clip: float = LOG_ALPHA_CLIP):
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._init_variational(threshold, log_sigma2_init, train_clip, prior, clip_noise, log_alpha_clip)

    def _op(self, x, weight, bias):
        return F.linear(x, weight, bias)



class Conv2dSVDO(SVDOLayer, nn.Conv2d):
    """2-d convolution with sparse variational dropout; the variance path is conv(x^2, alpha theta^2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, threshold: float = 3.0, log_sigma2_init: float = -10.0,
                 train_clip: bool = False, prior: str = "log_uniform", clip_noise: bool = False,
                 log_alpha_clip: float = LOG_ALPHA_CLIP, dilation=1, groups: int = 1):
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride,
                           padding=padding, dilation=dilation, groups=groups, bias=bias)
        self._init_variational(threshold, log_sigma2_init, train_clip, prior, clip_noise, log_alpha_clip)

    def _op(self, x, weight, bias):
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

