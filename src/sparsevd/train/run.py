"""One training run from a resolved config: schema, data, model, fit, record, publish."""
from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ..core import kernels
from .arrays import save_arrays
from ..config import ConfigError, validate
from ..data import DataError, load_dataset
from ..core.models import build_from_config, copy_means
from ..records import CHECKPOINT, environment, publish, record_dir
from ..io import RecordError, atomic_write_json, atomic_write_text
from .checkpoint import load_checkpoint, read_checkpoint, resume_target
from .tracking import make_tracker
from .device import DeviceError, resolve_device, seed_everything, use_threads
from .trainer import Interrupted, TrainingError, fit, summary_line
from ..compress.weights import WEIGHTS, WeightsError, load_record, save_weights, weights_sha256

INIT_FROM = "init_from.json"  # where a run keeps which trained run initialised its means


def run(cfg: dict, run_dir: Path, overrides: list[str] = ()) -> dict | None:
    """Train one configuration and write its record into ``run_dir``; returns final.json's content.

    The route, each step once: schema (the typed config travels from here on; the record keeps the
    resolved dict it came from) -> where (destination, resume, device) -> data -> model -> fit -> record
    -> publish."""
    c = validate(cfg)
    dest = _destination(c)
    if dest is False:
        return None
    resume, run_dir = resume_target(c, Path(run_dir))
    device, data, model, env = start(c)
    init_info = init_means(model, c.model.name, Path(c.model.init_from)) if c.model.init_from and not resume else None
    source = ((init_info or {}).get("identity") or {}).get("method", "dense")
    if c.method.name == "pruning" and source != "dense":
        raise ConfigError(f"model.init_from={c.model.init_from} holds a method={source} run; method=pruning prunes a "
                          f"trained dense net: pass a {c.model.name}_dense record")
    final = _fit_and_record(c, cfg, model, data, Path(run_dir), device, env, init_info, bool(resume), list(overrides))
    if dest is not None:
        publish(run_dir, dest, force=c.results.force)
        print(f"record: {dest}")
    print(f"done in {final['wall_time']:.1f}s: {run_dir}/final.json")
    return final


def start(c):
    """Device, threads, seed, data, fresh model and kernels, in the order every run takes them; returns
    (device, data, model, environment), the last read at the start: the code that runs is the code its
    SHA names, on these threads."""
    device = resolve_device(c.device)
    use_threads(c.trainer.threads)
    env = environment(device)
    seed_everything(c.seed)
    d = c.data
    data = load_dataset(d.name, d.root, d.preprocess, d.train_size, device, d.val_size, d.labels)
    model = build_from_config(c).to(device)
    kernels.use_compiled(c.trainer.compile)
    return device, data, model, env


def _destination(c) -> Path | None | bool:
    """Where the finished record is published (None: nowhere), or False when a record is already there."""
    if not c.results.save:
        return None
    dest = record_dir(Path(c.results.dir), c.name, c.seed)
    if (dest / "final.json").exists() and not c.results.force:
        print(f"record exists: {dest}/final.json; skipping (FORCE=1 / results.force=true to re-run)")
        return False
    _check_writable(dest.parent)
    return dest


def _fit_and_record(c, cfg: dict, model, data, run_dir: Path, device, env: dict, init_info, resume: bool,
                    overrides: list[str]) -> dict:
    """Only now, with the config valid and the data readable, does the run write anything: its config,
    then a checkpoint per epoch, then final.json, the weights and the report's arrays."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    if init_info is not None:
        atomic_write_json(run_dir / INIT_FROM, init_info)
    tracker_id = load_checkpoint(run_dir / CHECKPOINT).get("tracker_id") if resume else None
    tracker = make_tracker(c, cfg, f"{c.name}-seed{c.seed}", run_dir, tracker_id)
    exit_code, final = 1, None
    start = time.perf_counter()
    try:
        def on_eval(row):
            print(summary_line(row), flush=True)
            tracker.log(row)
        history = fit(model, data, c, run_dir, device=device, on_eval=on_eval, resume=resume,
                      segment=env, keep={"tracker_id": tracker.run_id})
        final = {"name": c.name, "seed": c.seed, "metrics": history[-1], "config": cfg, "overrides": overrides,
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
    return final


def init_means(model, model_name: str, source: Path) -> dict:
    """Copy θ from ``source``: a run folder (its checkpoint) or a record folder (its weights file).

    Returns what the record keeps of the source: its path, epoch, identity, file SHA-256 and the copied names.
    """
    if not (source / CHECKPOINT).is_file():
        if not (source / WEIGHTS).is_file():
            raise ConfigError(f"model.init_from={source} holds neither {CHECKPOINT} nor {WEIGHTS}; pass a run "
                              f"folder or a record folder (results/runs/<row>/seed<k>) of a trained model={model_name}")
        return _init_from_record(model, model_name, source)
    state, digest = read_checkpoint(source / CHECKPOINT)
    trained = (state.get("identity") or {}).get("model")
    copied = _copy(model, model_name, source, trained, state["model"])
    return {"run": str(source), "epoch": state.get("epoch"), "identity": state.get("identity"),
            "checkpoint_sha256": digest, "copied": copied}


def _init_from_record(model, model_name: str, source: Path) -> dict:
    try:
        trained, cfg = load_record(source)
        identity = validate(cfg).identity
        final = _read_json(source / "final.json") or {}
        epoch, seed = (final.get("metrics") or {}).get("epoch"), final.get("seed")
    except (WeightsError, ConfigError, yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConfigError(f"model.init_from={source}: not a readable record ({first}); pass a record folder "
                          f"with its config.yaml and {WEIGHTS}") from None
    copied = _copy(model, model_name, source, identity["model"], trained.state_dict())
    return {"run": str(source), "epoch": epoch, "seed": seed, "identity": identity,
            "weights_sha256": weights_sha256(source), "copied": copied}


def _copy(model, model_name: str, source: Path, trained: str | None, state: dict) -> list[str]:
    if trained != model_name:
        raise ConfigError(f"model.init_from={source} holds a {trained} run, not {model_name}; "
                          f"pass a run folder of model={model_name}")
    try:
        return copy_means(model, state)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"model.init_from={source}: cannot copy weights ({exc}); pass a run of the same net") from None


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


ERRORS = (ConfigError, DataError, RecordError, TrainingError, DeviceError)
