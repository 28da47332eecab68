"""Every option of a resolved run config checked once, before anything is written."""
from __future__ import annotations

import math

from .data import DATASETS, NUM_TRAIN, PREPROCESSING
from .models import CLIP_NOISE, INIT_SCHEMES, METHODS, MODELS
from .nn import LOG_ALPHA_CLIP
from .records import CHECKPOINT
from .trainer import LOSS_SCALES, LR_SCHEDULES

MAX_LOG_ALPHA_CLIP = 20.0


class ConfigError(ValueError):
    """An override that cannot work; the message names the key and a valid value."""


def validate(cfg: dict) -> None:
    """Check every value before anything is written; raise ConfigError naming the fix."""
    def need(ok, msg):
        if not ok:
            raise ConfigError(msg)

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def finite(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    need(cfg["model"]["name"] in MODELS, f"unknown model {cfg['model']['name']!r}; use model={'|'.join(MODELS)}")
    need(cfg["method"]["name"] in METHODS, f"unknown method {cfg['method']['name']!r}; use method={'|'.join(METHODS)}")
    need(cfg["data"]["name"] in DATASETS, f"unknown data {cfg['data']['name']!r}; use data={'|'.join(DATASETS)}")
    need(cfg["logger"]["name"] in ("wandb", "none"), f"unknown logger {cfg['logger']['name']!r}; use logger=wandb|none")
    tr, size, val = cfg["trainer"], cfg["data"]["train_size"], cfg["data"]["val_size"]
    for key in ("epochs", "batch_size", "eval_every", "checkpoint_every"):
        need(is_int(tr[key]) and tr[key] >= 1, f"trainer.{key}={tr[key]} must be a whole number >= 1")
    need(is_int(val) and 0 <= val < NUM_TRAIN, f"data.val_size={val} is out of range; use 0..{NUM_TRAIN - 1}")
    need(size is None or (is_int(size) and 1 <= size <= NUM_TRAIN - val),
         f"data.train_size={size} is out of range; use 1..{NUM_TRAIN - val} or null for all")
    need(tr["batch_size"] <= (size or NUM_TRAIN - val),
         f"trainer.batch_size={tr['batch_size']} is larger than the {size or NUM_TRAIN - val} training examples")
    need(finite(cfg["method"]["threshold"]), f"method.threshold={cfg['method']['threshold']} must be finite, e.g. 3.0")
    need(finite(cfg["method"]["log_sigma2_init"]), "method.log_sigma2_init must be finite, e.g. -10.0")
    clip = log_alpha_clip(cfg)
    # Above ~20, alpha * theta^2 stops being a variance the float32 LRT path can carry usefully.
    need(finite(clip) and 0 < clip <= MAX_LOG_ALPHA_CLIP,
         f"method.log_alpha_clip={clip} must be null (the authors' {LOG_ALPHA_CLIP}) or a number in "
         f"(0, {MAX_LOG_ALPHA_CLIP}], e.g. 10")
    need(cfg["method"]["threshold"] <= clip, f"method.threshold={cfg['method']['threshold']} must not exceed "
                                             f"method.log_alpha_clip={clip}, or no weight is ever pruned")
    clip_noise = cfg["method"].get("clip_noise")
    need(clip_noise in list(CLIP_NOISE), f"method.clip_noise={clip_noise!r} must be null, conv or all")  # list: a list value is unhashable
    need(clip_noise is None or cfg["method"]["train_clip"] or cfg["method"]["name"] == "dense",
         f"method.clip_noise={clip_noise} acts on weights pruned during training; add method.train_clip=true")
    need(finite(cfg["optim"]["lr"]) and cfg["optim"]["lr"] > 0, f"optim.lr={cfg['optim']['lr']} must be finite and > 0")
    wd = cfg["optim"].get("weight_decay")
    need(wd is None or finite(wd) and wd >= 0, f"optim.weight_decay={wd} must be null or a finite number >= 0")
    need(not wd or cfg["method"]["name"] == "dense",
         f"optim.weight_decay={wd} is for dense baselines; method={cfg['method']['name']} is regularised by its KL term")
    need(cfg["optim"]["schedule"] in LR_SCHEDULES, f"optim.schedule must be one of {'|'.join(LR_SCHEDULES)}")
    kl = cfg["kl"]
    need(finite(kl["max"]) and kl["max"] >= 0, f"kl.max={kl['max']} must be finite and >= 0")
    need(is_int(kl["start"]) and kl["start"] >= 0 and is_int(kl["warmup"]) and kl["warmup"] >= 0,
         "kl.start and kl.warmup must be whole numbers of epochs >= 0")
    need(cfg["loss"]["scale"] in LOSS_SCALES, f"loss.scale must be one of {'|'.join(LOSS_SCALES)}")
    need(cfg["data"]["preprocess"] in PREPROCESSING, f"data.preprocess must be one of {'|'.join(PREPROCESSING)}")
    need(cfg["model"]["init"] in INIT_SCHEMES, f"model.init={cfg['model']['init']!r} must be one of {'|'.join(INIT_SCHEMES)}")
    need(finite(cfg["model"]["init_std"]) and cfg["model"]["init_std"] > 0, "model.init_std must be finite and > 0")
    init_from = cfg["model"].get("init_from")
    need(init_from != "required", f"this experiment starts from a trained run; pass model.init_from=<run folder "
                                  f"of a trained model={cfg['model']['name']} run, e.g. a {cfg['model']['name']}_dense one>")
    need(init_from is None or isinstance(init_from, str) and init_from.strip(),
         f"model.init_from={init_from!r} must be a run folder (with {CHECKPOINT}) or null")
    need(cfg["device"] in ("auto", "cpu", "cuda"), f"device={cfg['device']!r}; use auto|cpu|cuda")
    need(is_int(cfg["seed"]), f"seed={cfg['seed']!r} must be a whole number")
    need(tr.get("compile", "auto") in ("auto", True, False), f"trainer.compile={tr.get('compile')!r}; use auto|true|false")


def log_alpha_clip(cfg: dict) -> float:
    """method.log_alpha_clip, where null (and configs from before the key existed) mean the authors' 8."""
    clip = cfg["method"].get("log_alpha_clip")
    return LOG_ALPHA_CLIP if clip is None else clip
