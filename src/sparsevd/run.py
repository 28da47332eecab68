"""One training run from a resolved config: validate, build, train, record, publish."""
from __future__ import annotations

import json
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from .data import DATASETS, NUM_TRAIN, PREPROCESSING, DataError, load_dataset
from .metrics import effective_weight
from .models import CLIP_NOISE, INIT_SCHEMES, METHODS, MODELS, build_from_config, copy_means, svdo_layers, weighted_layers
from .nn import LOG_ALPHA_CLIP
from .records import (CHECKPOINT, RecordError, atomic_write_json, atomic_write_text, environment,
                      load_checkpoint, publish, read_checkpoint, record_dir, upgrade_config)
from .tracking import make_tracker
from .weights import WEIGHTS, save_weights
from .trainer import (LOSS_SCALES, LR_SCHEDULES, Interrupted, TrainConfig, TrainingError, fit,
                      resolve_device, seed_everything, summary_line)

# Keys that may differ between a run and its resumption without changing what is computed.
VOLATILE_KEYS = ("resume", "outputs", "logger", "device", "results", "data.root", "trainer.progress")
MAX_LOG_ALPHA_CLIP = 20.0
INIT_FROM = "init_from.json"  # where a run keeps which trained run initialised its means


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


def comparable(cfg: dict) -> dict:
    """The config without the keys that may change across a resume."""
    out = upgrade_config(cfg)
    for dotted in VOLATILE_KEYS:
        *parents, leaf = dotted.split(".")
        node = out
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    if isinstance(out.get("method"), dict) and out["method"].get("log_alpha_clip") == LOG_ALPHA_CLIP:
        out["method"]["log_alpha_clip"] = None  # an explicit 8 is what null (or a config from before the key) means
    return out


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}={va!r} (checkpoint) vs {vb!r} (now)")
    return out


def find_unfinished(outputs: Path, cfg: dict) -> Path | None:
    """The newest run folder under ``outputs`` with a checkpoint, no final.json and the same config."""
    want = comparable(cfg)
    candidates = []
    for ckpt in Path(outputs).rglob(CHECKPOINT):
        run_dir = ckpt.parent
        if (run_dir / "final.json").exists() or not (run_dir / "config.yaml").exists():
            continue
        try:
            saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        except yaml.YAMLError:
            continue
        if not _diff(comparable(saved), want):  # a key added since (default null) still matches
            candidates.append((ckpt.stat().st_mtime, run_dir))
    return max(candidates)[1] if candidates else None


def log_alpha_clip(cfg: dict) -> float:
    """method.log_alpha_clip, where null (and configs from before the key existed) mean the authors' 8."""
    clip = cfg["method"].get("log_alpha_clip")
    return LOG_ALPHA_CLIP if clip is None else clip


