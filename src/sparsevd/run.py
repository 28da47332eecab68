"""One training run from a resolved config: validate, build, train, record, publish."""
from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import yaml

from . import kernels
from .arrays import save_arrays
from .config import ConfigError, validate
from .data import DataError, load_dataset
from .models import build_from_config, copy_means
from .records import (CHECKPOINT, RecordError, atomic_write_json, atomic_write_text, environment,
                      load_checkpoint, publish, read_checkpoint, record_dir)
from .resume import resume_target
from .tracking import make_tracker
from .trainer import Interrupted, TrainingError, fit, resolve_device, seed_everything, summary_line
from .weights import WEIGHTS, save_weights

INIT_FROM = "init_from.json"  # where a run keeps which trained run initialised its means


def run(cfg: dict, run_dir: Path, overrides: list[str] = ()) -> dict | None:
    """Train one configuration and write its record into ``run_dir``; returns final.json's content."""
    c = validate(cfg)
    name, seed = c.name, c.seed
    dest = record_dir(Path(c.results.dir), name, seed) if c.results.save else None
    if dest is not None:
        if (dest / "final.json").exists() and not c.results.force:
            print(f"record exists: {dest}/final.json; skipping (FORCE=1 / results.force=true to re-run)")
            return None
        _check_writable(dest.parent)
    resume, run_dir = resume_target(cfg, run_dir)
    device = resolve_device(c.device)
    env = environment(device)  # at start: the code that runs is the code this SHA names
    seed_everything(seed)
    d = c.data
    data = load_dataset(d.name, d.root, d.preprocess, d.train_size, device, d.val_size, d.labels)
    model = build_from_config(c).to(device)
    init_info = (init_means(model, c.model.name, Path(c.model.init_from))
                 if c.model.init_from and not resume else None)
    kernels.use_compiled(c.trainer.compile)
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
        history = fit(model, data, c, run_dir, device=device, on_eval=on_eval, resume=bool(resume),
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
        publish(run_dir, dest, force=c.results.force)
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
