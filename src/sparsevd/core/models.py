"""LeNet-300-100 and LeNet-5-Caffe, built dense or sparse from one layer factory.

To add a model: write a class whose ``__init__(self, layers: LayerFactory, **kwargs)`` builds its
weighted layers with ``layers.linear`` / ``layers.conv2d``, decorate it with ``@register_model``,
and add ``configs/model/<name>.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
import torch
import torch.nn.functional as F
from torch import nn

from .layers import LOG_ALPHA_CLIP, Conv2dSVDO, LinearSVDO, SVDOLayer

METHODS = ("dense", "sparsevd", "ard", "pruning")  # pruning: plain layers, masked during training (core.pruning)
PRIOR_OF_METHOD = {"sparsevd": "log_uniform", "ard": "ard"}
# method.kl_fit -> the prior a sparsevd layer computes its KL with: the paper's Eq. 14, or the fit of
# the authors' first published code (layers.kl_march2017), whose pruned weights get a constant KL.
KL_FITS = {"eq14": "log_uniform", "march2017": "log_uniform_march2017"}
MODELS: dict[str, type[nn.Module]] = {}


def register_model(cls: type[nn.Module]) -> type[nn.Module]:
    MODELS[cls.name] = cls
    return cls


# method.clip_noise -> the layer kinds whose pruned weights (train_clip) also leave the noise path.
# The authors' code does this in its conv layer only; its dense layer keeps their noise.
CLIP_NOISE = {None: (), "conv": ("conv",), "all": ("conv", "linear")}


@dataclass
class LayerFactory:
    """Makes plain torch layers for ``dense`` and ``pruning``, and SVDO layers for ``sparsevd`` / ``ard``."""

    method: str = "sparsevd"
    threshold: float = 3.0
    log_sigma2_init: float = -10.0
    train_clip: bool = False
    clip_noise: str | None = None   # None, "conv" (the authors' layers) or "all": see CLIP_NOISE
    log_alpha_clip: float = LOG_ALPHA_CLIP
    kl_fit: str = "eq14"            # sparsevd only: see KL_FITS

    @property
    def sparse(self) -> bool:
        return self.method in PRIOR_OF_METHOD

    def _svdo_kwargs(self, kind: str) -> dict:
        return dict(threshold=self.threshold, log_sigma2_init=self.log_sigma2_init, train_clip=self.train_clip,
                    prior=KL_FITS[self.kl_fit] if self.method == "sparsevd" else PRIOR_OF_METHOD[self.method],
                    clip_noise=kind in CLIP_NOISE[self.clip_noise],
                    log_alpha_clip=self.log_alpha_clip)

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        if self.sparse:
            return LinearSVDO(in_features, out_features, **self._svdo_kwargs("linear"))
        return nn.Linear(in_features, out_features)

    def conv2d(self, in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
        if self.sparse:
            return Conv2dSVDO(in_channels, out_channels, kernel_size, **self._svdo_kwargs("conv"))
        return nn.Conv2d(in_channels, out_channels, kernel_size)


@register_model
class LeNet300(nn.Module):
    """784-300-100-10 MLP with ReLU (LeCun et al. 1998), Table 1's LeNet-300-100."""

    name = "lenet300"

    def __init__(self, layers: LayerFactory, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.fc1 = layers.linear(in_features, 300)
        self.fc2 = layers.linear(300, 100)
        self.fc3 = layers.linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


@register_model
class LeNet5(nn.Module):
    """LeNet-5-Caffe: conv20@5x5, pool, conv50@5x5, pool, fc 800-500, fc 500-10, ReLU."""

    name = "lenet5"

    def __init__(self, layers: LayerFactory, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv1 = layers.conv2d(in_channels, 20, 5)
        self.conv2 = layers.conv2d(20, 50, 5)
        self.fc1 = layers.linear(800, 500)
        self.fc2 = layers.linear(500, num_classes)
        # NHWC: oneDNN's convolutions (backward most of all) and max-pooling run faster on 2 CPU
        # cores in this layout (LeNet-5 step: 40 -> 28 ms dense, 98 -> 87 ms SparseVD).
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        # flatten in NCHW order, so fc1's 800 inputs mean what they mean in LeNet-5-Caffe
        x = F.relu(self.fc1(x.contiguous().flatten(1)))
        return self.fc2(x)


def weighted_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers whose weights count for sparsity and compression, by stable name (fc1, conv1...)."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d))}


def svdo_layers(model: nn.Module) -> list[SVDOLayer]:
    return [m for m in model.modules() if isinstance(m, SVDOLayer)]


INIT_SCHEMES = ("torch", "normal", "lasagne")


def init_weights(model: nn.Module, scheme: str, std: float) -> None:
    """``torch``: torch's default init; ``normal``: theta ~ N(0, std^2), biases 0 (the authors' scripts);
    ``lasagne``: what the authors' lasagne code ends up with. Their conv layer takes its init as ``Wconv``,
    so the scripts' ``W=init.Normal()`` is swallowed by ``**kwargs``: conv weights get lasagne's
    default Glorot uniform, dense weights N(0, std^2), biases 0."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"model.init must be one of {INIT_SCHEMES}, got {scheme!r}")
    if scheme == "torch":
        return
    with torch.no_grad():
        for layer in weighted_layers(model).values():
            if scheme == "lasagne" and layer.weight.dim() == 4:
                nn.init.xavier_uniform_(layer.weight)
            else:
                layer.weight.normal_(0.0, std)
            if layer.bias is not None:
                layer.bias.zero_()


def build_model(name: str, method: str = "sparsevd", *, init: str = "torch", init_std: float = 0.01,
                **layer_options) -> nn.Module:
    """Model ``name`` with ``method``'s layers; ``layer_options`` are LayerFactory's (the ``method.*`` options)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    if layer_options.get("clip_noise") not in CLIP_NOISE:
        raise ValueError(f"clip_noise must be one of {list(CLIP_NOISE)}, got {layer_options['clip_noise']!r}")
    if layer_options.get("kl_fit", "eq14") not in KL_FITS:
        raise ValueError(f"kl_fit must be one of {list(KL_FITS)}, got {layer_options['kl_fit']!r}")
    model = MODELS[name](LayerFactory(method, **layer_options))
    init_weights(model, init, init_std)
    return model


def build_from_config(cfg) -> nn.Module:
    """The network a validated run config trains, freshly initialised (a pruned net is built plain:
    its masks are attached by the trainer)."""
    options = {f.name: getattr(cfg.method, f.name) for f in fields(LayerFactory) if f.name != "method"}
    return build_model(cfg.model.name, cfg.method.name, init=cfg.model.init, init_std=cfg.model.init_std, **options)


def copy_means(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Set every weight/bias (the posterior means θ) from ``state``, a trained run's state dict.

    The authors' code can start LeNet-5 SparseVD from a trained dense net; log σ² keeps its init.
    Raises ValueError naming the first parameter the source lacks or has in another shape.
    """
    names = [n for n, _ in model.named_parameters() if n.endswith((".weight", ".bias"))]
    params = dict(model.named_parameters())
    for name in names:
        if name not in state or state[name].shape != params[name].shape:
            got = "missing" if name not in state else f"shape {tuple(state[name].shape)}"
            raise ValueError(f"{name}: {got} in the source, need {tuple(params[name].shape)}")
    with torch.no_grad():
        for name in names:
            params[name].copy_(state[name])
    return names

