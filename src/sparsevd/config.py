"""The run config's one schema (Hydra structured configs) and its one check, at the edge.

The dataclasses name every option exactly as the YAML and the code do; the values, including the
defaults, live in ``configs/`` (the authors' recipe is the group defaults). Hydra merges the YAML
into this schema, so an unknown key or a value of the wrong type fails at composition;
:func:`validate` then checks ranges and combinations, with a one-line error naming the fix, and
returns the typed :class:`Config` the package runs from.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, List, Optional

from omegaconf import MISSING

from .core.models import CLIP_NOISE, INIT_SCHEMES, KL_FITS, METHODS, MODELS
from .core.pruning import ALLOCATIONS, SCHEDULES
from .data import DATASETS, LABELS, NUM_TRAIN, PREPROCESSING
from .records import CHECKPOINT

# Vocabularies of the training options; the trainer implements each (trainer.lr_factor, train_step).
LR_SCHEDULES = ("constant", "linear", "constant_then_linear")
LOSS_SCALES = ("sum", "mean")

MAX_LOG_ALPHA_CLIP = 20.0  # above ~20, alpha * theta^2 stops being a variance float32 can carry usefully
SCHEMA = "sparsevd_schema"  # the name configs/train.yaml's defaults list extends
PRUNING_OPTIONS = ("schedule", "allocation", "target_compression", "quality", "densities", "rounds", "prune_start",
                   "prune_every")


# The one migration step for configs of older records: options added since, with the value that
# reproduces those records, and options whose null once stood for a value.
ADDED_OPTIONS = {"data.val_size": 0, "method.clip_noise": None, "model.init_from": None, "optim.weight_decay": 0.0,
                 "method.log_alpha_clip": 8.0, "trainer.compile": False,
                 "method.kl_fit": "eq14", "data.labels": "original", "optim.log_sigma2_lr_scale": 1.0,
                 **{f"method.{key}": None for key in PRUNING_OPTIONS}, "trainer.threads": None}
NULL_MEANT = {"method.log_alpha_clip": 8.0, "optim.weight_decay": 0.0}
REMOVED_OPTIONS = ("optim.name",)  # it only ever said adam


def upgrade_config(cfg: dict) -> dict:
    """A copy of a saved config in today's schema, every older record computing what it computed."""
    out = json.loads(json.dumps(cfg))
    for dotted, value in ADDED_OPTIONS.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node.setdefault(leaf, value)
        if node[leaf] is None and dotted in NULL_MEANT:
            node[leaf] = NULL_MEANT[dotted]
    for dotted in REMOVED_OPTIONS:
        group, leaf = dotted.split(".")
        out.get(group, {}).pop(leaf, None)
    return out


class ConfigError(ValueError):
    """An override that cannot work; the message names the key and a valid value."""


@dataclass
class Model:
    name: str = MISSING
    init: str = MISSING            # torch | normal | lasagne (core.models.init_weights)
    init_std: float = MISSING
    init_from: Optional[str] = None  # a trained run folder whose weights become the initial θ


@dataclass
class Data:
    name: str = MISSING
    root: str = MISSING
    preprocess: str = MISSING
    train_size: Optional[int] = None
    val_size: int = MISSING
    labels: str = MISSING          # original | random (data.LABELS)


@dataclass
class Method:
    name: str = MISSING
    threshold: float = MISSING
    log_sigma2_init: float = MISSING
    train_clip: bool = MISSING
    clip_noise: Optional[str] = None
    log_alpha_clip: float = MISSING
    kl_fit: str = MISSING          # eq14 | march2017 (core.models.KL_FITS)
    # method=pruning only (core.pruning); null for the other methods
    schedule: Optional[str] = None            # han | gradual (SCHEDULES)
    allocation: Optional[str] = None          # uniform | erk | global | std | layers (ALLOCATIONS)
    target_compression: Optional[float] = None  # weights / nonzero weights at the end, biases excluded
    quality: Optional[float] = None           # han with allocation=std: threshold = quality x the layer's std
    densities: Optional[List[float]] = None   # allocation=layers: each layer's final share of kept weights, in order
    rounds: Optional[int] = None              # pruning events: prune-retrain rounds (han), steps of the cubic (gradual)
    prune_start: Optional[int] = None         # 0-based epoch of the first event
    prune_every: Optional[int] = None         # epochs between events