def save_arrays(model, path: Path) -> None:
    """Compact per-layer log-alpha histograms and per-input surviving-weight counts, for the figures.

    The bins span the layers' own log-alpha clip, so the clipped mass sits in the two end bins.
    """
    clip = max((layer.log_alpha_clip for layer in svdo_layers(model)), default=LOG_ALPHA_CLIP)
    bins = np.linspace(-clip, clip, max(round(10 * clip), 1) + 1)
    arrays = {"bin_edges": bins}
    for name, layer in weighted_layers(model).items():
        w = effective_weight(layer)
        arrays[f"inputs_kept/{name}"] = (w != 0).flatten(1).sum(0).cpu().numpy().astype(np.int32) \
            if w.dim() == 2 else (w != 0).sum((0, 2, 3)).cpu().numpy().astype(np.int32)
    for layer in svdo_layers(model):
        name = next(n for n, m in model.named_modules() if m is layer)
        la = layer.log_alpha.detach().cpu().numpy().ravel()
        arrays[f"log_alpha_hist/{name}"] = np.histogram(la, bins)[0].astype(np.int64)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def run(cfg: dict, run_dir: Path, overrides: list[str] = ()) -> dict | None:
    """Train one configuration and write its record into ``run_dir``; returns final.json's content."""
    validate(cfg)
    name, seed = cfg["name"], cfg["seed"]
    dest = record_dir(Path(cfg["results"]["dir"]), name, seed) if cfg["results"]["save"] else None
    if dest is not None:
        if (dest / "final.json").exists() and not cfg["results"]["force"]:
            print(f"record exists: {dest}/final.json; skipping (FORCE=1 / results.force=true to re-run)")
            return None
        _check_writable(dest.parent)
    resume = cfg["resume"]
    if resume == "auto":
        found = find_unfinished(Path(cfg.get("outputs", "outputs")), cfg)
        print(f"resume=auto: {'continuing ' + str(found) if found else 'no unfinished run of this config, starting fresh'}")
        resume, run_dir = (True, found) if found else (False, run_dir)
    elif resume:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").exists():
            raise RecordError(f"resume={resume}: no config.yaml there; pass the folder of an earlier run")
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        diff = _diff(comparable(saved), comparable(cfg))
        if diff:
            raise RecordError(f"resume={resume} was trained with a different config: {'; '.join(diff[:3])}; "
                              f"resume with the run's own overrides, or start a new run")
        if not (run_dir / CHECKPOINT).exists():
            raise RecordError(f"resume={run_dir}: no {CHECKPOINT} there (the run never finished an epoch); "
                              f"start a new run instead")
        resume = True
    device = resolve_device(cfg["device"])
    env = environment(device)  # at start: the code that runs is the code this SHA names
    seed_everything(seed)
    m, d = cfg["method"], cfg["data"]
    data = load_dataset(d["name"], d["root"], d["preprocess"], d["train_size"], device, d["val_size"])
    model = build_from_config(cfg).to(device)
    init_info = (init_means(model, cfg["model"]["name"], Path(cfg["model"]["init_from"]))
                 if cfg["model"].get("init_from") and not resume else None)
    tc = TrainConfig(epochs=cfg["trainer"]["epochs"], batch_size=cfg["trainer"]["batch_size"],
                     lr=cfg["optim"]["lr"], schedule=cfg["optim"]["schedule"],
                     weight_decay=cfg["optim"].get("weight_decay") or 0.0, kl_start=cfg["kl"]["start"],
                     kl_warmup=cfg["kl"]["warmup"], kl_max=cfg["kl"]["max"], loss_scale=cfg["loss"]["scale"],
                     eval_every=cfg["trainer"]["eval_every"],
                     checkpoint_every=cfg["trainer"]["checkpoint_every"], progress=cfg["trainer"]["progress"],
                     identity={"model": cfg["model"]["name"], "method": m["name"], "data": d["name"]})
    # Only now, with the config valid and the data readable, does the run write anything.
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    if init_info is not None:
        atomic_write_json(run_dir / INIT_FROM, init_info)
    tracker_id = load_checkpoint(run_dir / CHECKPOINT).get("tracker_id") if resume else None
    tracker = make_tracker(cfg["logger"], cfg, f"{name}-seed{seed}", run_dir, tracker_id)
    exit_code, final = 1, None
    start = time.perf_counter()
    try:
        def on_eval(row):
            print(summary_line(row), flush=True)
            tracker.log(row)
        history = fit(model, data, tc, run_dir, seed=seed, device=device, on_eval=on_eval, resume=bool(resume),
                      segment=env, keep={"tracker_id": tracker.run_id})
        final = {"name": name, "seed": seed, "metrics": history[-1], "config": cfg, "overrides": list(overrides),
                 "environment": env, "init_from": _read_json(run_dir / INIT_FROM),
                 "segments": load_checkpoint(run_dir / CHECKPOINT).get("segments", []),
                 "wall_time": history[-1]["time"],
                 "wall_time_this_process": time.perf_counter() - start, "run_dir": str(run_dir)}
        save_arrays(model, run_dir / "arrays.npz")
        save_weights(model, run_dir / WEIGHTS)
        atomic_write_json(run_dir / "final.json", final)
        exit_code = 0
    except Interrupted as exc:
        kept = [o for o in overrides if not o.startswith(("resume=", "hydra."))]
        cmd = " ".join(["python scripts/train.py", *map(shlex.quote, kept), f"resume={run_dir}"])
        print(f"\n{exc}: checkpoint saved in {run_dir}/{CHECKPOINT}; resume with:\n  {cmd}", file=sys.stderr)
        raise
    finally:
        tracker.finish(final["metrics"] if final else None, exit_code)
    if dest is not None:
        publish(run_dir, dest, force=cfg["results"]["force"])
        print(f"record: {dest}")
    print(f"done in {final['wall_time']:.1f}s: {run_dir}/final.json")
    return final


def init_means(model, model_name: str, source: Path) -> dict:
    """Copy θ from the checkpoint of the run in ``source``; returns what the record keeps of it."""
    state, digest = read_checkpoint(source / CHECKPOINT)
    trained = (state.get("identity") or {}).get("model")
    if trained != model_name:
        raise ConfigError(f"model.init_from={source} holds a {trained} run, not {model_name}; "
                          f"pass a run folder of model={model_name}")
    try:
        copied = copy_means(model, state["model"])
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"model.init_from={source}: cannot copy weights ({exc}); pass a run of the same net") from None
    return {"run": str(source), "epoch": state.get("epoch"), "identity": state.get("identity"),
            "checkpoint_sha256": digest, "copied": copied}


def remove_empty_folders(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and then its parents while they are empty, up to (not including) ``stop``."""
    folder, stop = Path(folder).absolute(), Path(stop).absolute()
    while folder != stop and stop in folder.parents and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _check_writable(folder: Path) -> None:
    """Fail before training, not after it, if the record could not be published (root-proof)."""
    probe = Path(folder).absolute()
    while not probe.exists():
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(str(probe))
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError:
        raise RecordError(f"results folder {folder} is not writable ({probe} is not a writable folder); "
                          f"fix its permissions or set results.dir") from None


ERRORS = (ConfigError, DataError, RecordError, TrainingError)