@dataclass
class KL:
    start: int = MISSING
    warmup: int = MISSING
    max: float = MISSING


@dataclass
class Optim:  # Adam (the authors' optimizer; the only one)
    lr: float = MISSING
    schedule: str = MISSING
    weight_decay: float = MISSING
    log_sigma2_lr_scale: float = MISSING


@dataclass
class Trainer:
    epochs: int = MISSING
    batch_size: int = MISSING
    eval_every: int = MISSING
    checkpoint_every: int = MISSING
    progress: bool = MISSING
    compile: Any = MISSING  # auto | true | false
    threads: Optional[int] = None  # CPU threads of this run; null or 0: torch's default


@dataclass
class Loss:
    scale: str = MISSING


@dataclass
class Results:
    save: bool = MISSING
    dir: str = MISSING
    force: bool = MISSING


@dataclass
class Logger:
    name: str = MISSING
    project: Optional[str] = None  # the rest is W&B's, unused by logger=none
    entity: Optional[str] = None
    mode: Optional[str] = None
    group: Optional[str] = None
    tags: list = field(default_factory=list)
    dir: Optional[str] = None


@dataclass
class Config:
    name: str = MISSING
    seed: int = MISSING
    device: str = MISSING
    resume: Optional[str] = None
    outputs: str = MISSING
    model: Model = field(default_factory=Model)
    data: Data = field(default_factory=Data)
    method: Method = field(default_factory=Method)
    kl: KL = field(default_factory=KL)
    optim: Optim = field(default_factory=Optim)
    trainer: Trainer = field(default_factory=Trainer)
    loss: Loss = field(default_factory=Loss)
    results: Results = field(default_factory=Results)
    logger: Logger = field(default_factory=Logger)

    @property
    def identity(self) -> dict:
        """What a checkpoint must match to be resumed into this run."""
        return {"model": self.model.name, "method": self.method.name, "data": self.data.name}


def register() -> None:
    """Make the schema known to Hydra (``configs/train.yaml`` lists it first in its defaults)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA, node=Config)


def _typed(cls, values: dict, prefix: str = ""):
    """``cls`` filled from a plain dict, naming the first unknown or missing key."""
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown option {prefix}{unknown[0]}; see docs/usage.md for the options")
    kwargs = {}
    for name, f in names.items():
        value = values.get(name, MISSING)
        if value == MISSING and f.default is MISSING:
            raise ConfigError(f"option {prefix}{name} is missing; set it (e.g. {prefix}{name}=...)")
        if value == MISSING:
            continue
        sub = f.default_factory() if callable(f.default_factory) else None
        kwargs[name] = _typed(type(sub), value or {}, f"{prefix}{name}.") if is_dataclass(sub) else value
    return cls(**kwargs)


def validate(cfg: dict) -> Config:
    """Check every value of a resolved config before anything is written; the typed Config, or a
    ConfigError naming the fix. Configs of older records pass through upgrade_config first."""
    c = _typed(Config, upgrade_config(cfg))
    _check_run(c)
    _check_method(c)
    _check_pruning(c)
    return c


def _need(ok, msg):
    if not ok:
        raise ConfigError(msg)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_run(c: Config) -> None:
    """The model, data, trainer and run options."""
    need, is_int, finite = _need, _is_int, _finite
    tr, d = c.trainer, c.data
    need(c.model.name in MODELS, f"unknown model {c.model.name!r}; use model={'|'.join(MODELS)}")
    need(c.method.name in METHODS, f"unknown method {c.method.name!r}; use method={'|'.join(METHODS)}")
    need(d.name in DATASETS, f"unknown data {d.name!r}; use data={'|'.join(DATASETS)}")
    need(c.logger.name in ("wandb", "none"), f"unknown logger {c.logger.name!r}; use logger=wandb|none")
    for key in ("epochs", "batch_size", "eval_every", "checkpoint_every"):
        need(is_int(getattr(tr, key)) and getattr(tr, key) >= 1, f"trainer.{key}={getattr(tr, key)} must be a whole number >= 1")
    need(is_int(d.val_size) and 0 <= d.val_size < NUM_TRAIN, f"data.val_size={d.val_size} is out of range; use 0..{NUM_TRAIN - 1}")
    available = NUM_TRAIN - d.val_size
    need(d.train_size is None or (is_int(d.train_size) and 1 <= d.train_size <= available),
         f"data.train_size={d.train_size} is out of range; use 1..{available} or null for all")
    need(tr.batch_size <= (d.train_size or available),
         f"trainer.batch_size={tr.batch_size} is larger than the {d.train_size or available} training examples")
    need(c.loss.scale in LOSS_SCALES, f"loss.scale must be one of {'|'.join(LOSS_SCALES)}")
    need(d.labels in LABELS, f"data.labels={d.labels!r}; use data.labels={'|'.join(LABELS)}")
    need(d.preprocess in PREPROCESSING, f"data.preprocess must be one of {'|'.join(PREPROCESSING)}")
    need(c.model.init in INIT_SCHEMES, f"model.init={c.model.init!r} must be one of {'|'.join(INIT_SCHEMES)}")
    need(finite(c.model.init_std) and c.model.init_std > 0, "model.init_std must be finite and > 0")
    src = c.model.init_from
    need(src != "required", f"this experiment starts from a trained run; pass model.init_from=<run folder "
                            f"of a trained model={c.model.name} run, e.g. a {c.model.name}_dense one>")
    need(src is None or isinstance(src, str) and src.strip(),
         f"model.init_from={src!r} must be a run folder (with {CHECKPOINT}), a record folder "
         f"(with weights.safetensors) or null")
    need(c.device in ("auto", "cpu", "cuda"), f"device={c.device!r}; use auto|cpu|cuda")
    need(is_int(c.seed), f"seed={c.seed!r} must be a whole number")
    need(tr.compile in ("auto", True, False), f"trainer.compile={tr.compile!r}; use auto|true|false")
    need(tr.threads is None or is_int(tr.threads) and tr.threads >= 0,
         f"trainer.threads={tr.threads!r} must be a whole number >= 1, or 0 / null for torch's default")


def _check_method(c: Config) -> None:
    """The method, optimizer and KL-schedule options, and how they combine."""
    need, is_int, finite = _need, _is_int, _finite
    m, o, kl = c.method, c.optim, c.kl
    need(finite(m.threshold), f"method.threshold={m.threshold} must be finite, e.g. 3.0")
    need(finite(m.log_sigma2_init), "method.log_sigma2_init must be finite, e.g. -10.0")
    need(finite(m.log_alpha_clip) and 0 < m.log_alpha_clip <= MAX_LOG_ALPHA_CLIP,
         f"method.log_alpha_clip={m.log_alpha_clip} must be a number in (0, {MAX_LOG_ALPHA_CLIP}], e.g. the authors' 8.0")
    need(m.threshold <= m.log_alpha_clip, f"method.threshold={m.threshold} must not exceed "
                                          f"method.log_alpha_clip={m.log_alpha_clip}, or no weight is ever pruned")
    need(m.kl_fit in KL_FITS, f"method.kl_fit={m.kl_fit!r}; use method.kl_fit={'|'.join(KL_FITS)}")
    need(m.kl_fit == "eq14" or m.name == "sparsevd",
         f"method.kl_fit={m.kl_fit} is a fit of the log-uniform prior's KL; use it with method=sparsevd")
    need(m.clip_noise in list(CLIP_NOISE), f"method.clip_noise={m.clip_noise!r} must be null, conv or all")
    need(m.clip_noise is None or m.train_clip or m.name == "dense",
         f"method.clip_noise={m.clip_noise} acts on weights pruned during training; add method.train_clip=true")
    need(finite(o.lr) and o.lr > 0, f"optim.lr={o.lr} must be finite and > 0")
    need(o.schedule in LR_SCHEDULES, f"optim.schedule must be one of {'|'.join(LR_SCHEDULES)}")
    need(finite(o.weight_decay) and o.weight_decay >= 0, f"optim.weight_decay={o.weight_decay} must be a finite number >= 0")
    need(finite(o.log_sigma2_lr_scale) and o.log_sigma2_lr_scale > 0,
         f"optim.log_sigma2_lr_scale={o.log_sigma2_lr_scale} must be finite and > 0, e.g. 1.0")
    need(not o.weight_decay or m.name in ("dense", "pruning"),
         f"optim.weight_decay={o.weight_decay} is for dense and pruned nets; method={m.name} is regularised by its KL term")
    need(finite(kl.max) and kl.max >= 0, f"kl.max={kl.max} must be finite and >= 0")
    need(is_int(kl.warmup) and kl.warmup >= 0, "kl.warmup must be a whole number of epochs >= 0")
    need(is_int(kl.start) and kl.start >= -kl.warmup,
         f"kl.start={kl.start} must be a whole number of epochs >= -kl.warmup ({-kl.warmup})")


def _check_pruning(c: Config) -> None:
    """The options of method=pruning: what it starts from, how far and when it prunes."""
    need, is_int, finite, m = _need, _is_int, _finite, c.method
    if m.name != "pruning":
        given = [k for k in PRUNING_OPTIONS if getattr(m, k) is not None]
        need(not given, f"method.{given[0] if given else ''} is an option of method=pruning; drop it for method={m.name}")
        return
    need(c.model.init_from is not None, f"method=pruning prunes a trained net; pass model.init_from=<record folder of "
                                        f"a trained dense {c.model.name}, e.g. results/runs/{c.model.name}_dense/seed{c.seed}>")
    need(m.schedule in SCHEDULES, f"method.schedule={m.schedule!r}; use method.schedule={'|'.join(SCHEDULES)}")
    need(m.allocation in ALLOCATIONS, f"method.allocation={m.allocation!r}; use method.allocation={'|'.join(ALLOCATIONS)}")
    need(m.allocation != "layers" or m.densities is not None,
         "method.allocation=layers keeps each layer's given share; set method.densities=[share per layer, in order]")
    need(m.allocation == "layers" or m.densities is None,
         f"method.densities is read by method.allocation=layers only; drop it, or set the allocation (now {m.allocation})")
    if m.densities is not None:
        _check_densities(m.densities, c.model.name)
    need(sum(x is not None for x in (m.target_compression, m.quality, m.densities)) == 1,
         "method=pruning takes one of method.target_compression (e.g. 12), method.quality and method.densities; "
         "set one, null the others")
    need(m.target_compression is None or finite(m.target_compression) and m.target_compression > 1,
         f"method.target_compression={m.target_compression} must be a finite number > 1 (weights / nonzero weights)")
    need(m.quality is None or finite(m.quality) and m.quality > 0, f"method.quality={m.quality} must be finite and > 0")
    need(m.quality is None or (m.schedule, m.allocation) == ("han", "std"),
         "method.quality sets Han's threshold (quality x the layer's std); use it with method.schedule=han "
         "method.allocation=std, or set method.target_compression instead")
    for key, low in (("rounds", 1), ("prune_start", 0), ("prune_every", 1)):
        need(is_int(getattr(m, key)) and getattr(m, key) >= low, f"method.{key}={getattr(m, key)} must be a whole number >= {low}")
    last = m.prune_start + (m.rounds - 1) * m.prune_every
    need(last < c.trainer.epochs, f"the last pruning event, epoch method.prune_start + (method.rounds - 1) x "
                                  f"method.prune_every = {last}, must come before trainer.epochs={c.trainer.epochs}")


def _check_densities(densities: list, model: str) -> None:
    """One share in (0, 1] for each weighted layer of ``model``, in the model's order."""
    from .core.models import build_model, weighted_layers
    names = list(weighted_layers(build_model(model, "dense")))
    _need(len(densities) == len(names), f"method.densities has {len(densities)} shares; {model} needs one per layer "
                                         f"({', '.join(names)}), e.g. method.densities=[{','.join(['0.1'] * len(names))}]")
    bad = [f"{n}: {v}" for n, v in zip(names, densities) if not (_finite(v) and 0 < v <= 1)]
    _need(not bad, f"method.densities: {bad[0] if bad else ''} must be a share of the layer's weights in (0, 1]")


def compose(*overrides: str, config_dir: str | None = None) -> Config:
    """The validated config that ``scripts/train.py <overrides>`` would run (from a checkout's ``configs/``)."""
    from pathlib import Path

    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf
    folder = config_dir or str(Path(__file__).resolve().parents[2] / "configs")
    with initialize_config_dir(config_dir=folder, version_base="1.3"):
        cfg = hydra_compose("train", overrides=list(overrides))
    return validate(OmegaConf.to_container(cfg, resolve=True))


register()
